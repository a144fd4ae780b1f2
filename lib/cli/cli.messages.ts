/* Every message of the CLI in one place: what happened, then what to do. */

import { LockState } from './store.folder';

const holder = (lock: LockState): string =>
  `process ${lock.pid} on ${lock.host}` + (lock.since ? ` (since ${lock.since})` : '');

/** inspect's journal line for a journal file in a format this version does not read. */
export const journalFormatLine = (file: string, version: number): string =>
  `${file} is in journal format ${version}, which this version does not read: its saves are not counted here, and the application refuses to start (run verify)`;

export const noStore = (path: string, problem: string): string =>
  `No store at ${path}: ${problem}. Give the folder of a store (the "path" option of PersistenceModule).`;

export const storeHeld = (command: string, path: string, lock: LockState): string =>
  `Cannot ${command}: the store ${path} is in use by ${holder(lock)}, and ${command} writes to it. ` +
  'Stop that application first (inspect, verify, export and quarantine list work while it runs). ' +
  (lock.sameHost ? '' : 'If that host is gone, delete the .lock file. ') +
  'Nothing was changed.';

export const lockLine = (lock: LockState | undefined): string =>
  !lock
    ? 'free (no application holds it)'
    : lock.running
      ? `held by ${holder(lock)}${lock.sameHost ? ', running' : ', on another host (cannot be checked)'}`
      : `stale: ${holder(lock)} is no longer running (the next start takes it over)`;

export const readOnlyNote = (lock: LockState): string =>
  `note: the store is in use by ${holder(lock)}; reading it read-only (item files and the journal's committed records), writing nothing.`;

export const badKey = (fix: string): string =>
  `Invalid --key (or NESTJS_PERSISTENCE_KEY): ${fix} Give KEY or ID:KEY, KEY being 64 hex digits or the base64 of 32 bytes.`;

export const badFormat = (format: string): string =>
  `Unknown --format "${format}". Use json, json-compact, json-gzip, msgpack (needs msgpackr installed) or auto.`;

export const encryptedNeedsKey = (path: string): string =>
  `The store ${path} holds encrypted item files; pass its key with --key (or NESTJS_PERSISTENCE_KEY) so imported items are encrypted too. Nothing was changed.`;

export const lockedFile = (reason: string): string =>
  `${reason}; pass the key with --key (or NESTJS_PERSISTENCE_KEY) to check it`;

export const collectionsNotEmpty = (path: string, names: readonly string[]): string =>
  `The store ${path} already holds items in ${names.map((n) => `"${n}"`).join(', ')}. ` +
  "Add --replace to replace the items of those collections with the document's (others are kept), or import into an empty store. Nothing was changed.";

export const invalidDocument = (file: string, problem: string): string =>
  `${file} is not an export document: ${problem}. Give a file written by "nestjs-persistence export". Nothing was changed.`;

export const quarantineFileUnknown = (spec: string, path: string): string =>
  `No quarantined file "${spec}" in ${path}. Run "nestjs-persistence quarantine list ${path}" for the names.`;

export const quarantineFileAmbiguous = (spec: string, matches: readonly string[]): string =>
  `"${spec}" names several quarantined files (${matches.join(', ')}); give it as <collection>/<name>.`;

export const quarantineNameUnknown = (name: string): string =>
  `"${name}" does not have the name of a quarantined item file (<time>-<random>-<file name>), so its item file name is unknown. Move it by hand if you know where it belongs.`;

export const quarantineUnreadable = (file: string, reason: string): string =>
  `${file} still does not parse (${reason}); it stays in quarantine. Discard it with "quarantine discard --yes", or repair it first.`;

export const quarantineItemExists = (file: string, existing: string, id: string): string =>
  `${file} holds item ${JSON.stringify(id)}, which already has a file (${existing}); restoring would overwrite it, so it stays in quarantine. Discard one of the two.`;

export const discardNeedsYes = (file: string): string =>
  `"quarantine discard" deletes ${file} for good; add --yes to confirm.`;

export const restoreNeedsKey = (): string =>
  'The backup holds encrypted files: pass the key with --key (or NESTJS_PERSISTENCE_KEY).';

