/* Every user-facing message in one place: what happened, then what to do. */

export const invalidOption = (option: string, got: unknown, fix: string): string =>
  `PersistenceModule option "${option}" is invalid (got ${describe(got)}). ${fix}`;

export const unknownOption = (option: string, closest: string, known: readonly string[]): string =>
  `PersistenceModule option "${option}" is not an option of this version, so it would be ignored. ` +
  `Did you mean "${closest}"? Known here: ${known.join(', ')}.`;

export const eventEmitterMissing = (): string =>
  'EventEmitterModule is not imported: persistence events go to store.events$ and the onSave/onLoad/' +
  'onError callbacks only. Import EventEmitterModule.forRoot() to receive them with @OnEvent().';

export const writableByOthers = (path: string): string =>
  `The store folder ${path} can be written by other users, who could plant or change state files. ` +
  'Restrict it, e.g. chmod 700.';

export const invalidAdapter = (what: string, problem: string): string =>
  `Persistence adapter ${what} ${problem}`;

export const adapterUnresolvable = (name: string): string =>
  `Persistence adapter ${name} (in the "adapters" option) is not a provider of any module, so it ` +
  `cannot get its dependencies. Register it as a provider: PersistenceModule.forFeature([${name}]) in ` +
  "the module that owns its state, or add it to that module's providers (with @PersistedState()).";

export const duplicateAdapter = (name: string, first: string, second: string): string =>
  `Two persistence adapters are named "${name}": ${first} and ${second}; each needs its own folder. ` +
  'Rename one of them, or register the class in one module only.';

export const adapterNameMissing = (what: string): string =>
  `Persistence adapter ${what} has no name. Add readonly name = '...' to the class, or decorate it ` +
  "with @PersistedState('...').";

export const adapterNameMismatch = (what: string, declared: string, actual: unknown): string =>
  `Persistence adapter ${what} is decorated @PersistedState(${JSON.stringify(declared)}) but its ` +
  `name is ${describe(actual)}. Remove the name property or make the two equal.`;

export const featureWithoutRoot = (feature: string): string =>
  `${feature} is imported, but the application has no store: import PersistenceModule.forRoot() ` +
  '(or forRootAsync()) in its root module. Without it these adapters would never be saved or loaded.';

export const adapterNotSingleton = (what: string): string =>
  `Persistence adapter ${what} is request- or transient-scoped (or depends on such a provider), so ` +
  'the store cannot hold one instance of it. Make it (and its dependencies) default-scoped.';

export const invalidId = (id: unknown, problem: string): string =>
  `Item id ${describe(id)} cannot be stored: ${problem}.`;

/**
 * A manager refused a value. `path` names the field (`metadata.tags[2]`), `problem` continues it
 * (`is a Date, which JSON stores as a string`), `fix` says what to pass instead.
 */
export const invalidInput = (where: string, path: string, problem: string, fix: string): string =>
  `${where}: ${path} ${problem}. ${fix.charAt(0).toUpperCase()}${fix.slice(1)}.`;

export const notFound = (kind: string, id: string): string =>
  `${kind} "${id}" does not exist. Create it first, or check the id.`;

export const serializeFailed = (adapter: string, id: string, reason: string): string =>
  `Could not save item "${id}" of "${adapter}" exactly: ${reason}. Its last saved version was ` +
  'kept; store plain JSON data (or add a revive() to the adapter for values with a toJSON()).';

export const corruptFile = (path: string, reason: string, quarantinedTo?: string): string =>
  `Could not read ${path}: ${reason}.` +
  (quarantinedTo
    ? ` It was moved to ${quarantinedTo}; the other items loaded.`
    : ' The other items loaded.');

export const decryptionFailed = (path: string, reason: string): string =>
  `Could not decrypt ${path}: ${reason}. The file was left in place and will not be removed; ` +
  'check encryption.keys.';

export const ioFailed = (action: string, path: string, reason: string): string =>
  `Could not ${action} ${path}: ${reason}. Check that the folder exists, is writable and has free space.`;

