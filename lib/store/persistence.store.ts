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
import { join, resolve } from 'node:path';
import { Observable } from 'rxjs';
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
  BackupMetadata,
  LoadMetadata,
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
import {
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
  recoverRestores,
  swapInBackup,
  writeBackup,
} from '../storage/backup.storage';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { FileSystemStorage } from '../storage/file-system.storage';
import { exists, fsyncDirectory } from '../storage/fs.util';
import { ItemFileCodec } from '../storage/item-file.codec';
import { decodeRecords, Journal, JournalOp } from '../storage/journal';
import { isSameOrInside } from '../storage/path.util';
import { readRegularFile } from '../storage/safe-read';
import { LockHeldError, StoreLock } from '../storage/store.lock';
import { PersistenceAdapterExplorer } from './adapter.explorer';
import { candidatesFromOption, resolveAdapters } from './adapter.resolver';
import { AutoSaveScheduler } from './auto-save.scheduler';
import { CommittedIndex } from './committed.index';
import { OperationQueue } from './operation.queue';
import { assertInterval, resolveOptions } from './persistence.options';
import { SnapshotReader } from './snapshot.reader';
import { SnapshotWriter } from './snapshot.writer';

/**
 * The public API: save, load, clear, back up and restore the state of every adapter, and watch it
 * happen. One operation runs at a time; `saveAll()` calls that arrive during a save share one more.
 *
 * A save commits by appending one record to the journal (one fsync); the item files are brought up
 * to date by a checkpoint when the journal grows past `checkpointBytes`, before a load, a backup or
 * a restore, at shutdown, and at the next start after a crash.
 */
@Injectable()
export class PersistenceStore
  implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown
{
  private readonly logger = new Logger(PERSISTENCE_LOGGER_CONTEXT);
  private readonly queue = new OperationQueue();
  private readonly notifier: PersistenceNotifier;
  private readonly adapterList: PersistenceAdapter[] = [];
  private readonly index: CommittedIndex = new Map();
  private pending: JournalOp[] = [];
  private options!: ResolvedPersistenceOptions;
  private storage!: FileSystemStorage;
  private journal!: Journal;
  private lock?: StoreLock;
  private codec!: ItemFileCodec;
  private cipher?: ItemCipher;
  private autoSave?: AutoSaveScheduler;
  private queuedSave?: Promise<SaveMetadata>;
  private checkpointQueued = false;
  private folderRemoved = false;
  private lastSaveTime: Date | null = null;
  private state: 'created' | 'ready' | 'closing' | 'closed' = 'created';
  private shutdown?: Promise<void>;
  private releaseBootEvents?: () => void;
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
    this.options = resolveOptions(this.rawOptions);
    if (this.options.encryption) {
      this.cipher = ItemCipher.create(this.options.encryption, () => {
        throw new Error('unreachable: validated by resolveOptions');
      });
    }
    this.setCodec(createSerializer(this.options.format));
    // Built-in, forFeature() and @PersistedState() adapters, then the deprecated `adapters` option.
    this.adapterList.push(
      ...resolveAdapters([
        ...this.moduleRef.get(PersistenceAdapterExplorer).explore(this.options.builtInAdapters),
        ...candidatesFromOption(this.moduleRef, this.options.adapters),
      ]),
    );
    if (this.options.autoSave !== false && !this.schedulerRegistry && !this.options.readOnly) {
      throw new PersistenceError(
        PersistenceErrorCode.SchedulerMissing,
        messages.schedulerMissing(),
        {
          operation: 'init',
        },
      );
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
    let overlay: JournalOp[][] = [];
    if (this.options.readOnly) {
      overlay = await this.io('init', 'read the journal of', path, () => this.readJournalOnly());
    } else {
      await this.io('init', 'create', path, () => this.storage.ensureRoot());
      await this.acquireLock();
      try {
        await this.io('init', 'recover', path, () => this.recover());
      } catch (error) {
        await this.lock?.release();
        throw error;
      }
    }
    if (await this.storage.isWritableByOthers().catch(() => false)) {
      this.logger.warn(messages.writableByOthers(path));
    }
    this.state = 'ready';
    this.startedAt = new Date();
    this.holdBootEvents();
    if (this.options.loadOnBoot) {
      // A failed load never stops the application: it starts with what could be read.
      await this.queue.run(() => this.runLoad('load', overlay)).catch(() => undefined);
    } else {
      await this.indexFiles();
    }
    if (this.options.autoSave !== false && !this.options.readOnly) {
      this.enableAutoSave(this.options.autoSave.interval);
    }
  }

