import { PersistenceOperation } from '../errors/persistence.error';
import { PersistenceLogger } from '../events/persistence.logger';
import { PersistenceNotifier } from '../events/persistence.notifier';
import { BackupEntry } from '../interfaces/backup-target.interface';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { BackupMetadata, LoadMetadata } from '../interfaces/persistence-metadata.interface';
import { ResolvedPersistenceOptions } from '../interfaces/persistence-module-options.interface';
import { PersistenceStatus } from '../interfaces/persistence-status.interface';
import { ItemFileCodec } from '../serializers/item-file.codec';
import { BackupFile } from '../storage/backup.storage';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { AdapterCaller } from './adapter.caller';
import { CommittedIndex } from './committed.index';
import { ErrorReporter } from './error.reporter';
import { FailureMemo } from './failure.memo';
import { StoreRegistration } from './open-stores.registry';
import { OperationQueue } from './operation.queue';
import { SaveResult, WriterChecks } from './snapshot.writer';

/** What the store shares with its backend: created once, when the store opens. */
export interface BackendContext {
  readonly options: ResolvedPersistenceOptions;
  readonly fs: PersistenceFileSystem;
  /** Every adapter persisted, built-in first. */
  readonly adapters: readonly PersistenceAdapter[];
  readonly index: CommittedIndex;
  /** See `WriterChecks.inSync`: emptied whenever the index changes under the adapters. */
  readonly inSync: Map<string, number>;
  readonly failures: FailureMemo;
  /** The writer's checks of adapter values (trusted adapters, the exact-JSON rule, `inSync`). */
  readonly checks: WriterChecks;
  readonly queue: OperationQueue;
  readonly notifier: PersistenceNotifier;
  readonly errors: ErrorReporter;
  /** Every log line of the store goes through it (the `logger` option). */
  readonly logger: PersistenceLogger;
  /** How this store appears in the registry of folders held by this process. */
  readonly registration: StoreRegistration;
  /** The codec of the next save (changes with `setSerializer()`). */
  codec(): ItemFileCodec;
  caller(): AdapterCaller;
}

/** Status facts that depend on where the state is kept. */
export type BackendStatus = Pick<PersistenceStatus, 'path' | 'journal' | 'disk' | 'storage'> & {
  /** Why the store cannot save now (the store checks `state` and `readOnly` first). */
  notWritableReason?: string;
  /** Why the last load failed as a whole (nothing was loaded), until a load succeeds. */
  loadFailure?: string;
};

/**
 * Where the store keeps its state, behind one internal interface: the file system
 * (`FileSystemBackend`: journal, checkpoint, item files, lock) or a `StorageDriver`
 * (`DriverBackend`). Saves, loads, clear, checkpoint, backups, restore and discard run on the
 * store's operation queue; the lifecycle calls (`open`, `start`, `stopIntake`, `close`, `release`),
 * `status`, `itemPath` and `scheduledBackup` (which queues its backup) do not.
 */
export interface StoreBackend {
  /** The store folder, or the storage driver's location (for messages and status). */
  readonly location: string;
  /** Before the store is ready: create, lock and recover what the backend needs. */
  open(): Promise<void>;
  /**
   * Once the store is ready: the boot load (with `load`), or learn what exists without loading.
   * Rejects (the error reported) only when `onUnreadable: 'fail'` refuses the start.
   */
  start(load: boolean): Promise<void>;
  /** Commits one save: snapshots → changed items → one commit. Reports and rejects on failure. */
  save(operation: PersistenceOperation): Promise<SaveResult>;
  load(operation: PersistenceOperation): Promise<LoadMetadata>;
  clear(): Promise<void>;
  /** Writes the journal into the item files; undefined when the backend has nothing to checkpoint. */
  readonly checkpoint?: () => Promise<void>;
  /** `backup(destination)`: a complete copy of the committed state, as files. */
  backupTo(destination: string): Promise<BackupMetadata>;
  /** The committed items of `collections`, for the backup orchestrator. */
  backupEntries(collections: readonly string[]): AsyncIterable<BackupEntry>;
  /** What must be done before reading `backupEntries` (a checkpoint on files). */
  beforeBackup(): Promise<void>;
  /** Runs a scheduled backup (on a driver: on one replica of the cluster at a time). */
  scheduledBackup(run: () => Promise<unknown>): Promise<unknown>;
  /** Why `from` cannot be restored from at all (e.g. the store folder itself), or undefined. */
  restoreSourceProblem(from: string): Promise<string | undefined>;
  /** Replaces the committed state with `files` (checked already), then loads it. */
  restore(files: readonly BackupFile[], collections: string[]): Promise<LoadMetadata>;
  /** Sets aside an unloaded item's files; undefined when the backend does not support it. */
  readonly discardUnloaded?: (adapter: string, id: string) => Promise<string[]>;
  /** Where an item's stored copy is, for `listUnloaded()`. */
  itemPath(adapter: string, stem: string, fileName: string): string;
  /** False while a shutdown save could overwrite what the backend never loaded. */
  readonly canSaveOnShutdown: boolean;
  status(ready: boolean): Promise<BackendStatus>;
  /** At shutdown, before the queue drains: stop taking outside work (another replica's commits). */
  stopIntake(): void;
  /** At shutdown, after the last save: checkpoint and release (never rejects). */
  close(): Promise<void>;
  /** Releases without checkpointing: an application that never booted gives way. */
  release(): Promise<void>;
}