export const saveIncomplete = (failed: number, total: number, adapters = 0): string =>
  `Save finished with ${failed} of ${total} items not written` +
  (adapters > 0 ? ` and ${adapters} adapter(s) skipped` : '') +
  '; their last saved versions were kept and everything else was committed. ' +
  'See the persistence.error events for each one.';

export const adapterFailed = (adapter: string, method: string, reason: string): string =>
  `Adapter "${adapter}" threw in ${method}(): ${reason}.`;

export const storeFolderRemoved = (path: string): string =>
  `The store folder ${path} was removed while the application ran, so this save was not written. ` +
  'The in-memory state is intact; the next save recreates the folder and writes all of it.';

export const storeLocked = (
  path: string,
  owner: { pid: number; host: string; since: string } | undefined,
): string =>
  `The store ${path} is in use by ` +
  (owner
    ? `process ${owner.pid} on ${owner.host} (since ${owner.since || 'unknown'})`
    : 'another process') +
  ". Two writers would lose each other's updates: stop the other process, give this one its own path, " +
  'or open it with readOnly: true to only read. A lock whose process is gone is taken over at the ' +
  'next start (at once on the same host; from another host once nobody renewed it for lock.leaseMs).';

export const staleLockTaken = (
  path: string,
  owner: { pid: number; host: string },
  unrenewedMs: number | undefined,
): string =>
  `Took over the lock of ${path} from process ${owner.pid} on ${owner.host}, ` +
  (unrenewedMs === undefined
    ? 'which is no longer running.'
    : `which did not renew it for ${unrenewedMs} ms (lock.leaseMs).`);

export const lockLost = (
  path: string,
  owner: { pid: number; host: string; since: string } | undefined,
): string =>
  `This process no longer holds the store ${path}: its lock now names ` +
  (owner ? `process ${owner.pid} on ${owner.host} (since ${owner.since || 'unknown'})` : 'nobody') +
  ' (taken over after this process did not renew it for lock.leaseMs, or deleted). Every write is ' +
  'refused from now on so that two writers do not corrupt the store; the in-memory state is kept. ' +
  'Restart this process to take the store again once the other one has stopped.';

export const lockUnconfirmed = (path: string, leaseMs: number): string =>
  `Refused to write to the store ${path}: this process could not renew its lock for ${leaseMs} ms ` +
  '(lock.leaseMs), so another host may have taken it over. Writes resume once a renewal succeeds.';

export const readOnly = (operation: string): string =>
  `Cannot ${operation}: the store was opened with readOnly: true. Open it without readOnly in the one process that writes.`;

export const notInitialised = (operation: string): string =>
  `Cannot ${operation} before the module has initialised: call app.init() first.`;

export const storeClosed = (operation: string): string =>
  `Cannot ${operation}: the application has shut down and the store is closed.`;

export const backupDestinationInside = (destination: string, store: string): string =>
  `Backup destination ${destination} is inside the store folder ${store}. Choose a folder outside it.`;

export const backupDestinationHoldsStore = (destination: string, store: string): string =>
  `Backup destination ${destination} contains the store folder ${store}. Choose a folder outside it.`;

export const backupDestinationNotEmpty = (destination: string): string =>
  `Backup destination ${destination} already holds files. Choose a new or empty folder; ` +
  'backups never overwrite.';

export const backupSourceInvalid = (source: string, problem: string): string =>
  `Cannot restore from ${source}: ${problem}. The store was not changed.`;

export const backupsNotConfigured = (): string =>
  'backup() without a destination writes into backups.directory, which is not configured. Pass ' +
  "backups: { directory: './backups' } to PersistenceModule.forRoot(), or give backup() a folder.";

export const backupNotFound = (id: string): string =>
  `there is no backup "${id}" there; listBackups() lists the backups that exist`;

export const backupRetentionFailed = (id: string, reason: string): string =>
  `The backup was written, but the old backup ${id} could not be removed: ${reason}. ` +
  'It is tried again after the next backup; check the permissions of backups.directory.';

export const backupDamaged = (files: ReadonlyArray<{ path: string; reason: string }>): string =>
  `The backup was not written: ${files.length === 1 ? 'a committed item file is' : `${files.length} committed item files are`} damaged (` +
  files
    .slice(0, 3)
    .map((f) => `"${f.path}": ${f.reason}`)
    .join('; ') +
  `${files.length > 3 ? '; …' : ''}); no backup was removed. The state in memory is intact: ` +
  'the next save (saveAll() or auto-save) writes these items anew; back up again after it.';

