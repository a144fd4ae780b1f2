import type { UnverifiedBackupFile } from './backup-target.interface';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';

/** Payload of `persistence.saved` and of `onSave` callbacks. */
export interface SaveMetadata {
  /** Absolute path of the store folder. */
  path: string;
  /** Format the items were written in. */
  format: string;
  /** Bytes of the item files this save wrote (the changed items only). */
  size: number;
  /** When the save started (the moment the state was taken). */
  timestamp: Date;
  /** Number of items in the saved state, across all adapters. */
  items: number;
  /** Items per adapter name. */
  adapters: Record<string, number>;
  /** Items written because they are new or changed since the last save. */
  changed: number;
  /** Items removed because they were deleted in memory. */
  deleted: number;
  /**
   * Items not written by this save (each reported as a `persistence.error` once for each change to
   * it); their last saved versions are kept.
   */
  failed: number;
  /** Wall-clock duration of the save. */
  durationMs: number;
}

/** Payload of `persistence.loaded` and of `onLoad` callbacks. */
export interface LoadMetadata {
  /** Absolute path of the store folder. */
  path: string;
  /** The store's configured format (files of any built-in format are read). */
  format: string;
  /** Bytes read. */
  size: number;
  /** When the load started. */
  timestamp: Date;
  /** Number of items loaded, across all adapters. */
  items: number;
  /** Items per adapter name. */
  adapters: Record<string, number>;
  /** Files that could not be read and were quarantined (each also emitted an error). */
  skipped: number;
  /** Wall-clock duration of the load. */
  durationMs: number;
}

/** Payload of `persistence.error` and of `onError` callbacks. */
export interface PersistenceErrorEvent {
  error: PersistenceError;
  operation: PersistenceOperation;
  adapter?: string;
  itemId?: string;
  path?: string;
}

/** Metadata returned by `backup()`. */
export interface BackupMetadata {
  /** Absolute path of the backup folder. */
  path: string;
  /** Files copied. */
  files: number;
  /** Bytes copied. */
  size: number;
  timestamp: Date;
  durationMs: number;
  /** The backup's id, for a backup into `backups.directory` (`backup()` without a path). */
  id?: string;
  /** Bytes stored anew; less than `size` when unchanged files are shared with the previous backup. */
  newBytes?: number;
  /**
   * Files copied as they are without passing the backup's checks, because the store had not loaded
   * them (not decryptable with its keys, not loaded yet, refused by the adapter); empty when every
   * file was verified. A damaged file the store did load fails the backup instead.
   */
  unverified: UnverifiedBackupFile[];
}

/** One backup in `backups.directory` (or the configured target), as `listBackups()` returns it. */
export interface BackupInfo {
  /** Pass it to `restore(id)`. Sorts by time, as text. */
  id: string;
  /** When the backup was taken. */
  time: Date;
  /** Item files it holds. */
  files: number;
  /** Bytes of those files. */
  bytes: number;
  /** Bytes stored anew when it was taken; the rest were shared with `base`. */
  newBytes: number;
  /** The older backup it shares unchanged files with, if any (a differential backup). */
  base: string | null;
  /** The store folder that wrote it; retention only removes the backups of its own store. */
  store: string | null;
  /**
   * True when every file was checked as it was written (this release on); only such backups count
   * towards `backups.keep`.
   */
  verified: boolean;
  /** Files it holds as they were, unchecked (see `BackupMetadata.unverified`). */
  unverified: number;
}

/** Metadata returned by `restore()`: the backup that was swapped in, and the load that followed. */
export interface RestoreMetadata {
  source: string;
  files: number;
  load: LoadMetadata;
}

/**
 * Payload of `persistence.conflict` and of `onConflict` callbacks: a save of this replica met an item
 * that another replica had changed since this one loaded or wrote it (with a `storage` driver).
 */
export interface PersistenceConflictEvent {
  /** The adapter (collection) of the item. */
  adapter: string;
  /** The item's id. */
  id: string;
  /** This replica's version: its value, or `deleted: true` for a removal. */
  local: { value: unknown; deleted: boolean };
  /**
   * The other replica's version as stored when the save ran: its value (undefined when it could not
   * be decoded), or `deleted: true` when it was removed; `revision` 0 when absent.
   */
  remote: { value: unknown; deleted: boolean; revision: number };
  /**
   * True when the local version was written over the remote one (`conflicts: 'last-write-wins'`);
   * false when the remote version was kept and loaded into the adapter (`'reject'`).
   */
  applied: boolean;
}
