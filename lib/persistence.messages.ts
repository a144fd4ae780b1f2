/* Every user-facing message in one place: what happened, then what to do. */

export const invalidOption = (option: string, got: unknown, fix: string): string =>
  `PersistenceModule option "${option}" is invalid (got ${describe(got)}). ${fix}`;

export const schedulerMissing = (): string =>
  'Auto-save needs @nestjs/schedule: import ScheduleModule.forRoot() in your AppModule, ' +
  'or pass autoSave: false to PersistenceModule.forRoot().';

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

export const adapterNotSingleton = (what: string): string =>
  `Persistence adapter ${what} is request- or transient-scoped (or depends on such a provider), so ` +
  'the store cannot hold one instance of it. Make it (and its dependencies) default-scoped.';

export const invalidId = (id: unknown, problem: string): string =>
  `Item id ${describe(id)} cannot be stored: ${problem}.`;

export const notFound = (kind: string, id: string): string =>
  `${kind} "${id}" does not exist. Create it first, or check the id.`;

export const serializeFailed = (adapter: string, id: string, reason: string): string =>
  `Could not serialize item "${id}" of "${adapter}": ${reason}. Its previous file was kept; ` +
  'make the item JSON-serializable (no cycles, no BigInt).';

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

export const saveIncomplete = (failed: number, total: number): string =>
  `Save finished with ${failed} of ${total} items not written; their previous files were kept. ` +
  'See the persistence.error events for each item.';

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
  'or open it with readOnly: true to only read. If that process is gone, delete the .lock file.';

export const staleLockTaken = (path: string, owner: { pid: number; host: string }): string =>
  `Took over the lock of ${path} from process ${owner.pid} on ${owner.host}, which is no longer running.`;

export const readOnly = (operation: string): string =>
  `Cannot ${operation}: the store was opened with readOnly: true. Open it without readOnly in the one process that writes.`;

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
    return String(value);
  }
};

export const reasonOf = (error: unknown): string =>
  error instanceof Error ? error.message : String(error);
