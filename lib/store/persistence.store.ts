import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnModuleInit,
  Optional,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { EventEmitter2, EventEmitterReadinessWatcher } from '@nestjs/event-emitter';
import { SchedulerRegistry } from '@nestjs/schedule';
import { randomBytes } from 'node:crypto';
import { basename, join, resolve } from 'node:path';
import { merge, Observable } from 'rxjs';
import { FocusAdapter } from '../adapters/focus/focus.adapter';
import { MemoryAdapter } from '../adapters/memory/memory.adapter';
import { SessionAdapter } from '../adapters/session/session.adapter';
import { ItemCipher } from '../encryption/item.cipher';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceEvents } from '../events/persistence-events.enum';
import { PersistenceNotifier } from '../events/persistence.notifier';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import {
  PersistenceErrorRecord,
  PersistenceEvent,
} from '../interfaces/persistence-event.interface';
import {
  BackupInfo,
  BackupMetadata,
  LoadMetadata,
  PersistenceConflictEvent,
  PersistenceErrorEvent,
  RestoreMetadata,
  SaveMetadata,
} from '../interfaces/persistence-metadata.interface';
import {
  PersistenceModuleOptions,
  ResolvedPersistenceOptions,
} from '../interfaces/persistence-module-options.interface';
import { PersistenceStatus } from '../interfaces/persistence-status.interface';
import { BuiltInFormat, Serializer } from '../interfaces/serializer.interface';
import { StorageDriver } from '../interfaces/storage-driver.interface';
import {
  BACKUP_LEASE,
  BACKUP_LEASE_TTL_MS,
  BACKUP_MANIFEST_VERSION,
  JOURNAL_FILE,
  PERSISTENCE_LOGGER_CONTEXT,
  PERSISTENCE_SCHEDULER_REGISTRY,
} from '../persistence.constants';
import * as messages from '../persistence.messages';
import { PERSISTENCE_MODULE_OPTIONS } from '../persistence.module-definition';
import { createSerializer } from '../serializers/serializer.factory';
import {
  BackupProblem,
  isFreeDestination,
  readBackup,
  storeEntries,
  writeBackupFolder,
  recoverRestores,
  swapInBackup,
  writeBackup,
} from '../storage/backup.storage';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { FileSystemStorage } from '../storage/file-system.storage';
import { exists, fsyncDirectory } from '../storage/fs.util';
import { ItemFileCodec } from '../storage/item-file.codec';
import { decodeStem, encodeId } from '../storage/file-name.codec';
import {
  Journal,
  JournalDamage,
  JournalOp,
  listSealedSegments,
  readAllSegments,
  readSealedSegment,
  readOpData,
  sealedSegmentPath,
} from '../storage/journal';
import { isSameOrInside } from '../storage/path.util';
import { LockHeldError, StoreLock } from '../storage/store.lock';
import { findNonJsonData } from '../adapters/json-data.util';
import { AdapterCaller } from './adapter.caller';
import { PersistenceAdapterExplorer } from './adapter.explorer';
import { candidatesFromOption, resolveAdapters } from './adapter.resolver';
import { AutoSaveScheduler } from './auto-save.scheduler';
import { BackupOrchestrator } from './backup.orchestrator';
import { CommittedIndex, inSyncAfterLoad } from './committed.index';
import { DriverReplica } from './driver.replica';
import { FailureMemo } from './failure.memo';
import { OpenStore, openStores } from './open-stores.registry';
import { OperationQueue } from './operation.queue';
import { assertInterval, DEFAULT_OPTIONS, resolveOptions } from './persistence.options';
import { reviveStored } from './schema.migrator';
import { applyCommandLineOverride } from './command-line.override';
import { IoThrottle } from '../storage/map-limit.util';
import { SnapshotReader } from './snapshot.reader';
import { SnapshotWriter } from './snapshot.writer';

/**
 * Item files the background checkpoint writes at once while nothing waits for it, so the fsync of
 * a save committing meanwhile is not queued behind many of its own (measured on the medium tier:
 * the 1% save right after a full save, 11.5 ms with 16 at once, 6.5 ms with 4, 5.8 ms with 1). A
 * load, backup, restore, clear, `checkpoint()` or shutdown that waits for it lifts the limit.
 */
const BACKGROUND_CHECKPOINT_CONCURRENCY = 4;

/** What JSON cannot carry exactly in a custom adapter's value, as one sentence; undefined: none. */
function findProblem(value: unknown, allowToJSON: boolean): string | undefined {
  const found = findNonJsonData(value, { allowToJSON, path: 'the value' });
  return found && `${found.path} ${found.problem}; ${found.fix}`;
}

/**
 * The public API: save, load, clear, back up and restore the state of every adapter, and watch it
 * happen. One operation runs at a time; `saveAll()` calls that arrive during a save share one more.
 *
 * A save commits by appending one record to the journal (one fsync). Past `checkpointBytes` the
 * journal is sealed and its records are written into the item files in the background, while the
 * next saves commit into a new journal; the rest is checkpointed before a load, a backup or a
 * restore, at shutdown, and at the next start after a crash.
 */
@Injectable()
export class PersistenceStore
  implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown
{
  private readonly logger = new Logger(PERSISTENCE_LOGGER_CONTEXT);
  private readonly queue = new OperationQueue();
  private readonly notifier: PersistenceNotifier;
  private readonly adapterList: PersistenceAdapter[] = [];
  /** The built-in adapters: their managers check every value when they accept it. */
  private readonly trustedAdapters = new Set<PersistenceAdapter>();
  private readonly index: CommittedIndex = new Map();
  /**
   * Adapters reporting their changes whose index is in step with them (see `WriterChecks.inSync`);
   * emptied whenever the index changes under the adapters, so the next save compares every item.
   */
  private readonly inSync = new Map<string, number>();
  private readonly failures = new FailureMemo();
  private caller = new AdapterCaller(DEFAULT_OPTIONS.adapterTimeout);
  /** Operations committed in the active journal, not yet checkpointed. */
  private pending: JournalOp[] = [];
  /** Sealed journal segments, oldest first, waiting for (or in) the background checkpoint. */
  private sealed: Array<{ path: string; ops: JournalOp[]; bytes: number }> = [];
  /** Slows the background checkpoint while it runs alone; boosted when something waits for it. */
  private drainThrottle?: IoThrottle;
  /** Number of the next sealed segment. */
  private nextSegment = 1;
  /** The background checkpoint of the sealed segments, while it runs. */
  private draining?: Promise<void>;
  private options!: ResolvedPersistenceOptions;
  private storage!: FileSystemStorage;
  private journal!: Journal;
  private lock?: StoreLock;
  private codec!: ItemFileCodec;
  private cipher?: ItemCipher;
  private autoSave?: AutoSaveScheduler;
  private backups?: BackupOrchestrator;
  /** With a `storage` driver: the store's side of it (the file-system fields stay unset). */
  private replica?: DriverReplica;
  private queuedSave?: Promise<SaveMetadata>;
  private folderRemoved = false;
  private lastSaveTime: Date | null = null;
  private state: 'created' | 'ready' | 'closing' | 'closed' = 'created';
  private shutdown?: Promise<void>;
  private releaseBootEvents?: () => void;
  private bootstrapped = false;
  /** Recovery could not write the journal into the item files: the boot load reads it instead. */
  private replayDeferred = false;
  /** How this store appears in the registry of folders held by this process. */
  private readonly registration: OpenStore = {
    isBootstrapped: () => this.bootstrapped,
    supersede: () => this.supersede(),
  };
  private startedAt: Date | null = null;

