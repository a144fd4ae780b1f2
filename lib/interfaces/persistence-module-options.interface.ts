import type { LoggerService } from '@nestjs/common';
import { BackupTarget } from './backup-target.interface';
import { PersistenceAdapterRef } from './persistence-adapter.interface';
import { BuiltInFormat, Serializer } from './serializer.interface';
import type { ConflictPolicy, StorageDriver } from './storage-driver.interface';

/** Auto-save settings. */
export interface AutoSaveOptions {
  /**
   * Milliseconds between two saves. A tick that comes while a save still runs is skipped.
   * @default 300000 (five minutes)
   */
  interval?: number;
  /**
   * Save soon after a change: the first change after a save (a notice on an adapter's `changes$`:
   * the built-in managers', and yours if your adapter has one) schedules a save this many
   * milliseconds later; the changes made meanwhile go into the same save. Saves never overlap (a
   * change during a save schedules the next one). After failed saves the delay doubles, up to
   * `interval`. The window of loss after a crash is then about `debounce`, not `interval`; the
   * interval still runs (for adapters without `changes$`). `false`: no save on change.
   * @default false
   */
  debounce?: number | false;
  /**
   * After consecutive failed saves, skip 0, 1, 3, 7, … ticks (up to this many) before trying again, so
   * a full disk is not hammered. A successful save resets it.
   * @default 8
   */
  maxBackoffTicks?: number;
}

/** A 256-bit key: a 32-byte Buffer, or a string of 64 hex digits or of base64 for 32 bytes. */
export type EncryptionKey = Buffer | Uint8Array | string;

/**
 * Encryption at rest with AES-256-GCM. Give either one `key`, or a keyring: `keys` by id and the
 * id of the `current` key that new files are written with. Files written with another key of the
 * ring are still read, and re-encrypted with the current key at the next save.
 */
export interface EncryptionOptions {
  /** The one key (its id is `'default'`). */
  key?: EncryptionKey;
  /** Every key that may still be needed to read files, by id (1-64 chars of `[A-Za-z0-9._-]`). */
  keys?: Record<string, EncryptionKey>;
  /** Id of the key in `keys` that new files are encrypted with. */
  current?: string;
}

/**
 * Backups into a folder of their own: `backup()` without a path, `listBackups()`, `restore(id)`, an
 * optional schedule and retention. Each backup is complete and checked on its own; unchanged files
 * are shared with the previous backup (hard links), so a backup costs what changed. See docs/backups.md.
 */
export interface BackupOptions {
  /**
   * Folder of the backups, one sub-folder per backup, outside the store folder; created (mode
   * `dirMode`) at the first backup. Relative paths resolve against `process.cwd()`. Required unless
   * `target` is given.
   */
  directory?: string;
  /**
   * When to take a backup by itself: a cron expression of `@nestjs/schedule` (`cron` package syntax,
   * seconds optional, e.g. `'0 3 * * *'` for every day at 03:00 local time). The job is registered in
   * the `SchedulerRegistry` under `PERSISTENCE_BACKUP_CRON` and runs in the store's operation queue; a
   * failure is reported as `persistence.error` (operation `'backup'`) and never stops the
   * application. Ignored (with a warning) on a read-only store.
   * @default undefined (no schedule: call `backup()` yourself)
   */
  cron?: string;
  /**
   * After each backup into the folder, the oldest backups of this store beyond this many are removed.
   * Only folders this store wrote are ever removed (named as a backup id, with a manifest naming that
   * id and this store).
   * @default 7
   */
  keep?: number;
  /**
   * Where the backups go, in place of the local `directory`: your own {@link BackupTarget} (S3, GCS, …).
   * @default a LocalBackupTarget on `directory`
   */
  target?: BackupTarget;
}

/** Size limits for reading files (protection against huge files and gzip bombs). */
export interface PersistenceLimits {
  /**
   * Largest item file read, in bytes; a larger one is not read into memory and is reported.
   * @default 67108864 (64 MiB)
   */
  maxFileBytes?: number;
  /**
   * Largest size a gzip file may inflate to, in bytes; a larger one is rejected as a gzip bomb.
   * @default 268435456 (256 MiB)
   */
  maxInflatedBytes?: number;
}

/**
 * The one-writer lock of the store folder (`<path>/.lock`). Its owner renews it every `renewMs`; a
 * lock of another host that nobody renewed for `leaseMs` is taken over (a lock of this host is
 * checked by its process id at once). See docs/on-disk-format.md, "One writer".
 */