export const backupFileNotCommitted = (): string =>
  'its bytes differ from those this store committed';

export const backupFileChangedSinceBackup = (): string =>
  'its bytes changed since the last backup checked them, and the store has not rewritten it since';

export const backupFileAwaitsRewrite = (): string =>
  'an earlier backup found it damaged, and no save has written it anew since';

export const notLoadedBecause = (unloaded: string, problem: string): string =>
  `the store did not load it (${unloaded}); ${problem}`;

export const backupUnverified = (location: string, files: number): string =>
  `The backup ${location} holds ${files} item file(s) the store did not load and that did not pass ` +
  'its checks; they were copied as they are (see unverified in the result and the manifest), and a ' +
  'restore puts them back as they are.';

export const backupVerifiedRetention = (id: string, keep: number): string =>
  `Removed the old backup ${id} (keep: ${keep} verified backups).`;

export const scheduledBackupReadOnly = (): string =>
  'backups.cron is ignored: the store was opened with readOnly: true, and only the process that ' +
  'writes the store backs it up.';

/*
 * What is wrong with a journal file, in the words both the start and `verify` use (see
 * store/store.findings.ts): the start adds what it did about it, `verify` what the start will do.
 */

/** A torn tail of the active journal: the problem, as `verify` lists it and the start logs it. */
export const journalTornTailProblem = (bytes: number): string =>
  `the last ${bytes} byte(s) are not a complete record: a save interrupted by a crash; it was never acknowledged`;

/** `problem`: {@link journalTornTailProblem}. */
export const journalTornTail = (path: string, problem: string): string =>
  `Recovery: the journal ${path}: ${problem}. They were cut off.`;

/** `problem`: {@link journalTornTailProblem}; a read-only store leaves them. */
export const journalTornTailKept = (path: string, problem: string): string =>
  `The journal ${path}: ${problem}. The store is read-only, so they were left as they are; the next start without readOnly cuts them off.`;

/** Damage in a journal file: the problem, as `verify` lists it and the start reports it. */
export const journalDamageProblem = (damage: {
  unreadableBytes: number;
  regions: number;
  recovered: number;
  sealed: boolean;
}): string =>
  `${damage.unreadableBytes} byte(s) in ${damage.regions} place(s) could not be read, and ` +
  (damage.sealed ? 'a sealed segment is complete when it is sealed' : 'valid saves follow them') +
  ', so this is not a crash but damage to the file (disk, file system, or another program); ' +
  `${damage.recovered} committed save(s) before and after the damage can be recovered, ` +
  'the changes of the save(s) in the damaged bytes are lost';

/** A journal file in another journal format: the problem, as `verify` lists it and the start reports it. */
export const journalFormatUnsupportedProblem = (version: number, supported: number): string =>
  `it is in journal format ${version}, written by ${version < supported ? 'an earlier' : 'a later'} ` +
  `version of nestjs-persistence; this version reads only format ${supported}, so its saves cannot be replayed`;

/** `problem`: {@link journalFormatUnsupportedProblem}; the start fails, changing nothing. */
export const journalFormatUnsupported = (path: string, problem: string): string =>
  `The journal ${path}: ${problem}. The store did not start and left the file as it is. Start the ` +
  'version that wrote it once and call checkpoint() or shut it down (that writes its saves into the ' +
  'item files and empties the journal), then start this version; or move the file away to start ' +
  'without the saves it holds.';

/** `problem`: {@link journalDamageProblem}; `copyPath`: where the file was copied (none: read-only). */
export const journalDamaged = (path: string, problem: string, copyPath?: string): string =>
  `The journal ${path} is damaged: ${problem}. ` +
  (copyPath
    ? `The whole damaged file was copied to ${copyPath} and the recovered saves replayed ` +
      'into the item files. Check the disk and the loaded state; keep the copy for inspection, ' +
      'delete it when done.'
    : 'The store is read-only, so nothing was changed: the recovered saves are applied in memory. ' +
      'Open the store once without readOnly to copy the journal aside and replay them; check the disk.');