  constructor(
    @Inject(PERSISTENCE_MODULE_OPTIONS) private readonly rawOptions: PersistenceModuleOptions,
    @Inject(PersistenceFileSystem) private readonly fs: PersistenceFileSystem,
    private readonly moduleRef: ModuleRef,
    private readonly sessionAdapter: SessionAdapter,
    private readonly memoryAdapter: MemoryAdapter,
    private readonly focusAdapter: FocusAdapter,
    @Optional() eventEmitter?: EventEmitter2,
    @Optional()
    @Inject(PERSISTENCE_SCHEDULER_REGISTRY)
    private readonly schedulerRegistry?: SchedulerRegistry,
  ) {
    this.notifier = new PersistenceNotifier(eventEmitter);
    if (!eventEmitter) {
      this.logger.log(messages.eventEmitterMissing());
    }
  }

  /** Every adapter persisted, built-in first. Filled when the module initialises. */
  get adapters(): readonly PersistenceAdapter[] {
    return this.adapterList;
  }

  /** Absolute path of the store folder. */
  get path(): string {
    return this.options.path;
  }

  /** True when the store was opened with `readOnly: true`. */
  get readOnly(): boolean {
    return this.options.readOnly;
  }

  /**
   * Validates the options, locks the folder, recovers from a crash (finishes an interrupted restore,
   * replays the journal, removes temporary files), loads, and starts auto-save.
   */
  async onModuleInit(): Promise<void> {
    this.options = applyCommandLineOverride(resolveOptions(this.rawOptions));
    this.caller = new AdapterCaller(this.options.adapterTimeout);
    if (this.options.encryption) {
      this.cipher = ItemCipher.create(this.options.encryption, () => {
        throw new Error('unreachable: validated by resolveOptions');
      });
    }
    this.setCodec(this.createSerializer(this.options.format));
    // Built-in, forFeature() and @PersistedState() adapters, then the deprecated `adapters` option.
    this.adapterList.push(
      ...resolveAdapters([
        ...this.moduleRef.get(PersistenceAdapterExplorer).explore(this.options.builtInAdapters),
        ...candidatesFromOption(this.moduleRef, this.options.adapters),
      ]),
    );
    for (const adapter of [this.sessionAdapter, this.memoryAdapter, this.focusAdapter]) {
      this.trustedAdapters.add(adapter);
    }
    if (this.options.autoSave !== false && !this.schedulerRegistry && !this.options.readOnly) {
      throw new PersistenceError(
        PersistenceErrorCode.SchedulerMissing,
        messages.schedulerMissing(),
        {
          operation: 'init',
        },
      );
    }
    if (this.options.storage) {
      await this.initDriver();
      return;
    }
    const { path } = this.options;
    this.storage = new FileSystemStorage(this.fs, {
      root: path,
      ioConcurrency: this.options.ioConcurrency,
      fileMode: this.options.fileMode,
      dirMode: this.options.dirMode,
      maxFileBytes: this.options.limits.maxFileBytes,
    });
    this.journal = new Journal(this.fs, join(path, JOURNAL_FILE), this.options.fileMode);
    // Before recovery: what it reports (a damaged journal) must reach @OnEvent listeners too.
    this.holdBootEvents();
    let overlay: JournalOp[][] = [];
    if (this.options.readOnly) {
      overlay = await this.io('init', 'read the journal of', path, () => this.readJournalOnly());
    } else {
      await this.io('init', 'create', path, () => this.storage.ensureRoot());
      await this.supersedeFailedBoot();
      await this.acquireLock();
      try {
        await this.io('init', 'recover', path, () => this.recover());
      } catch (error) {
        await this.journal.close().catch(() => undefined);
        await this.lock?.release();
        throw error;
      }
      openStores.add(path, this.registration);
    }
    if (await this.storage.isWritableByOthers().catch(() => false)) {
      this.logger.warn(messages.writableByOthers(path));
    }
    this.state = 'ready';
    this.startedAt = new Date();
    if (this.options.loadOnBoot) {
      // A failed load never stops the application: it starts with what could be read.
      await this.queue.run(() => this.runLoad('load', overlay)).catch(() => undefined);
    } else {
      await this.indexFiles();
    }
    if (this.options.autoSave !== false && !this.options.readOnly) {
      this.enableAutoSave(this.options.autoSave.interval);
    }
    this.backups = new BackupOrchestrator(this.options.backups, {
      fs: this.fs,
      modes: { fileMode: this.options.fileMode, dirMode: this.options.dirMode },
      entries: (collections) =>
        storeEntries(this.storage, collections, this.codec.serializer.extension),
      storePath: path,
      maxFileBytes: this.options.limits.maxFileBytes,
      collections: () => this.adapterList.map((a) => a.name),
      extension: () => this.codec.serializer.extension,
      checkpoint: () => this.io('backup', 'checkpoint', path, () => this.applyJournal()),
      report: (error) => this.fail(error),
    });
    this.backups.startSchedule(this.schedulerRegistry, this.options.readOnly, () => this.backup());
  }