export const moduleNotLoaded = (path: string, reason: string): string =>
  `Cannot load the module ${path}: ${reason}. Give --module the compiled CommonJS file of your module (build first: e.g. "nest build", then --module dist/app.module.js).`;

export const moduleExportMissing = (
  path: string,
  name: string,
  classes: readonly string[],
): string =>
  `${path} exports no class "${name}"` +
  (classes.length > 0
    ? ` (it exports ${classes.join(', ')}); pass --export with one of them.`
    : '; pass --export with the name of your module class.');

export const noPersistenceStore = (name: string): string =>
  `${name} does not provide a PersistenceStore: point --module at a module that imports PersistenceModule.forRoot() (or forRootAsync()), and run the nestjs-persistence installed in that application's project (npx nestjs-persistence), so both use one copy of the library.`;

export const backupWhere = (): string =>
  'Give backup either a destination folder (a complete copy) or --into <backups folder> (a differential backup kept with the others), not both.';

export const noBackupsFolder = (path: string): string =>
  `No backups folder at ${path}: it does not exist. Give the folder of the backups.directory option (or of backup --into).`;

export const s3SdkMissing = (): string =>
  'S3 targets need the @aws-sdk/client-s3 package: npm install @aws-sdk/client-s3.';

export const s3BackupUrl = (url: string): string =>
  `"${url}" names no backup: give s3://<bucket>/<prefix>/<backup id>, an id from "backups list s3://<bucket>/<prefix>".`;

export const exportInsideStore = (target: string, store: string): string =>
  `--out ${target} is inside the store folder ${store} (once symbolic links are followed); ` +
  'write the export elsewhere. Nothing was written.';

export const driverPackageMissing = (name: string, scheme: 'redis' | 'postgres'): string =>
  `A ${scheme === 'redis' ? 'redis:// or rediss://' : 'postgres:// or postgresql://'} --storage needs the ${name} package: npm install ${name}. Nothing was changed.`;

export const driverKeyPrefixMissing = (): string =>
  "A redis:// --storage needs --key-prefix: the keyPrefix the application's RedisStorageDriver uses.";

export const driverUrlUnknown = (url: string): string =>
  `Unknown --storage "${url.replace(/\/\/[^@/]*@/, '//')}": give redis://…, rediss://… (with --key-prefix), postgres://… or postgresql://… (with --table).`;

export const driverOptionWithoutStorage = (flag: 'keyPrefix' | 'table' | 'collections'): string =>
  `--${flag === 'keyPrefix' ? 'key-prefix' : flag} ${flag === 'table' ? 'goes with a postgres:// --storage' : flag === 'keyPrefix' ? 'goes with a redis:// --storage' : 'goes with --storage'}; a store folder needs none.`;

export const driverStoreArguments = (command: string): string =>
  `With --storage, ${command} takes no store folder: leave the <path> argument out.`;

export const driverCollectionsMissing = (): string =>
  "With --storage, give --collections a,b,…: the application's adapter names (a storage driver does not list its collections).";

export const driverCollectionsInvalid = (bad: readonly string[]): string =>
  bad.length === 0
    ? '--collections names no collection: give the adapter names, comma-separated.'
    : `--collections: ${bad.map((n) => `"${n}"`).join(', ')} ${bad.length === 1 ? 'is not an adapter name' : 'are not adapter names'} (a lowercase letter, then lowercase letters, digits, - or _).`;

export const notOnDriver = (command: string, why: string): string =>
  `${command} works on a store folder only, not with --storage: ${why}`;

export const liveBackupNote = (lock: LockState): string =>
  `note: the store is in use by ${holder(lock)}; backing up a consistent snapshot of its committed state, read-only (no lock taken, nothing written into the store).`;

export const storePathMissing = (): string =>
  'Give the store folder (the "path" option of PersistenceModule), or --storage <url> for a storage driver.';

export const importFileMissing = (): string =>
  'Give the document to import: a file written by "export".';

export const restoreSourceMissing = (): string =>
  'Give the backup to restore: a folder written by "backup", or s3://bucket/prefix/<id>.';