  /** Lets the boot load's events out once `@OnEvent` listeners are wired. */
  onApplicationBootstrap(): void {
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
    this.assertWritable('save');
    if (this.queuedSave) {
      return this.queuedSave;
    }
    const save = this.queue.run(async () => {
      if (this.queuedSave === save) this.queuedSave = undefined;
      return this.runSave('save');
    });
    this.queuedSave = save;
    return save;
  }

  /**
   * Writes every committed save into the item files now and empties the journal. Saves do not wait
   * for this (their commit is the journal record); it also runs by itself when the journal passes
   * `checkpointBytes`, before a load, a backup or a restore, and at shutdown. Call it when something
   * outside the store is about to read the item files.
   */
  checkpoint(): Promise<void> {
    this.assertWritable('checkpoint');
    return this.queue.run(() =>
      this.io('checkpoint', 'checkpoint', this.options.path, () => this.applyJournal()),
    );
  }

  /**
   * Replaces the in-memory state of every adapter with the saved state. Unreadable files are
   * quarantined and reported; the rest loads.
   */
  loadAll(): Promise<LoadMetadata> {
    this.assertOpen('load');
    return this.queue.run(async () =>
      this.runLoad('load', this.options.readOnly ? await this.readJournalOnly() : []),
    );
  }

  /**
   * Deletes every saved item of every adapter, as one commit (quarantined files stay). In-memory
   * state is kept.
   */
  clear(): Promise<void> {
    this.assertWritable('clear');
    return this.queue.run(async () => {
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
        await this.applyJournal();
      });
    });
  }

  /**
   * Writes a complete copy of the saved state (not of unsaved changes: call `saveAll()` first for
   * those) to `destination`, which must be outside the store and missing or empty. The copy appears
   * whole or not at all.
   */
  backup(destination: string): Promise<BackupMetadata> {
    this.assertWritable('back up');
    return this.queue.run(async () => {
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
    });
  }

  /**
   * Replaces the saved state with a backup, then loads it into the adapters. Every file of the backup
   * is read and checked first; a backup that is incomplete, tampered with or holds anything unexpected
   * is refused and nothing changes. The swap itself survives a crash (it completes at the next start).
   */
  restore(source: string): Promise<RestoreMetadata> {
    this.assertWritable('restore');
    return this.queue.run(async () => {
      const from = resolve(source);
      const invalid = (problem: string, cause?: unknown): PersistenceError =>
        this.fail(
          new PersistenceError(
            PersistenceErrorCode.InvalidBackup,
            messages.backupSourceInvalid(from, problem),
            { operation: 'restore', path: from, cause },
          ),
        );
      if (isSameOrInside(from, this.options.path) || isSameOrInside(this.options.path, from)) {
        throw invalid('it is the store folder, inside it, or contains it');
      }
      const collections = this.adapterList.map((a) => a.name);
      const byName = new Map(this.adapterList.map((a) => [a.name, a]));
      let files;
      try {
        files = await readBackup(
          this.fs,
          from,
          collections,
          this.codec.serializer.extension,
          this.options.limits.maxFileBytes,
        );
        for (const file of files) {
          try {
            const { envelope } = await this.codec.decode(file.collection, file, file.data);
            byName.get(file.collection)?.revive?.(envelope.data, envelope.id);
          } catch (error) {
            throw new BackupProblem(
              `"${file.collection}/${file.fileName}" is not a valid item file (${messages.reasonOf(error)})`,
            );
          }
        }
      } catch (error) {
        throw invalid(messages.reasonOf(error), error);
      }
      await this.io('restore', 'swap in the backup', this.options.path, async () => {
        await this.applyJournal();
        await swapInBackup(this.storage, collections, files);
      });
      const load = await this.runLoad('restore', []);
      return { source: from, files: files.length, load };
    });
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
    this.autoSave ??= new AutoSaveScheduler(
      this.schedulerRegistry,
      () => this.queue.busy,
      () => this.queue.run(() => this.runSave('auto-save')),
      this.options.autoSave === false ? 8 : this.options.autoSave.maxBackoffTicks,
    );
    this.autoSave.start(intervalMs);
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
    const resolved = resolveOptions({ ...this.rawOptions, format, adapters: [] }).format;
    this.setCodec(createSerializer(resolved));
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
      journal: { bytes: this.journal?.size ?? 0, pendingItems: this.pending.length },
      disk,
    };
  }

  private setCodec(serializer: Serializer): void {
    this.codec = new ItemFileCodec(serializer, this.cipher, this.options.limits.maxInflatedBytes);
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
    const records = await this.journal.open();
    await fsyncDirectory(this.fs, this.options.path); // the journal file itself, when just created
    const removed = await this.storage.prepare(this.adapterList.map((a) => a.name));
    if (records.length > 0) {
      this.pending = records.flat();
      await this.applyJournal();
      this.logger.warn(
        `Recovery: replayed ${records.length} committed save(s) from the journal into the item files.`,
      );
    }
    if (removed.length > 0) {
      this.logger.log(`Recovery: removed ${removed.length} leftover temporary file(s).`);
    }
  }

  /** Applies committed journal records to the item files, then empties the journal. */
  private async applyJournal(): Promise<void> {
    if (this.pending.length === 0 && this.journal.size === 0) return;
    await this.storage.apply(this.pending);
    await this.journal.reset();
    this.pending = [];
  }

  /** The journal's complete records, read without changing anything (read-only stores). */
  private async readJournalOnly(): Promise<JournalOp[][]> {
    try {
      const data = await readRegularFile(this.fs, this.journal.path, Number.MAX_SAFE_INTEGER);
      return decodeRecords(data).records;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  /** With `loadOnBoot: false`: learn which files exist, so saves remove what memory no longer has. */
  private async indexFiles(): Promise<void> {
    for (const adapter of this.adapterList) {
      const files = await this.storage.list(adapter.name, this.codec.serializer.extension);
      const entries = new Map(
        files.map((file) => [file.stem, { fileName: file.fileName, ref: undefined, hash: '' }]),
      );
      this.index.set(adapter.name, entries);
    }
  }

  private async runSave(operation: PersistenceOperation): Promise<SaveMetadata> {
    const writer = new SnapshotWriter(this.journal, this.index, this.options.path, (error) =>
      this.fail(error, operation),
    );
    let result;
    try {
      result = await writer.save(this.adapterList, this.codec, () => this.ensureStoreFolder());
    } catch (error) {
      throw this.fail(
        error instanceof PersistenceError
          ? error
          : this.wrapIo(operation, 'save', this.options.path, error),
        operation,
      );
    }
    this.pending.push(...result.ops);
    this.scheduleCheckpoint();
    if (result.incomplete) {
      // Per-item failures were reported one by one; the summary goes to the caller only.
      throw result.incomplete;
    }
    this.lastSaveTime = result.meta.timestamp;
    this.notifier.saved(result.meta);
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
    for (const entries of this.index.values()) entries.clear(); // everything is written again
    this.folderRemoved = false;
    this.logger.warn(`Recreated the store folder ${this.options.path}; saving the whole state.`);
  }

  /** Once the journal is large, a checkpoint runs after the operations already queued. */
  private scheduleCheckpoint(): void {
    if (this.checkpointQueued || this.journal.size < this.options.checkpointBytes) return;
    this.checkpointQueued = true;
    this.queue
      .run(async () => {
        this.checkpointQueued = false;
        await this.io('checkpoint', 'checkpoint', this.options.path, () => this.applyJournal());
      })
      .catch(() => undefined); // reported by io(); the journal keeps every commit meanwhile
  }

  private async runLoad(
    operation: PersistenceOperation,
    overlay: readonly JournalOp[][],
  ): Promise<LoadMetadata> {
    const reader = new SnapshotReader(
      this.storage,
      this.options.ioConcurrency,
      (error) => this.fail(error, operation),
      this.options.readOnly,
    );
    try {
      if (!this.options.readOnly) await this.applyJournal();
      const meta = await reader.load(this.adapterList, this.codec, this.index, overlay);
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

  private async close(): Promise<void> {
    if (this.state !== 'ready') {
      this.state = 'closed';
      return;
    }
    this.disableAutoSave();
    this.state = 'closing';
    await this.queue.idle();
    if (!this.options.readOnly) {
      if (this.options.saveOnShutdown) {
        await this.queue.run(() => this.runSave('shutdown')).catch(() => undefined);
      }
      await this.queue
        .run(() => this.io('shutdown', 'checkpoint', this.options.path, () => this.applyJournal()))
        .catch(() => undefined); // the journal keeps the commits; the next start replays them
      await this.journal.close().catch(() => undefined);
      await this.lock?.release();
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