  /**
   * With a storage driver: no folder, lock, journal or recovery. Opens the driver and loads; when the
   * storage does not answer, the application starts anyway (error reported, opened and loaded later).
   */
  private async initDriver(): Promise<void> {
    const driver = this.options.storage!;
    this.holdBootEvents();
    const replica = new DriverReplica({
      driver,
      conflicts: this.options.conflicts,
      adapters: this.adapterList,
      index: this.index,
      inSync: this.inSync,
      queue: this.queue,
      notifier: this.notifier,
      codec: () => this.codec,
      caller: () => this.caller,
      fail: (error, operation) => this.fail(error, operation),
    });
    this.replica = replica;
    this.state = 'ready';
    this.startedAt = new Date();
    await this.queue.run(() => replica.start(this.options.loadOnBoot));
    if (this.options.autoSave !== false && !this.options.readOnly) {
      this.enableAutoSave(this.options.autoSave.interval);
    }
    this.backups = new BackupOrchestrator(this.options.backups, {
      fs: this.fs,
      modes: { fileMode: this.options.fileMode, dirMode: this.options.dirMode },
      entries: (collections) => replica.entries(collections),
      storePath: driver.location,
      maxFileBytes: this.options.limits.maxFileBytes,
      collections: () => this.adapterList.map((a) => a.name),
      extension: () => this.codec.serializer.extension,
      checkpoint: () => Promise.resolve(),
      report: (error) => this.fail(error),
    });
    this.backups.startSchedule(this.schedulerRegistry, this.options.readOnly, () =>
      this.leasedBackup(driver),
    );
  }

  /**
   * A scheduled backup on a storage driver: once per cluster. The replica that takes the lease
   * `backup` runs it (renewing the lease meanwhile); the others skip this tick. The lease is not
   * released after the run but left to expire, so a replica whose clock lags does not run the same
   * tick again.
   */
  private async leasedBackup(driver: StorageDriver): Promise<unknown> {
    let lease;
    try {
      lease = await driver.acquireLease(BACKUP_LEASE, BACKUP_LEASE_TTL_MS);
    } catch (error) {
      throw this.fail(this.wrapIo('backup', 'take the backup lease of', driver.location, error));
    }
    if (!lease) {
      this.logger.log(messages.backupLeaseHeld(driver.location));
      return undefined;
    }
    const held = lease;
    const renewal = setInterval(() => {
      held.renew().catch(() => false);
    }, BACKUP_LEASE_TTL_MS / 3);
    try {
      return await this.backup();
    } finally {
      clearInterval(renewal);
    }
  }

  /** `backup(destination)` on a storage driver: its items, from one consistent state, as files. */
  private async backupDriverTo(
    replica: DriverReplica,
    destination: string,
  ): Promise<BackupMetadata> {
    const started = performance.now();
    const target = resolve(destination);
    if (!(await this.io('backup', 'inspect', target, () => isFreeDestination(this.fs, target)))) {
      throw this.fail(
        new PersistenceError(
          PersistenceErrorCode.InvalidBackupDestination,
          messages.backupDestinationNotEmpty(target),
          { operation: 'backup', path: target },
        ),
      );
    }
    const collections = this.adapterList.map((a) => a.name);
    const manifest = await this.io('backup', 'write the backup', target, () =>
      writeBackupFolder(
        this.fs,
        { fileMode: this.options.fileMode, dirMode: this.options.dirMode },
        target,
        `.${basename(target)}.backup-${randomBytes(6).toString('hex')}`,
        { version: BACKUP_MANIFEST_VERSION, createdAt: new Date().toISOString(), collections },
        replica.entries(collections),
      ),
    );
    return {
      path: target,
      files: manifest.files.length,
      size: manifest.newBytes ?? 0,
      timestamp: new Date(),
      durationMs: performance.now() - started,
    };
  }

  /** Refuses an operation of the file system only on a store with a storage driver. */
  private refuseOnDriver<T>(operation: string): Promise<T> | undefined {
    if (!this.replica) return undefined;
    return Promise.reject(
      this.fail(
        new PersistenceError(
          PersistenceErrorCode.NotSupportedByStorage,
          messages.notSupportedByStorage(operation, this.replica.location),
          { path: this.replica.location },
        ),
      ),
    );
  }

  /** Lets the boot load's events out once `@OnEvent` listeners are wired. */
  onApplicationBootstrap(): void {
    this.bootstrapped = true;
    this.releaseBootEvents?.();
  }

  /**
   * Runs after every `onModuleDestroy()` hook, so services that flush their state there are included:
   * stops auto-save, waits for operations in flight, saves once more, checkpoints, and releases the
   * folder. A failure is logged and emitted; shutdown goes on.
   */
  beforeApplicationShutdown(): Promise<void> {
    this.shutdown ??= this.close().finally(() => this.notifier.complete());
    return this.shutdown;
  }

  /**
   * Saves the state of every adapter: the items that changed since the last save, and the removal of
   * those deleted, committed together (all or nothing). Resolves after a save that includes the state
   * as it was at the time of the call: a call made while a save runs waits for one more save, shared
   * by every call that arrives meanwhile.
   */
  saveAll(): Promise<SaveMetadata> {
    const refused = this.refuse<SaveMetadata>('save', true);
    if (refused) return refused;
    return this.requestSave('save');
  }

  /** A save after those queued, shared with a save already waiting to start. */
  private requestSave(operation: PersistenceOperation): Promise<SaveMetadata> {
    if (this.queuedSave) {
      return this.queuedSave;
    }
    const save = this.queue.run(async () => {
      if (this.queuedSave === save) this.queuedSave = undefined;
      return this.runSave(operation);
    });
    this.queuedSave = save;
    return save;
  }

  /**
   * Writes every committed save into the item files now and empties the journal. Saves do not wait
   * for this (their commit is the journal record); the journal is also sealed and checkpointed in the
   * background when it passes `checkpointBytes`, and checkpointed before a load, a backup or a
   * restore, and at shutdown. Call it when something outside the store is about to read the item
   * files.
   */
  checkpoint(): Promise<void> {
    return (
      this.refuse('checkpoint', true) ??
      (this.replica ? Promise.resolve() : undefined) ??
      this.enqueue(() =>
        this.io('checkpoint', 'checkpoint', this.options.path, () => this.applyJournal()),
      )
    );
  }

  /**
   * Replaces the in-memory state of every adapter with the saved state. Unreadable files are
   * quarantined and reported; the rest loads.
   */
  loadAll(): Promise<LoadMetadata> {
    const replica = this.replica;
    if (replica) {
      return (
        this.refuse('load', false) ??
        this.enqueue(() =>
          replica.load('load').catch((error: unknown) => {
            throw this.fail(this.wrapIo('load', 'load', replica.location, error), 'load');
          }),
        )
      );
    }
    return (
      this.refuse('load', false) ??
      this.enqueue(async () =>
        this.runLoad('load', this.options.readOnly ? await this.readJournalOnly() : []),
      )
    );
  }

