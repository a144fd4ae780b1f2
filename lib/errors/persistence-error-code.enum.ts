/**
 * Stable codes carried by every {@link PersistenceError}. Match on these, not on messages.
 */
export enum PersistenceErrorCode {
  /** An option passed to `PersistenceModule.forRoot()` is invalid. */
  InvalidOptions = 'PERSISTENCE_INVALID_OPTIONS',
  /** An adapter is malformed, cannot be resolved, or its name clashes with another. */
  InvalidAdapter = 'PERSISTENCE_INVALID_ADAPTER',
  /** An item id cannot be stored (empty, too long, not a string). */
  InvalidId = 'PERSISTENCE_INVALID_ID',
  /**
   * A manager was given a value it cannot store exactly (a wrong type, a missing field, metadata or
   * context that is not plain JSON data). The message names the field path and the fix; nothing was
   * changed.
   */
  InvalidInput = 'PERSISTENCE_INVALID_INPUT',
  /** A manager was asked for an item that does not exist. */
  NotFound = 'PERSISTENCE_NOT_FOUND',
  /** An item could not be turned into bytes. */
  SerializeFailed = 'PERSISTENCE_SERIALIZE_FAILED',
  /** A stored file could not be parsed; it was moved to `.quarantine/`. */
  CorruptFile = 'PERSISTENCE_CORRUPT_FILE',
  /**
   * An encrypted file could not be decrypted with the configured keys (wrong or missing key, altered
   * or swapped file). It is left in place, never quarantined or removed.
   */
  DecryptionFailed = 'PERSISTENCE_DECRYPTION_FAILED',
  /** The file system refused a read, write, rename or delete. */
  IoFailed = 'PERSISTENCE_IO_FAILED',
  /** A save finished with some items not written; their previous files were kept. */
  SaveIncomplete = 'PERSISTENCE_SAVE_INCOMPLETE',
  /** An adapter's `snapshot()` or `restore()` threw. */
  AdapterFailed = 'PERSISTENCE_ADAPTER_FAILED',
  /** `backup()` was given a destination it must not write to. */
  InvalidBackupDestination = 'PERSISTENCE_INVALID_BACKUP_DESTINATION',
  /**
   * `backup()` found committed item files that are damaged (they do not decode, revive, or match the
   * bytes the store committed). Nothing was written and no older backup was removed; the next save
   * rewrites those items from memory. The message names the files.
   */
  BackupVerificationFailed = 'PERSISTENCE_BACKUP_VERIFICATION_FAILED',
  /** `restore()` was given a source that is not a complete, valid backup. */
  InvalidBackup = 'PERSISTENCE_INVALID_BACKUP',
  /** Another process (or store) holds the store folder. */
  StoreLocked = 'PERSISTENCE_STORE_LOCKED',
  /**
   * This process no longer holds the store folder's lock (another host took it over after this one
   * did not renew it for `lock.leaseMs`, or `.lock` was deleted), or cannot confirm that it still
   * does: the write was refused so that two writers do not corrupt the store.
   */
  LockLost = 'PERSISTENCE_LOCK_LOST',
  /** A write was attempted on a store opened with `readOnly: true`. */
  ReadOnly = 'PERSISTENCE_READ_ONLY',
  /** The store was used after the application closed. */
  StoreClosed = 'PERSISTENCE_STORE_CLOSED',
  /**
   * An item was not saved because it would exceed `limits.maxFileBytes` (or, gzipped,
   * `limits.maxInflatedBytes`) and could not be read back. Its last saved version is kept.
   */
  ItemTooLarge = 'PERSISTENCE_ITEM_TOO_LARGE',
  /**
   * An item was not saved because a file for its id is on disk that this store did not load (not
   * loaded yet, not decryptable with the keys at hand, or unreadable). Saves never overwrite or
   * remove such a file; `store.discardUnloaded()` sets it aside.
   */
  UnloadedItem = 'PERSISTENCE_UNLOADED_ITEM',
  /** A store operation was called from inside an adapter call that the store is waiting for. */
  ReentrantCall = 'PERSISTENCE_REENTRANT_CALL',
  /**
   * The journal was damaged in the middle (valid records after unreadable bytes: not a crash). Reported
   * at start-up, which goes on: the whole journal was copied aside, every valid record before and
   * after the damage was replayed; only the saves in the damaged bytes are lost.
   */
  JournalDamaged = 'PERSISTENCE_JOURNAL_DAMAGED',
  /**
   * A journal file is in a journal format this version does not read (written by an earlier or a
   * later version of the package). The start fails and leaves the file as it is: its saves are not
   * in the item files yet. Start the version that wrote it once (its checkpoint empties the
   * journal), or move the file away to start without its saves.
   */
  JournalFormatUnsupported = 'PERSISTENCE_JOURNAL_FORMAT_UNSUPPORTED',
  /**
   * A stored item's migration (`migrations` of its adapter) threw, or its result was rejected by
   * `revive()`. The file is left in place as it is, unloaded (never overwritten or removed by a save):
   * fix the migration and load again.
   */
  MigrationFailed = 'PERSISTENCE_MIGRATION_FAILED',
  /**
   * A stored item was written by a newer version of the application (its schema version is higher
   * than its adapter's `version`). It is kept in place as it is, unloaded, never overwritten or
   * removed, so rolling back the application destroys nothing.
   */
  ItemFromNewerVersion = 'PERSISTENCE_ITEM_FROM_NEWER_VERSION',
  /**
   * The storage (Redis, a database) cannot be reached, or stopped answering during an operation.
   * Retryable: nothing partial is visible (a commit is atomic); the store keeps its state and its
   * unsaved changes and tries again.
   */
  StorageUnavailable = 'PERSISTENCE_STORAGE_UNAVAILABLE',
  /**
   * The storage answered but refused the operation (authentication, permissions, out of memory, a
   * key of the driver's with a wrong type). Not retryable as is: the message says what to fix.
   */
  StorageRefused = 'PERSISTENCE_STORAGE_REFUSED',
  /**
   * An optional package a feature needs is not installed: `format: 'msgpack'` (or a msgpack file
   * found in the store) needs `msgpackr`; the Redis storage driver needs `ioredis`. The message
   * names the `npm install` command. Files that need it are left in place, unloaded (never
   * overwritten or removed by a save).
   */
  OptionalDependencyMissing = 'PERSISTENCE_OPTIONAL_DEPENDENCY_MISSING',
  /**
   * A stored item is not in the driver's format (wrong key type, missing field, unreadable
   * revision). It is kept as it is, copied aside to quarantine, reported, and never overwritten or
   * removed by a save.
   */
  BadStoredData = 'PERSISTENCE_BAD_STORED_DATA',
  /**
   * The operation exists for the file system only and the store uses a `storage` driver
   * (`discardUnloaded()` on Redis). The message says what to do instead.
   */
  NotSupportedByStorage = 'PERSISTENCE_NOT_SUPPORTED_BY_STORAGE',
  /**
   * `app.init()` with `onUnreadable: 'fail'` (the default): the boot load left items it could not
   * use (not decryptable, not readable, corrupt in place, a failed migration, a missing package, a
   * failed `restore()`). The message counts them per collection and kind and says how to fix it;
   * nothing was changed and the folder was released.
   */
  UnreadableItems = 'PERSISTENCE_UNREADABLE_ITEMS',
}