export interface LockOptions {
  /**
   * Milliseconds a lock of another host must stay unrenewed before it is taken over: how long a
   * replaced container on a shared volume waits at start when the previous one died without
   * releasing. Every process on the folder must use the same value or a smaller one than the owner's
   * (the owner writes its own into the lock, and a waiter waits for the longer of the two).
   * @default 30000
   */
  leaseMs?: number;
  /**
   * Milliseconds between two renewals by the owner; fewer than `leaseMs`. An owner whose renewal
   * finds another record in `.lock` stops writing for good (`PERSISTENCE_LOCK_LOST`); one whose
   * renewals fail for a whole lease refuses writes until a renewal succeeds.
   * @default 10000 (or a third of `leaseMs` when that is shorter)
   */
  renewMs?: number;
  /**
   * The host name written into the lock, instead of the machine's: tests simulate other hosts.
   * @internal
   */
  host?: string;
}

/** Options of `PersistenceModule.forRoot()` and of the factory in `forRootAsync()`. */
export interface PersistenceModuleOptions {
  /**
   * Folder holding the store; relative paths resolve against `process.cwd()` at start-up.
   * @default './data'
   */
  path?: string;
  /**
   * How items are written: `'json'` (indented), `'json-compact'`, `'json-gzip'`, `'msgpack'`
   * (MessagePack; needs the optional package `msgpackr`: `npm install msgpackr`), `'auto'` (compact
   * JSON, gzip-compressed above `compressAbove` bytes), or your own {@link Serializer}. Files of any
   * built-in format are always read, so switching format is safe.
   * @default 'json'
   */
  format?: BuiltInFormat | Serializer;
  /**
   * With `format: 'auto'`: an item whose compact JSON is larger than this many bytes is written
   * gzip-compressed, a smaller one as compact JSON. The default is one 4 KiB file-system block, below
   * which compression saves no disk space. Ignored by the other formats.
   * @default 4096
   */
  compressAbove?: number;
  /**
   * Periodic saving through `@nestjs/schedule`'s `SchedulerRegistry` (the application's when it imports
   * `ScheduleModule.forRoot()`, else one of the module's own), or `false`.
   * @default { interval: 300000 }
   */
  autoSave?: AutoSaveOptions | false;
  /**
   * Load the saved state into the adapters while the module initialises, before any
   * `onApplicationBootstrap()` hook of the application runs.
   * @default true
   */
  loadOnBoot?: boolean;
  /**
   * What the start does when the boot load (`loadOnBoot`) leaves items it could not use: files not
   * decryptable with `encryption`'s keys (a wrong or missing key), not readable (permissions, I/O),
   * corrupt and left in place, whose migration failed, that need a missing package, or that the
   * adapter's `restore()` refused. Nothing of them is ever overwritten or removed by a save.
   *   - `'fail'`: `app.init()` rejects with one `PERSISTENCE_UNREADABLE_ITEMS` error that counts them
   *     per collection and kind of problem and says how to fix it; the folder is released and no
   *     file is changed (corrupt files are not moved to `.quarantine/` either).
   *   - `'start'`: the application starts with what could be read; the health indicator reports
   *     down until each such item is resolved (`discardUnloaded()`, or a `loadAll()` that reads it).
   * Items written by a newer schema version (a rollback deploy) never fail the start nor the health
   * check: they stay as they are, listed by `listUnloaded()`, for the newer version to load.
   * @default 'fail'
   */
  onUnreadable?: 'fail' | 'start';
  /**
   * Where the library's log lines go: a Nest `LoggerService` (each line with the context
   * `'Persistence'`), or `false` for none. Errors still reach `onError()`, `@OnEvent` and `events$`.
   * A load logs one line per kind of problem (with the count and a few ids), not one per item.
   * @default Nest's `Logger` (context 'Persistence'), so the application's logger
   */
  logger?: LoggerService | false;
  /**
   * Save once more when the application shuts down (`app.close()`, or SIGTERM/SIGINT with
   * `app.enableShutdownHooks()`), after any save in flight has finished.
   * @default true
   */
  saveOnShutdown?: boolean;
  /**
   * Persist the built-in `SessionManager`, `MemoryManager` and `FocusManager`.
   * @default true
   */
  builtInAdapters?: boolean;
  /**
   * Adapters given as values, persisted beside the built-in ones and those registered with
   * `forFeature()` or `@PersistedState()`: an object is used as it is (an adapter built at run
   * time, which no module provides); a class must be a provider of some module and is taken from
   * there, never created.
   * @default []
   */
  adapters?: PersistenceAdapterRef[];
  /**
   * How many files are read or written at once.
   * @default 16
   */
  ioConcurrency?: number;
  /**
   * Encrypt every item file at rest (AES-256-GCM). Keys never reach a log or an event; read them
   * from the environment through `forRootAsync()`.
   * @default undefined (files are plain JSON)
   */
  encryption?: EncryptionOptions;
  /**
   * Open the store without writing anything: no lock, no recovery, no saves (they throw
   * `PERSISTENCE_READ_ONLY`). Loads read the item files and the journal's committed records. Use it
   * for a second process (a CLI, a replica) that only reads a folder another process writes.
   * @default false
   */
  readOnly?: boolean;
  /**
   * Journal size, in bytes, past which the journal is sealed (renamed to `.journal.<n>`, a new one
   * takes the next saves at once) and its saves are written into the item files in the background
   * (the checkpoint); saves never wait for it. Smaller means more frequent checkpoints; larger means
   * more replay after a crash. `0`: after every save that wrote something.
   * @default 8388608 (8 MiB)
   */
  checkpointBytes?: number;
  /**
   * Milliseconds an adapter's `snapshot()` or `restore()` may take. One that has not settled by then
   * is abandoned for that save or load (reported as `PERSISTENCE_ADAPTER_FAILED`; a save keeps that
   * adapter's last saved state), so one stuck adapter never hangs saves, loads or shutdown.
   * @default 10000
   */
  adapterTimeout?: number;
  /**
   * Size limits, applied when reading files and, so that nothing is saved that could not be read
   * back, when saving items (an item over a limit is refused as `PERSISTENCE_ITEM_TOO_LARGE`).
   * @default { maxFileBytes: 67108864, maxInflatedBytes: 268435456 }
   */
  limits?: PersistenceLimits;
  /**
   * Permission bits of the files the store writes.
   * @default 0o600
   */
  fileMode?: number;
  /**
   * Permission bits of the folders the store creates. A store folder writable by other users is
   * reported with a warning at start-up.
   * @default 0o700
   */
  dirMode?: number;
  /**
   * Backups into a folder (or a target) of their own, optionally scheduled, with retention.
   * @default undefined (`backup(path)` and `restore(path)` still work)
   */
  backups?: BackupOptions;
  /**
   * Where the items are kept: a {@link StorageDriver} such as
   * `new RedisStorageDriver({ url, keyPrefix })`, for applications running several replicas. With a
   * driver the store keeps nothing in `path`: no lock, no journal, no item files; every save is one
   * atomic `commit()` of the changed items (deletions included), each with the revision it was
   * loaded or last written with, and other replicas' commits are loaded as they happen. Backups are
   * folders of item files as on the file system; a scheduled backup runs on one replica per tick
   * (a lease). `checkpoint()` does nothing; `discardUnloaded()` is not supported on a driver (it
   * throws `PERSISTENCE_NOT_SUPPORTED_BY_STORAGE`). See docs/storage-drivers.md.
   * @default undefined (the local file system at `path`)
   */
  storage?: StorageDriver;
  /**
   * With a `storage` driver: what a save does with an item another replica changed since this one
   * loaded or wrote it. `'last-write-wins'` writes this replica's version; `'reject'` keeps the other
   * replica's version, loads it into the adapter and drops the local change. Either way the conflict
   * is emitted as `persistence.conflict` (both versions). Ignored without a driver (one writer).
   * @default 'last-write-wins'
   */
  conflicts?: ConflictPolicy;
  /**
   * The one-writer lock of the store folder: how often its owner renews it, and how long a lock of
   * another host must go unrenewed before it is taken over. Ignored with `storage` and `readOnly`.
   * @default { leaseMs: 30000, renewMs: 10000 }
   */
  lock?: LockOptions;
}