  /**
   * Deletes every saved item of every adapter, as one commit (quarantined files stay). In-memory
   * state is kept.
   */
  clear(): Promise<void> {
    const replica = this.replica;
    if (replica) {
      return (
        this.refuse('clear', true) ??
        this.enqueue(() => this.io('clear', 'clear', replica.location, () => replica.clear()))
      );
    }
    return (
      this.refuse('clear', true) ??
      this.enqueue(async () => {
        const ops: JournalOp[] = [];
        for (const [collection, entries] of this.index) {
          for (const entry of entries.values()) {
            for (const fileName of [entry.fileName, ...(entry.others ?? [])]) {
              ops.push({ collection, fileName });
            }
          }
        }
        await this.io('clear', 'clear', this.options.path, async () => {
          if (ops.length > 0) await this.journal.append(ops);
          this.pending.push(...ops);
          for (const entries of this.index.values()) entries.clear();
          this.inSync.clear();
          await this.applyJournal();
        });
      })
    );
  }

  /**
   * Writes a complete copy of the saved state (not of unsaved changes: call `saveAll()` first for
   * those) to `destination`, which must be outside the store and missing or empty. The copy appears
   * whole or not at all. Without `destination`: a new backup into `backups.directory` (or
   * `backups.target`), sharing unchanged files with the previous one, then retention (`backups.keep`).
   */
  backup(destination?: string): Promise<BackupMetadata> {
    return (
      this.refuse('back up', true) ??
      this.enqueue(async () => {
        if (destination === undefined) return this.backups!.backupNow();
        if (this.replica) return this.backupDriverTo(this.replica, destination);
        const started = performance.now();
        const target = resolve(destination);
        const store = this.options.path;
        let problem: string | undefined;
        if (isSameOrInside(target, store)) {
          problem = messages.backupDestinationInside(target, store);
        } else if (isSameOrInside(store, target)) {
          problem = messages.backupDestinationHoldsStore(target, store);
        } else if (
          !(await this.io('backup', 'inspect', target, () => isFreeDestination(this.fs, target)))
        ) {
          problem = messages.backupDestinationNotEmpty(target);
        }
        if (problem) {
          throw this.fail(
            new PersistenceError(PersistenceErrorCode.InvalidBackupDestination, problem, {
              operation: 'backup',
              path: target,
            }),
          );
        }
        await this.io('backup', 'checkpoint', store, () => this.applyJournal());
        const written = await this.io('backup', 'write the backup', target, () =>
          writeBackup(
            this.storage,
            this.adapterList.map((a) => a.name),
            target,
            this.codec.serializer.extension,
          ),
        );
        return {
          path: target,
          ...written,
          timestamp: new Date(),
          durationMs: performance.now() - started,
        };
      })
    );
  }

  /**
   * Restores a backup: replaces the saved state with the backup's, then loads it into memory
   * through each adapter's `restore(items)` (which only restores into memory). Every file of the backup
   * is read and checked first; a backup that is incomplete, tampered with or holds anything unexpected
   * is refused and nothing changes. The swap itself survives a crash (it completes at the next start).
   * `source` is a folder, or the id of a backup from `listBackups()`.
   */
  restore(source: string): Promise<RestoreMetadata> {
    return (
      this.refuse('restore', true) ??
      this.enqueue(async () => {
        const backupId = this.backups?.backupIdOf(source);
        const from = backupId === undefined ? resolve(source) : this.backups!.locate(backupId);
        const invalid = (problem: string, cause?: unknown): PersistenceError =>
          this.fail(
            new PersistenceError(
              PersistenceErrorCode.InvalidBackup,
              messages.backupSourceInvalid(from, problem),
              { operation: 'restore', path: from, cause },
            ),
          );
        if (
          backupId === undefined &&
          !this.replica &&
          (isSameOrInside(from, this.options.path) || isSameOrInside(this.options.path, from))
        ) {
          throw invalid('it is the store folder, inside it, or contains it');
        }
        const collections = this.adapterList.map((a) => a.name);
        const byName = new Map(this.adapterList.map((a) => [a.name, a]));
        let files;
        try {
          files =
            backupId === undefined
              ? await readBackup(
                  this.fs,
                  from,
                  collections,
                  this.codec.serializer.extension,
                  this.options.limits.maxFileBytes,
                )
              : await this.backups!.read(backupId);
          for (const file of files) {
            try {
              const { envelope } = await this.codec.decode(file.collection, file, file.data);
              const adapter = byName.get(file.collection);
              if (adapter) reviveStored(this.caller, adapter, envelope); // migrations, revive()
            } catch (error) {
              throw new BackupProblem(
                `"${file.collection}/${file.fileName}" is not a valid item file (${messages.reasonOf(error)})`,
              );
            }
          }
        } catch (error) {
          throw invalid(messages.reasonOf(error), error);
        }
        const replica = this.replica;
        if (replica) {
          const load = await this.io('restore', 'restore the backup into', replica.location, () =>
            replica.restoreFiles(files),
          );
          return { source: from, files: files.length, load };
        }
        await this.io('restore', 'swap in the backup', this.options.path, async () => {
          await this.applyJournal();
          await swapInBackup(this.storage, collections, files);
        });
        const load = await this.runLoad('restore', []);
        return { source: from, files: files.length, load };
      })
    );
  }

  /** The backups in `backups.directory` (or `backups.target`), newest first; none when not configured. */
  listBackups(): Promise<BackupInfo[]> {
    return this.refuse<BackupInfo[]>('list backups', false) ?? this.backups!.list();
  }

  /**
   * Item files on disk that this store did not load: not loaded yet (`loadOnBoot: false`), not
   * decryptable with the configured keys, unreadable, or refused by the adapter's `restore()`. Saves
   * never overwrite or remove them; an item of the same id is not saved while its file is listed here.
   */
  listUnloaded(): Array<{ adapter: string; id: string; path: string; reason: string }> {
    this.assertOpen('list unloaded items');
    const list: Array<{ adapter: string; id: string; path: string; reason: string }> = [];
    for (const [adapter, entries] of this.index) {
      for (const [stem, entry] of entries) {
        if (entry.unloaded === undefined) continue;
        list.push({
          adapter,
          id: decodeStem(stem) ?? stem,
          path: this.replica
            ? `${this.replica.location} ${adapter}/${stem}`
            : join(this.options.path, adapter, entry.fileName),
          reason: entry.unloaded,
        });
      }
    }
    return list;
  }