export const describe = (value: unknown): string => {
  if (typeof value === 'string') {
    return value.length > 60 ? JSON.stringify(`${value.slice(0, 57)}...`) : JSON.stringify(value);
  }
  if (typeof value === 'function') {
    return (value as { name?: string }).name || 'a function';
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    try {
      return String(value);
    } catch {
      return Object.prototype.toString.call(value); // e.g. a cyclic object without a prototype
    }
  }
};

export const optionalDependencyMissing = (feature: string, pkg: string, cause: unknown): string =>
  `${feature} needs the optional package "${pkg}", which could not be loaded (${reasonOf(cause).split('\n')[0]}). ` +
  `Install it beside nestjs-persistence: npm install ${pkg}`;

export const reasonOf = (error: unknown): string =>
  error instanceof Error ? error.message : String(error);

export const adapterTimedOut = (adapter: string, method: string, ms: number): string =>
  `Adapter "${adapter}" did not finish ${method}() within ${ms} ms (option adapterTimeout), so ` +
  `it was skipped and its saved state kept. Make ${method}() settle, or raise adapterTimeout.`;

export const duplicateSnapshotId = (adapter: string, id: string): string =>
  `Adapter "${adapter}" returned the id ${describe(id)} twice in one snapshot(), so none of its ` +
  'items were saved this time (its saved state is kept). Return each item once, in a Map.';

export const itemTooLarge = (adapter: string, id: string, what: string): string =>
  `Item "${id}" of "${adapter}" was not saved: ${what}, so it could not be loaded again. Its ` +
  'last saved version is kept. Split the item, or raise the limit in the limits option.';

export const unloadedItem = (adapter: string, id: string, path: string, why: string): string =>
  `Item "${id}" of "${adapter}" was not saved: its file ${path} is on disk but was not loaded ` +
  `(${why}), and a save never overwrites what it did not load. Load it (loadAll(), with the right ` +
  `encryption key if that was the problem), or call store.discardUnloaded('${adapter}', id) to ` +
  'move that file to .quarantine and let the next save write the new item.';

export const reentrantCall = (operation: string, adapter: string): string =>
  `Cannot ${operation} from inside adapter "${adapter}": the store is waiting for that adapter, ` +
  'so the call would wait forever. Do it once the adapter call has returned (e.g. from a timer or ' +
  'a persistence.saved/loaded listener).';

export const optionsMissing = (got: unknown): string =>
  `PersistenceModule options are ${describe(got)}: the forRootAsync() factory must return an ` +
  'options object. Return at least {} (or { path }) so the store does not silently use ./data.';

export const pathUndefined = (): string =>
  'PersistenceModule option "path" is present but undefined: usually a configuration value that ' +
  'is not set (e.g. config.get(...) returned undefined). Set it, or leave the key out to use ./data.';

export const supersededFailedBoot = (path: string): string =>
  `The store ${path} was still held by an application of this process that never finished ` +
  'booting (an onModuleInit hook failed after this module had started); that store was closed ' +
  'without saving and this one takes the folder. Call app.close() after a failed app.init().';

export const replayDeferred = (records: number, path: string, reason: string): string =>
  `Recovery could not write ${records} committed save(s) from the journal into the item files of ` +
  `${path} (${reason}). The store started anyway and loads them from the journal, which keeps ` +
  'them; the next checkpoint writes them. Free disk space (or fix the cause) soon.';

export const migrationFailed = (
  adapter: string,
  id: string,
  from: number,
  to: number,
  path: string,
  reason: string,
): string =>
  `Item "${id}" of "${adapter}" was not loaded: its migration from schema version ${from} to ${to} ` +
  `failed (${reason}). Its file ${path} is kept as it is (a save never overwrites or removes it); ` +
  'fix the migration and load again (loadAll() or a restart).';

export const itemFromNewerVersion = (
  adapter: string,
  id: string,
  stored: number,
  known: number,
  path: string,
): string =>
  `Item "${id}" of "${adapter}" was written by a newer version of the application (schema ` +
  `${stored}, this code knows ${known}); it is kept as it is in ${path}, not loaded, and never ` +
  'overwritten or removed by a save. Run the newer version of the application to use it.';