/** `backups` after defaults were merged in. */
export interface ResolvedBackupOptions {
  directory: string | undefined;
  cron: string | undefined;
  keep: number;
  target: BackupTarget | undefined;
}

/** Options after defaults were merged in: what the store works with. */
export interface ResolvedPersistenceOptions {
  path: string;
  format: BuiltInFormat | Serializer;
  compressAbove: number;
  autoSave: Required<AutoSaveOptions> | false;
  loadOnBoot: boolean;
  onUnreadable: 'fail' | 'start';
  logger: LoggerService | false | undefined;
  saveOnShutdown: boolean;
  builtInAdapters: boolean;
  adapters: PersistenceAdapterRef[];
  ioConcurrency: number;
  encryption: EncryptionOptions | undefined;
  limits: Required<PersistenceLimits>;
  readOnly: boolean;
  checkpointBytes: number;
  adapterTimeout: number;
  fileMode: number;
  dirMode: number;
  backups: ResolvedBackupOptions | undefined;
  storage: StorageDriver | undefined;
  conflicts: ConflictPolicy;
  lock: ResolvedLockOptions;
}

/** `lock` after defaults were merged in. */
export interface ResolvedLockOptions {
  leaseMs: number;
  renewMs: number;
  /** @internal */
  host?: string;
}