  /**
   * Sets aside the unloaded file(s) of one item (see {@link listUnloaded}): they are moved to
   * `.quarantine/<adapter>/`, never deleted, and the next save may write that item again. Resolves
   * with where each file went (empty when the item had no unloaded file).
   */
  discardUnloaded(adapter: string, id: string): Promise<string[]> {
    return (
      this.refuse<string[]>('discard an unloaded item', true) ??
      this.refuseOnDriver('discard an unloaded item') ??
      this.enqueue(async () => {
        const entries = this.index.get(adapter);
        const stem = encodeId(id);
        const entry = entries?.get(stem);
        if (!entries || entry?.unloaded === undefined) return [];
        await this.io('checkpoint', 'checkpoint', this.options.path, () => this.applyJournal());
        const moved: string[] = [];
        for (const fileName of [entry.fileName, ...(entry.others ?? [])]) {
          const file = {
            stem,
            extension: '',
            fileName,
            path: join(this.storage.collectionPath(adapter), fileName),
          };
          const to = await this.io('save', 'set aside', file.path, () =>
            this.storage.quarantine(adapter, file),
          );
          this.storage.unpin(file.path);
          moved.push(to);
        }
        entries.delete(stem);
        this.inSync.delete(adapter); // the item in memory (if any) is saved at the next save
        this.failures.clear(adapter, stem);
        return moved;
      })
    );
  }

  /**
   * Starts (or restarts with a new interval) auto-save, in the application's `SchedulerRegistry` when
   * it imports `ScheduleModule.forRoot()`, else in one of this module's own.
   */
  enableAutoSave(intervalMs: number): void {
    this.assertWritable('enable auto-save');
    assertInterval('interval', intervalMs);
    if (!this.schedulerRegistry) {
      throw new PersistenceError(
        PersistenceErrorCode.SchedulerMissing,
        messages.schedulerMissing(),
      );
    }
    // Items that could not be saved were reported; the rest was committed: not a failure of the
    // store, so auto-save keeps its schedule.
    const incompleteIsDone = (error: unknown): undefined => {
      if (error instanceof PersistenceError && error.code === PersistenceErrorCode.SaveIncomplete) {
        return undefined;
      }
      throw error;
    };
    this.autoSave ??= new AutoSaveScheduler(
      this.schedulerRegistry,
      () => this.queue.busy,
      () => this.queue.run(() => this.runSave('auto-save').catch(incompleteIsDone)),
      this.options.autoSave === false ? 8 : this.options.autoSave.maxBackoffTicks,
      () =>
        this.state === 'ready'
          ? this.requestSave('auto-save').catch(incompleteIsDone)
          : Promise.resolve(),
    );
    this.autoSave.start(intervalMs);
    const debounce = this.options.autoSave === false ? false : this.options.autoSave.debounce;
    if (debounce !== false) {
      const streams = this.adapterList.flatMap((adapter) =>
        adapter.changes$ ? [adapter.changes$] : [],
      );
      this.autoSave.startDebounce(debounce, merge(...streams));
    }
  }

  /** Stops auto-save; a save in flight finishes. */
  disableAutoSave(): void {
    this.autoSave?.stop();
  }

  isAutoSaveEnabled(): boolean {
    return this.autoSave?.enabled ?? false;
  }

  /** Time the last successful save started (the moment its state was taken); `null` before. */
  getLastSaveTime(): Date | null {
    return this.lastSaveTime;
  }

  /**
   * Switches the format of the next saves. Files already written in another built-in format are still
   * read, and rewritten in the new format by the next save.
   */
  setSerializer(format: BuiltInFormat | Serializer): void {
    this.assertOpen('change the format');
    const resolved = resolveOptions({ ...this.rawOptions, format, adapters: [] }).format;
    this.setCodec(this.createSerializer(resolved));
    this.inSync.clear(); // every file is rewritten in the new format
  }

  /** The serializer used for the next save. */
  getSerializer(): Serializer {
    return this.codec.serializer;
  }

  /** Calls `callback` after every successful save. Returns a function that unsubscribes. */
  onSave(callback: (meta: SaveMetadata) => unknown): () => void {
    return this.notifier.on(PersistenceEvents.Saved, callback);
  }

  /** Calls `callback` after every load. Returns a function that unsubscribes. */
  onLoad(callback: (meta: LoadMetadata) => unknown): () => void {
    return this.notifier.on(PersistenceEvents.Loaded, callback);
  }

  /**
   * Calls `callback` for every conflict a save meets (with a `storage` driver: an item another
   * replica changed meanwhile). Returns a function that unsubscribes.
   */
  onConflict(callback: (event: PersistenceConflictEvent) => unknown): () => void {
    return this.notifier.on(PersistenceEvents.Conflict, callback);
  }

  /** Calls `callback` for every error. Returns a function that unsubscribes. */
  onError(callback: (event: PersistenceErrorEvent) => unknown): () => void {
    return this.notifier.on(PersistenceEvents.Error, callback);
  }

  /**
   * Every save, load and error, as `{ type: 'saved' | 'loaded' | 'error', payload }` (the payloads of
   * the callbacks and of `@OnEvent`). Completes when the application shuts down, after the last
   * save. Like `@OnEvent`, the boot load's events arrive once the application has bootstrapped.
   */
  get events$(): Observable<PersistenceEvent> {
    return this.notifier.events$;
  }

  /** The last error the store reported (an event of `persistence.error`); `null` before any. */
  getLastError(): PersistenceErrorRecord | null {
    return this.notifier.lastError ?? null;
  }

  /**
   * The facts a health check needs, measured now: can the store save (checks that the folder is
   * writable), the last save and the last error, the journal not yet checkpointed, the free space.
   * Never throws; reads nothing but the folder's metadata.
   */
  async getStatus(): Promise<PersistenceStatus> {
    const state = this.state === 'created' ? 'starting' : this.state;
    if (this.replica) return this.driverStatus(state);
    const path = this.options?.path ?? '';
    let notWritableReason: string | undefined;
    if (state !== 'ready') {
      notWritableReason = `the store is ${state}`;
    } else if (this.options.readOnly) {
      notWritableReason = 'the store was opened with readOnly: true';
    } else {
      notWritableReason = await this.fs.access(path, 'write').then(
        () => undefined,
        (error: unknown) => `the folder is not writable: ${messages.reasonOf(error)}`,
      );
    }
    const disk = path === '' ? null : await this.fs.statfs(path).catch(() => null);
    return {
      path,
      state,
      readOnly: this.options?.readOnly ?? false,
      writable: notWritableReason === undefined,
      ...(notWritableReason === undefined ? {} : { notWritableReason }),
      startedAt: this.startedAt,
      lastSaveTime: this.lastSaveTime,
      lastError: this.notifier.lastError ?? null,
      errorSinceLastSave: this.notifier.errorSinceSave,
      journal: {
        bytes: (this.journal?.size ?? 0) + this.sealed.reduce((sum, s) => sum + s.bytes, 0),
        pendingItems: this.pending.length + this.sealed.reduce((sum, s) => sum + s.ops.length, 0),
      },
      disk,
    };
  }