export const invalidSchemaVersion = (got: unknown): string =>
  `has version ${describe(got)}: it must be a positive integer (1 for the first schema, raised by ` +
  'one with each migration).';

export const missingMigration = (version: number, step: number): string =>
  `has version ${version} but no migration to version ${step} (migrations[${step}] is missing or ` +
  `not a function): declare one function for each step 2..${version}, each turning an item of ` +
  `version n-1 into version n.`;

export const strayMigration = (version: number, key: string): string =>
  `declares migrations[${key}] but its version is ${version}: a migration key is the version it ` +
  `migrates to, an integer from 2 to the version. Raise version, or remove that migration.`;

export const invalidMigrations = (got: unknown): string =>
  `has migrations ${describe(got)}: it must be an object of functions by target version, e.g. ` +
  '{ 2: (item) => ({ ...item, added: 0 }) }.';

export const migrateWrongStore = (command: string, named: string, configured: string): string =>
  `nestjs-persistence ${command} was run on ${named}, but this module's store is ${configured}. ` +
  `Nothing was opened. Run the command on ${configured}, or point --module at the module whose ` +
  `PersistenceModule.forRoot() uses ${named}.`;

export const invalidDriverOption = (
  driver: string,
  option: string,
  got: unknown,
  fix: string,
): string => `${driver} option "${option}" is invalid (got ${describe(got)}). ${fix}`;

export const driverDependencyMissing = (driver: string, pkg: string, reason: string): string =>
  `${driver} needs the package "${pkg}", which could not be loaded (${reason}). Install it: ` +
  `npm install ${pkg}`;

export const storageUnavailable = (location: string, operation: string, reason: string): string =>
  `The storage ${location} could not be reached during ${operation} (${reason}). Nothing partial ` +
  'was written; the operation can be retried once it answers again. Check that the server is up ' +
  'and reachable.';

export const storageRefused = (location: string, operation: string, reason: string): string =>
  `The storage ${location} refused ${operation}: ${reason}. Nothing was written. Fix the server's ` +
  'configuration (credentials, permissions, memory) or the key named, then retry.';

export const driverNotOpen = (location: string, state: string): string =>
  `The storage driver for ${location} is ${state}: call open() first (the store does), and do not ` +
  'use it after close().';

export const badStoredData = (
  location: string,
  key: string,
  problem: string,
  quarantinedAs?: string,
  fix = 'Repair it, or delete the key (and its id from the index set) to let saves write the item again.',
): string =>
  `The stored value ${key} in ${location} ${problem}, so it was neither loaded nor written. It is kept as it is ` +
  `and never overwritten or removed by a save` +
  (quarantinedAs === undefined ? '' : `; a copy is at ${quarantinedAs}`) +
  `. ${fix}`;

export const postgresSchemaTooNew = (
  location: string,
  table: string,
  found: number,
  known: number,
): string =>
  `The tables of ${location} are at layout version ${found} ("${table}_meta", key "schema"), but ` +
  `this release of nestjs-persistence knows versions up to ${known}: a newer release made them. ` +
  'Nothing was changed. Upgrade nestjs-persistence in this application, or give it another table.';

export const postgresCounterDamaged = (location: string, table: string, got: string): string =>
  `the revision counter ("${table}_meta", key "revision") is ${got}, not a non-negative integer; ` +
  `restore the row (INSERT INTO "${table}_meta" VALUES ('revision', <the highest revision in ` +
  `"${table}">))`;

export const postgresBadRowFix = (table: string): string =>
  `Repair the row (a revision of at most the "revision" row of "${table}_meta"), or delete it, to ` +
  'let saves write the item again.';

export const duplicateChange = (collection: string, id: string): string =>
  `A commit names item "${id}" of "${collection}" twice; each item may change once per commit. ` +
  'Merge the two changes into one.';

export const notSupportedByStorage = (operation: string, location: string): string =>
  `Cannot ${operation}: the store keeps its items in ${location} (the storage option), and ` +
  `${operation} works on the file system only in this release. Repair or remove the stored item ` +
  'in the storage itself (the driver keeps a copy of bad values aside), then call loadAll().';

