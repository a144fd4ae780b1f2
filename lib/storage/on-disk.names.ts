import { basename } from 'node:path';

/**
 * Every name and permission the store gives what it writes on disk, in one place. The options
 * `fileMode` and `dirMode` default to {@link FILE_MODE} and {@link DIR_MODE}
 * (`DEFAULT_OPTIONS` in persistence.options.ts).
 */

/** The write-ahead journal in the store folder. Sealed segments are `.journal.<n>` (n = 1, 2, …; {@link sealedSegmentPath}). */
export const JOURNAL_FILE = '.journal';

/** The one-writer lock in the store folder (store.lock.ts). */
export const LOCK_FILE = '.lock';

/** Folder under the store path where unreadable files are moved, never deleted. */
export const QUARANTINE_DIR = '.quarantine';

/** Prefix of a restore's staging folder in the store folder: `.restore-<id>/` (backup.storage.ts). */
export const RESTORE_PREFIX = '.restore-';

/** Suffix of encrypted files, after the serializer's extension: `.json.enc`, `.json.gz.enc`. */
export const ENCRYPTED_SUFFIX = '.enc';

/** Suffix of the temporary file an atomic write renames into place. */
export const TEMP_SUFFIX = '.tmp';

/** Permission bits of the files written, unless `fileMode` says otherwise. */
export const FILE_MODE = 0o600;

/** Permission bits of the folders created, unless `dirMode` says otherwise. */
export const DIR_MODE = 0o700;

/** The path of the sealed segment number `n` of the journal at `activePath`: `<activePath>.<n>`. */
export function sealedSegmentPath(activePath: string, n: number): string {
  return `${activePath}.${n}`;
}

/** The number of a sealed segment's file name, or undefined when `name` is not one. */
export function sealedSegmentNumber(activePath: string, name: string): number | undefined {
  const prefix = `${basename(activePath)}.`;
  if (!name.startsWith(prefix)) return undefined;
  const digits = name.slice(prefix.length);
  if (!/^[1-9][0-9]{0,14}$/.test(digits)) return undefined;
  return Number(digits);
}

/** Between the journal's name and the time in the name of a damaged journal's copy. */
export const DAMAGED_COPY_INFIX = '.damaged-';