  private createSerializer(format: BuiltInFormat | Serializer): Serializer {
    return createSerializer(format, {
      compressAbove: this.options.compressAbove,
      maxInflatedBytes: this.options.limits.maxInflatedBytes,
    });
  }

  private driverStatus(state: PersistenceStatus['state']): PersistenceStatus {
    const replica = this.replica!;
    let notWritableReason: string | undefined;
    if (state !== 'ready') notWritableReason = `the store is ${state}`;
    else if (this.options.readOnly) notWritableReason = 'the store was opened with readOnly: true';
    else if (!replica.loaded) notWritableReason = messages.storageNotLoaded(replica.location);
    return {
      path: replica.location,
      state,
      readOnly: this.options.readOnly,
      writable: notWritableReason === undefined,
      ...(notWritableReason === undefined ? {} : { notWritableReason }),
      startedAt: this.startedAt,
      lastSaveTime: this.lastSaveTime,
      lastError: this.notifier.lastError ?? null,
      errorSinceLastSave: this.notifier.errorSinceSave,
      journal: { bytes: 0, pendingItems: 0 },
      disk: null,
    };
  }

  private setCodec(serializer: Serializer): void {
    this.codec = new ItemFileCodec(
      serializer,
      this.cipher,
      this.options.limits.maxInflatedBytes,
      this.options.limits.maxFileBytes,
    );
  }