export const restoreSetAside = (paths: readonly string[]): string =>
  `The restore replaced ${paths.length === 1 ? 'an item' : `${paths.length} items`} whose stored ` +
  `file this store could not read (another key, a newer schema version, a missing package, a read error); ` +
  `${paths.length === 1 ? 'that file was' : 'those files were'} set aside, not deleted: ` +
  `${paths.join(', ')}.`;

export const restoreKeptUnreadable = (
  location: string,
  adapter: string,
  id: string,
  why: string,
): string =>
  `The restore did not write the backup's item "${id}" of "${adapter}": the stored one in ` +
  `${location} could not be read by this store (${why}), and a storage driver has nowhere to set ` +
  'it aside, so it was kept as it is; the rest of the backup was restored. Read it (the right ' +
  'encryption key, the newer version of the application) or remove it in the storage itself, then ' +
  'restore again.';

export const storageDisconnected = (location: string, problem: string): string =>
  `The storage ${location} cannot be reached now (${problem}), so saves fail until it answers ` +
  'again; changes stay in memory and are saved by the first save after that.';

export const storageNotLoaded = (location: string): string =>
  `The store has not loaded from ${location} yet (it keeps trying to open it), so nothing is ` +
  'saved: a save now could overwrite what other replicas wrote. Unsaved changes stay in memory ' +
  'and are saved by the first save after the storage answers.';

export const storageNotLoadedOnBoot = (location: string): string =>
  `The store started with loadOnBoot: false and has not loaded from ${location} yet, so it neither ` +
  'saves nor clears: it does not know what other replicas wrote. Unsaved changes stay in memory; ' +
  'call loadAll() first.';

export const storedItemUnreadable = (location: string, key: string, reason: string): string =>
  `The stored item ${key} in ${location} could not be read (${reason}), so it was not loaded. It ` +
  'is kept as it is and never overwritten or removed by a save of this replica. Repair or remove it ' +
  'in the storage, then call loadAll().';

export const backupLeaseHeld = (location: string): string =>
  `Scheduled backup skipped: another replica on ${location} holds the backup lease (it takes this ` +
  'run, or took it moments ago).';

// S3 backup target (nestjs-persistence/s3).

export const s3RequestFailed = (action: string, where: string, reason: string): string =>
  `Could not ${action} ${where}: ${reason}. Check that the S3 endpoint answers, that the bucket ` +
  'exists and that the credentials may read, write, list and delete under the prefix.';

export const s3ObjectTooLarge = (where: string, bytes: number, limit: number): string =>
  `${where} holds ${bytes} bytes, more than limits.maxFileBytes (${limit}); it is not downloaded.`;

export const s3GarbageSkipped = (location: string, uploads: number): string =>
  `Unreferenced objects in ${location} are kept for now: ${uploads} backup upload(s) are in ` +
  'progress there (they may be writing or reusing them). The next removal collects them.';

export const s3GarbageFailed = (location: string, reason: string): string =>
  `Could not remove the unreferenced objects of ${location} (${reason}); the backups are not ` +
  'affected, and the next removal tries again.';

export const s3SharedObjectGone = (location: string, file: string, key: string): string =>
  `The backup into ${location} was not completed: ${key}, which holds "${file}" unchanged since the ` +
  'previous backup, was deleted while the backup ran (a clean-up of another replica, a lifecycle ' +
  'rule or a person). Nothing of this backup is listed; the next backup uploads that file again.';

/** One kind of load problem, as the summaries below describe it. */
export interface LoadProblemSummary {
  kind: string;
  count: number;
  collections: ReadonlyMap<string, number>;
  examples: readonly string[];
  first?: string;
}

const LOAD_PROBLEM_WHAT: Record<string, string> = {
  'wrong-key': 'could not be decrypted with the configured keys, a wrong or missing key',
  unreadable: 'could not be read (the file system refused them)',
  corrupt: 'are not valid items (corrupt), left in place',
  'newer-schema': 'were written by a newer schema version of the application',
  'migration-failed': 'failed their schema migration',
  'missing-package': 'need a package that is not installed',
  'restore-failed': "were refused by their adapter's restore()",
  quarantined: 'are not valid items (corrupt) and were moved to .quarantine/',
  'not-loaded': 'were not loaded (loadOnBoot: false)',
};

const LOAD_PROBLEM_FIX: Record<string, string> = {
  'wrong-key':
    'add the key they were written with to encryption.keys (keep encryption.current for new files)',
  unreadable: 'let this process read the files (permissions, disk), then call loadAll()',
  corrupt:
    'set them aside with discardUnloaded(adapter, id), or repair or remove them in the storage',
  'newer-schema':
    'they are kept as they are, never overwritten; the newer version loads them again',
  'migration-failed': "fix the adapter's migrations and deploy again",
  'missing-package': 'install the package the first error names',
  'restore-failed': "fix the adapter's restore(), then call loadAll()",
  quarantined: 'see "nestjs-persistence quarantine list <path>"',
  'not-loaded': 'call loadAll()',
};

const describeGroup = (group: LoadProblemSummary): string => {
  const per = [...group.collections].map(([c, n]) => `${c}: ${n}`).join(', ');
  const more = group.count > group.examples.length ? ', …' : '';
  return (
    `${group.count} item(s) ${LOAD_PROBLEM_WHAT[group.kind] ?? group.kind} (${per}; e.g. ` +
    `${group.examples.map((id) => JSON.stringify(id)).join(', ')}${more})`
  );
};

/** One log line for one kind of problem of a load (instead of one line per item). */
export const loadProblem = (group: LoadProblemSummary, location: string): string =>
  `Load of ${location}: ${describeGroup(group)}. Fix: ` +
  `${(LOAD_PROBLEM_FIX[group.kind] ?? 'see the first error').replace('<path>', location)}.` +
  (group.first ? ` First: ${group.first}` : '') +
  (group.kind === 'quarantined' || group.kind === 'newer-schema'
    ? ''
    : ' They stay in place, listed by listUnloaded(); no save overwrites or removes them.');

export const unreadableAtStart = (
  location: string,
  count: number,
  groups: readonly LoadProblemSummary[],
  canDiscard: boolean,
): string =>
  `The store ${location} did not start: ${count} stored item(s) could not be used. ` +
  groups
    .map((g) => `${describeGroup(g)}: ${LOAD_PROBLEM_FIX[g.kind] ?? 'see the error'}.`)
    .join(' ') +
  (groups[0]?.first ? ` First: ${groups[0].first}` : '') +
  ' Nothing was changed. To start anyway with what could be read, set onUnreadable: ' +
  "'start': the health check then reports down until each item is resolved (listUnloaded() lists " +
  (canDiscard
    ? 'them; discardUnloaded(adapter, id) sets one aside; a loadAll() that reads them loads them).'
    : 'them; a loadAll() that reads them loads them; repair or remove a value in the storage).');

export const unresolvedItems = (count: number, kinds: string): string =>
  `${count} stored item(s) could not be loaded and are unresolved (${kinds}); see listUnloaded()`;

export const lastLoadFailed = (message: string): string => `the last load failed: ${message}`;

export const lastSaveIncomplete = (message: string): string =>
  `the last save was incomplete: ${message}`;

export const storageRetrying = (location: string, delay: number): string =>
  `The storage ${location} did not answer; trying again in ${delay} ms, then with a longer wait ` +
  'each time (up to 30 s). The attempts are not logged again until it answers.';

export const storageAnsweredAgain = (location: string, attempts: number): string =>
  `The storage ${location} answered again after ${attempts} failed attempt(s).`;

export const loadFailedAtStart = (location: string, reason: string): string =>
  `The store ${location} did not start: its load failed (${reason}). Nothing was changed. Fix ` +
  "the cause and start again, or set onUnreadable: 'start' to start without the saved state (the " +
  'health check then reports down until a load succeeds).';

export const liveSnapshotMoving = (path: string, reason: string): string =>
  `Cannot back up ${path} read-only: the process that writes it checkpointed during every attempt at a consistent read (the last: ${reason}). ` +
  'Nothing was written; try again when it saves less often, or back up from that process (PersistenceStore.backup()).';