  /**
   * Runs an operation after those already queued. A `saveAll()` queued before it is no longer shared
   * with later calls: a save requested after a clear, a load or a restore must run after it.
   */
  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    this.queuedSave = undefined;
    return this.queue.run(task);
  }

  /**
   * Why an operation cannot run now, as a rejected promise (so `.catch()` sees it), or `undefined`:
   * the store is not open, is read-only, or the call comes from inside an adapter the store waits for.
   */
  private refuse<T>(operation: string, write: boolean): Promise<T> | undefined {
    try {
      if (write) this.assertWritable(operation);
      else this.assertOpen(operation);
      const adapter = this.caller.activeAdapter;
      if (adapter !== undefined) {
        throw new PersistenceError(
          PersistenceErrorCode.ReentrantCall,
          messages.reentrantCall(operation, adapter),
          { adapter },
        );
      }
      return undefined;
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private async acquireLock(): Promise<void> {
    this.lock = new StoreLock(this.fs, this.options.path, this.options.fileMode);
    try {
      const stale = await this.lock.acquire();
      if (stale) {
        this.logger.warn(messages.staleLockTaken(this.options.path, stale));
      }
    } catch (error) {
      this.lock = undefined;
      if (error instanceof LockHeldError) {
        throw new PersistenceError(
          PersistenceErrorCode.StoreLocked,
          messages.storeLocked(this.options.path, error.owner),
          { operation: 'init', path: this.options.path },
        );
      }
      throw this.wrapIo('init', 'lock', this.options.path, error);
    }
  }

  /** Crash recovery at start-up; nothing committed is deleted by it. */
  private async recover(): Promise<void> {
    for (const done of await recoverRestores(this.fs, this.options.path)) {
      this.logger.warn(`Recovery: ${done}.`);
    }
    let saves = 0;
    for (const segment of await listSealedSegments(this.fs, this.journal.path)) {
      const contents = await readSealedSegment(this.fs, segment.path, this.options.fileMode);
      if (contents.damage)
        this.reportJournalDamage('init', contents.records.length, contents.damage);
      const { size } = await this.fs.lstat(segment.path);
      this.sealed.push({ path: segment.path, ops: contents.records.flat(), bytes: size });
      this.nextSegment = segment.n + 1;
      saves += contents.records.length;
    }
    const { records, tornTailBytes, damage } = await this.journal.open();
    await fsyncDirectory(this.fs, this.options.path); // the journal file itself, when just created
    if (tornTailBytes > 0) {
      this.logger.warn(messages.journalTornTail(this.journal.path, tornTailBytes));
    }
    if (damage) this.reportJournalDamage('init', records.length, damage);
    const removed = await this.storage.prepare(this.adapterList.map((a) => a.name));
    saves += records.length;
    this.pending = records.flat();
    if (this.sealed.length > 0 || records.length > 0) {
      try {
        await this.applyJournal();
        this.logger.warn(
          `Recovery: replayed ${saves} committed save(s) from the journal into the item files.`,
        );
      } catch (error) {
        // E.g. a full disk: the commits stay in the journal (the load reads them from there) and the
        // next checkpoint writes them. Starting matters more than tidying up.
        this.replayDeferred = true;
        this.fail(
          new PersistenceError(
            PersistenceErrorCode.IoFailed,
            messages.replayDeferred(saves, this.options.path, messages.reasonOf(error)),
            { operation: 'init', path: this.options.path, cause: error },
          ),
          'init',
        );
      }
    }
    if (removed.length > 0) {
      this.logger.log(`Recovery: removed ${removed.length} leftover temporary file(s).`);
    }
  }

  /**
   * The full checkpoint: waits for the background checkpoint of the sealed segments (running it
   * again when it failed), then applies the active journal's records to the item files and empties
   * it. Runs on the queue only (load, backup, restore, clear, shutdown, `checkpoint()`).
   */
  private async applyJournal(): Promise<void> {
    await this.backgroundCheckpointDone();
    await this.drainSealed();
    if (this.pending.length === 0 && this.journal.size === 0) return;
    await this.storage.apply(this.pending);
    await this.journal.reset();
    this.pending = [];
  }

  /** Waits for the background checkpoint (if one runs), lifting its throttle: something needs it. */
  private async backgroundCheckpointDone(): Promise<void> {
    this.drainThrottle?.boost();
    await this.draining?.catch(() => undefined);
  }

  /**
   * Writes the sealed segments into the item files, oldest first, one at a time. A segment is
   * removed (and the removal fsynced) only once every item it holds is durably in its file, and
   * before anything newer is applied: whatever a crash leaves, replaying the remaining segments then
   * the active journal gives the same files.
   */
  private drainSealed(): Promise<void> {
    if (this.draining) return this.draining;
    const throttle = new IoThrottle(BACKGROUND_CHECKPOINT_CONCURRENCY);
    this.drainThrottle = throttle;
    const run = (async () => {
      await Promise.resolve(); // `draining` is set before the first segment starts
      while (this.sealed.length > 0) {
        const segment = this.sealed[0];
        await this.storage.apply(segment.ops, throttle);
        await this.fs.unlink(segment.path).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        });
        await fsyncDirectory(this.fs, this.options.path);
        this.sealed.shift();
      }
    })().finally(() => {
      if (this.draining === run) this.draining = undefined;
      if (this.drainThrottle === throttle) this.drainThrottle = undefined;
    });
    this.draining = run;
    return run;
  }

  /**
   * Seals the active journal once it passes `checkpointBytes` and checkpoints the sealed segment in
   * the background, off the queue: the next save commits into a new journal without waiting. A
   * failure is reported; the commits stay in the journal and the next checkpoint writes them.
   */
  private async rotateJournal(): Promise<void> {
    if (this.journal.size === 0 || this.journal.size < this.options.checkpointBytes) return;
    const path = sealedSegmentPath(this.journal.path, this.nextSegment);
    const bytes = this.journal.size;
    try {
      await this.journal.rotate(path);
    } catch (error) {
      this.fail(
        this.wrapIo('checkpoint', 'seal the journal', this.journal.path, error),
        'checkpoint',
      );
      return;
    }
    this.nextSegment++;
    this.sealed.push({ path, ops: this.pending, bytes });
    this.pending = [];
    if (!this.draining) {
      this.drainSealed().catch((error: unknown) => {
        this.fail(this.wrapIo('checkpoint', 'checkpoint', this.options.path, error), 'checkpoint');
      });
    }
  }

  /** The complete records of every journal segment, read without changing anything (read-only). */
  private async readJournalOnly(): Promise<JournalOp[][]> {
    const { records, damaged } = await readAllSegments(this.fs, this.journal.path);
    if (damaged.length > 0) {
      this.reportJournalDamage('load', records.length, {
        regions: damaged,
        unreadableBytes: damaged.reduce((sum, region) => sum + region.length, 0),
      });
    }
    return records;
  }

  /**
   * Every committed operation not yet in the item files, oldest first (sealed, then active), with
   * its bytes read back from the journal.
   */
  private async uncheckpointed(): Promise<JournalOp[][]> {
    const segments = [...this.sealed.map((segment) => segment.ops), this.pending];
    return Promise.all(segments.map((ops) => readOpData(this.fs, ops)));
  }

  /** Reports a journal damaged in the middle; the start goes on with the records recovered. */
  private reportJournalDamage(
    operation: PersistenceOperation,
    recovered: number,
    damage: Omit<JournalDamage, 'copyPath'> & { copyPath?: string },
  ): void {
    this.fail(
      new PersistenceError(
        PersistenceErrorCode.JournalDamaged,
        messages.journalDamaged(this.journal.path, {
          unreadableBytes: damage.unreadableBytes,
          regions: damage.regions.length,
          recovered,
          copyPath: damage.copyPath,
        }),
        { operation, path: damage.copyPath ?? this.journal.path },
      ),
      operation,
    );
  }

  /**
   * With `loadOnBoot: false`: learn which files exist, as not loaded. Memory is not the whole truth
   * then, so no save overwrites or removes them until `loadAll()` loads them.
   */
  private async indexFiles(): Promise<void> {
    for (const adapter of this.adapterList) {
      const files = await this.storage.list(adapter.name, this.codec.serializer.extension);
      const entries = new Map(
        files.map((file) => [
          file.stem,
          {
            fileName: file.fileName,
            ref: undefined,
            hash: '',
            unloaded: 'the store started with loadOnBoot: false and loadAll() was not called',
          },
        ]),
      );
      this.index.set(adapter.name, entries);
    }
  }

  private async runSave(operation: PersistenceOperation): Promise<SaveMetadata> {
    if (this.replica) return this.runDriverSave(this.replica, operation);
    const writer = new SnapshotWriter(
      this.journal,
      this.index,
      this.options.path,
      (error) => this.fail(error, operation),
      this.caller,
      this.failures,
      { trusted: this.trustedAdapters, findProblem, inSync: this.inSync },
    );
    let result;
    try {
      result = await writer.save(this.adapterList, this.codec, operation, () =>
        this.ensureStoreFolder(),
      );
    } catch (error) {
      throw this.fail(
        error instanceof PersistenceError
          ? error
          : this.wrapIo(operation, 'save', this.options.path, error),
        operation,
      );
    }
    this.pending.push(...result.ops);
    await this.rotateJournal();
    this.lastSaveTime = result.meta.timestamp;
    this.notifier.saved(result.meta);
    if (result.incomplete) {
      // What could not be saved was reported one by one (once for each change); everything else is
      // committed. The summary goes to the caller of saveAll() only; auto-save does not back off.
      throw result.incomplete;
    }
    return result.meta;
  }

  /**
   * A save on a storage driver: the same snapshots and codec as on files, committed by one
   * `driver.commit()` with each item's expected revision; then conflicts and revisions.
   */
  private async runDriverSave(
    replica: DriverReplica,
    operation: PersistenceOperation,
  ): Promise<SaveMetadata> {
    const writer = new SnapshotWriter(
      replica.sink,
      this.index,
      replica.location,
      (error) => this.fail(error, operation),
      this.caller,
      this.failures,
      { trusted: this.trustedAdapters, findProblem, inSync: this.inSync },
    );
    let result;
    try {
      replica.assertLoaded(operation);
      result = await writer.save(this.adapterList, this.codec, operation);
      await replica.afterCommit(operation);
    } catch (error) {
      throw this.fail(
        error instanceof PersistenceError
          ? error
          : this.wrapIo(operation, 'save', replica.location, error),
        operation,
      );
    }
    this.lastSaveTime = result.meta.timestamp;
    this.notifier.saved(result.meta);
    if (result.incomplete) throw result.incomplete;
    return result.meta;
  }

  /**
   * A save into a journal whose folder was removed would go into a deleted file. The first save that
   * finds the folder gone fails with a clear error; the next one recreates the folder, the lock and
   * the journal, and writes the whole state again.
   */
  private async ensureStoreFolder(): Promise<void> {
    const present = await exists(this.fs, this.journal.path);
    if (present && !this.folderRemoved) return;
    if (!this.folderRemoved) {
      this.folderRemoved = true;
      throw new PersistenceError(
        PersistenceErrorCode.IoFailed,
        messages.storeFolderRemoved(this.options.path),
        { operation: 'save', path: this.options.path },
      );
    }
    await this.journal.close().catch(() => undefined);
    await this.lock?.release();
    await this.storage.ensureRoot();
    await this.acquireLock();
    await this.journal.open();
    await fsyncDirectory(this.fs, this.options.path);
    await this.storage.prepare(this.adapterList.map((a) => a.name));
    this.pending = [];
    await this.backgroundCheckpointDone();
    this.sealed = [];
    for (const entries of this.index.values()) entries.clear(); // everything is written again
    this.inSync.clear();
    this.folderRemoved = false;
    this.logger.warn(`Recreated the store folder ${this.options.path}; saving the whole state.`);
  }

  private async runLoad(
    operation: PersistenceOperation,
    overlay: readonly JournalOp[][],
  ): Promise<LoadMetadata> {
    const reader = new SnapshotReader(
      this.storage,
      this.options.ioConcurrency,
      (error) => this.fail(error, operation),
      this.caller,
      this.options.readOnly,
    );
    try {
      let records = overlay;
      if (this.replayDeferred) {
        this.replayDeferred = false; // reported by recovery already
        records = [...overlay, ...(await this.uncheckpointed())];
      } else if (!this.options.readOnly) {
        try {
          await this.applyJournal();
        } catch (error) {
          // The item files are behind the journal: load them with its commits on top.
          this.fail(this.wrapIo(operation, 'checkpoint', this.options.path, error), operation);
          records = [...overlay, ...(await this.uncheckpointed())];
        }
      }
      this.inSync.clear(); // the index is rebuilt from the files
      const meta = await reader.load(this.adapterList, this.codec, this.index, records);
      for (const [name, unloaded] of inSyncAfterLoad(
        this.adapterList,
        this.index,
        this.codec.keyId,
      )) {
        this.inSync.set(name, unloaded);
      }
      this.notifier.loaded(meta);
      return meta;
    } catch (error) {
      throw this.fail(
        error instanceof PersistenceError
          ? error
          : this.wrapIo(operation, 'load', this.options.path, error),
        operation,
      );
    }
  }

  /** A store of this process on the same folder whose application never booted gives way. */
  private async supersedeFailedBoot(): Promise<void> {
    const other = openStores.get(this.options.path);
    if (other && !other.isBootstrapped()) {
      this.logger.warn(messages.supersededFailedBoot(this.options.path));
      await other.supersede();
    }
  }

  /** Releases the folder without saving: the application that opened this store never booted. */
  private async supersede(): Promise<void> {
    if (this.state !== 'ready') return;
    this.disableAutoSave();
    this.backups?.stopSchedule();
    this.state = 'closing';
    await this.queue.idle();
    await this.backgroundCheckpointDone();
    await this.journal.close().catch(() => undefined);
    await this.lock?.release();
    openStores.delete(this.options.path, this.registration);
    this.state = 'closed';
  }

  private async close(): Promise<void> {
    if (this.state !== 'ready') {
      this.state = 'closed';
      return;
    }
    if (this.replica) {
      const replica = this.replica;
      this.disableAutoSave();
      this.backups?.stopSchedule();
      this.state = 'closing';
      replica.stopWatching();
      await this.queue.idle();
      if (!this.options.readOnly && this.options.saveOnShutdown && replica.loaded) {
        await this.queue.run(() => this.runSave('shutdown')).catch(() => undefined);
      }
      await replica.close().catch(() => undefined);
      this.state = 'closed';
      return;
    }
    this.disableAutoSave();
    this.backups?.stopSchedule();
    this.state = 'closing';
    await this.queue.idle();
    if (!this.options.readOnly) {
      if (this.options.saveOnShutdown) {
        await this.queue.run(() => this.runSave('shutdown')).catch(() => undefined);
      }
      await this.queue
        .run(() => this.io('shutdown', 'checkpoint', this.options.path, () => this.applyJournal()))
        .catch(() => undefined); // the journal keeps the commits; the next start replays them
      await this.backgroundCheckpointDone();
      await this.journal.close().catch(() => undefined);
      await this.lock?.release();
      openStores.delete(this.options.path, this.registration);
    }
    this.state = 'closed';
  }

  private assertOpen(operation: string): void {
    if (this.state === 'closing' || this.state === 'closed') {
      throw new PersistenceError(PersistenceErrorCode.StoreClosed, messages.storeClosed(operation));
    }
    if (this.state === 'created') {
      throw new PersistenceError(
        PersistenceErrorCode.StoreClosed,
        `Cannot ${operation} before the module has initialised: call app.init() first.`,
      );
    }
  }

  private assertWritable(operation: string): void {
    this.assertOpen(operation);
    if (this.options.readOnly) {
      throw new PersistenceError(PersistenceErrorCode.ReadOnly, messages.readOnly(operation));
    }
  }

  /**
   * Holds the boot load's emitter events until the event-emitter module has wired `@OnEvent`
   * handlers: its readiness watcher where it has one, else the end of this module's bootstrap hook.
   */
  private holdBootEvents(): void {
    let watcher: EventEmitterReadinessWatcher | undefined;
    try {
      if (typeof EventEmitterReadinessWatcher === 'function') {
        watcher = this.moduleRef.get(EventEmitterReadinessWatcher, { strict: false });
      }
    } catch {
      watcher = undefined;
    }
    if (watcher) {
      this.notifier.holdEmitterUntil(watcher.waitUntilReady());
    } else {
      this.notifier.holdEmitterUntil(
        new Promise<void>((resolve) => {
          this.releaseBootEvents = () => setImmediate(resolve);
        }),
      );
    }
  }

  /** Runs file-system work; a failure is reported and rethrown as a PersistenceError. */
  private async io<T>(
    operation: PersistenceOperation,
    action: string,
    path: string,
    work: () => Promise<T>,
  ): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw this.fail(this.wrapIo(operation, action, path, error), operation);
    }
  }

  private wrapIo(
    operation: PersistenceOperation,
    action: string,
    path: string,
    error: unknown,
  ): PersistenceError {
    if (error instanceof PersistenceError) return error;
    return new PersistenceError(
      PersistenceErrorCode.IoFailed,
      messages.ioFailed(action, path, messages.reasonOf(error)),
      { operation, path, cause: error },
    );
  }

  /** Reports an error to listeners and returns it, for `throw this.fail(...)`. */
  private fail(error: PersistenceError, operation?: PersistenceOperation): PersistenceError {
    this.notifier.error({
      error,
      operation: operation ?? error.operation ?? 'save',
      adapter: error.adapter,
      itemId: error.itemId,
      path: error.path,
    });
    return error;
  }
}
