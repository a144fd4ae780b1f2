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
import { EventEmitter2 } from '@nestjs/event-emitter';
import { SchedulerRegistry } from '@nestjs/schedule';
import { merge, Observable } from 'rxjs';
import { FocusAdapter } from '../adapters/focus/focus.adapter';
import { findNonJsonData } from '../adapters/json-data.util';
import { MemoryAdapter } from '../adapters/memory/memory.adapter';
import { SessionAdapter } from '../adapters/session/session.adapter';
import { ItemCipher } from '../encryption/item.cipher';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { holdBootEvents } from '../events/boot-events.util';
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
import {
  PERSISTENCE_LOGGER_CONTEXT,
  PERSISTENCE_SCHEDULER_REGISTRY,
} from '../persistence.constants';
import * as messages from '../persistence.messages';
import { PERSISTENCE_MODULE_OPTIONS } from '../persistence.module-definition';
import { createItemFileCodec, ItemFileCodec } from '../serializers/item-file.codec';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { decodeStem } from '../storage/file-name.codec';
import { AdapterCaller } from './adapter.caller';
import { PersistenceAdapterExplorer } from './adapter.explorer';
import { candidatesFromOption, resolveAdapters } from './adapter.resolver';
import { AutoSaveScheduler } from './auto-save.scheduler';
import { BackupOrchestrator } from './backup.orchestrator';
import { applyCommandLineOverride } from './command-line.override';
import { CommittedIndex } from './committed.index';
import { DriverBackend } from './driver.backend';
import { ErrorReporter } from './error.reporter';
import { FailureMemo } from './failure.memo';
import { FileSystemBackend } from './file-system.backend';
import { OpenStore } from './open-stores.registry';
import { OperationQueue } from './operation.queue';
import { assertInterval, DEFAULT_OPTIONS, resolveOptions } from './persistence.options';
import { readRestoreSource } from './restore.checker';
import { StoreBackend, StoreContext } from './store.backend';

/** What JSON cannot carry exactly in a custom adapter's value, as one sentence; undefined: none. */
function findProblem(value: unknown, allowToJSON: boolean): string | undefined {
  const found = findNonJsonData(value, { allowToJSON, path: 'the value' });
  return found && `${found.path} ${found.problem}; ${found.fix}`;
}

/** What exists only once the store is open: created by `onModuleInit`. */
interface OpenSession {
  readonly options: ResolvedPersistenceOptions;
  /** Where the state is kept: the file system, or the `storage` driver. */
  readonly backend: StoreBackend;
  readonly cipher?: ItemCipher;
  /** The codec of the next save; replaced by `setSerializer()`. */
  codec: ItemFileCodec;
  backups?: BackupOrchestrator;
}

/**
 * The public API: save, load, clear, back up and restore the state of every adapter, and watch it
 * happen. One operation runs at a time; `saveAll()` calls that arrive during a save share one more.
 *
 * The store is a facade: lifecycle hooks, public methods, guards and the operation queue. Where the
 * state is kept is its backend (`StoreBackend`): the file system (`FileSystemBackend`: lock,
 * journal, checkpoint, recovery) or a storage driver (`DriverBackend`).
 */
@Injectable()
export class PersistenceStore
  implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown
{
  private readonly logger = new Logger(PERSISTENCE_LOGGER_CONTEXT);
  private readonly queue = new OperationQueue();
  private readonly notifier: PersistenceNotifier;
  private readonly errors: ErrorReporter;
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
  private session?: OpenSession;
  private autoSave?: AutoSaveScheduler;
  private queuedSave?: Promise<SaveMetadata>;
  private lastSaveTime: Date | null = null;
  private state: 'created' | 'ready' | 'closing' | 'closed' = 'created';
  private shutdown?: Promise<void>;
  private releaseBootEvents?: () => void;
  private bootstrapped = false;
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
    this.errors = new ErrorReporter(this.notifier);
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
    return this.open.options.path;
  }

  /** True when the store was opened with `readOnly: true`. */
  get readOnly(): boolean {
    return this.open.options.readOnly;
  }

  /**
   * Validates the options, opens the backend (on the file system: locks the folder and recovers
   * from a crash), loads, and starts auto-save and the backup schedule.
   */
  async onModuleInit(): Promise<void> {
    const options = applyCommandLineOverride(resolveOptions(this.rawOptions));
    this.caller = new AdapterCaller(options.adapterTimeout);
    const cipher =
      options.encryption &&
      ItemCipher.create(options.encryption, () => {
        throw new Error('unreachable: validated by resolveOptions');
      });
    const codec = createItemFileCodec(options.format, options, cipher);
    const context: StoreContext = {
      options,
      fs: this.fs,
      adapters: this.adapterList,
      index: this.index,
      inSync: this.inSync,
      failures: this.failures,
      checks: { trusted: this.trustedAdapters, findProblem, inSync: this.inSync },
      queue: this.queue,
      notifier: this.notifier,
      errors: this.errors,
      logger: this.logger,
      registration: this.registration,
      codec: () => this.open.codec,
      caller: () => this.caller,
    };
    const backend = options.storage
      ? new DriverBackend(context, options.storage)
      : new FileSystemBackend(context);
    this.session = { options, backend, cipher, codec };
    // Built-in, forFeature() and @PersistedState() adapters, then the deprecated `adapters` option.
    this.adapterList.push(
      ...resolveAdapters([
        ...this.moduleRef.get(PersistenceAdapterExplorer).explore(options.builtInAdapters),
        ...candidatesFromOption(this.moduleRef, options.adapters),
      ]),
    );
    for (const adapter of [this.sessionAdapter, this.memoryAdapter, this.focusAdapter]) {
      this.trustedAdapters.add(adapter);
    }
    if (options.autoSave !== false && !this.schedulerRegistry && !options.readOnly) {
      throw new PersistenceError(
        PersistenceErrorCode.SchedulerMissing,
        messages.schedulerMissing(),
        {
          operation: 'init',
        },
      );
    }
    // Before recovery: what it reports (a damaged journal) must reach @OnEvent listeners too.
    this.releaseBootEvents = holdBootEvents(this.moduleRef, this.notifier);
    await backend.open();
    this.state = 'ready';
    this.startedAt = new Date();
    await backend.start(options.loadOnBoot);
    if (options.autoSave !== false && !options.readOnly) {
      this.enableAutoSave(options.autoSave.interval);
    }
    const backups = new BackupOrchestrator(options.backups, {
      fs: this.fs,
      modes: { fileMode: options.fileMode, dirMode: options.dirMode },
      entries: (collections) => backend.backupEntries(collections),
      storePath: backend.location,
      maxFileBytes: options.limits.maxFileBytes,
      collections: () => this.adapterList.map((a) => a.name),
      extension: () => this.open.codec.serializer.extension,
      checkpoint: () => backend.beforeBackup(),
      report: (error) => this.errors.fail(error),
    });
    this.session.backups = backups;
    backups.startSchedule(this.schedulerRegistry, options.readOnly, () =>
      backend.scheduledBackup(() => this.backup()),
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

  /**
   * Writes every committed save into the item files now and empties the journal. Saves do not wait
   * for this (their commit is the journal record); the journal is also sealed and checkpointed in the
   * background when it passes `checkpointBytes`, and checkpointed before a load, a backup or a
   * restore, and at shutdown. Call it when something outside the store is about to read the item
   * files.
   */
  checkpoint(): Promise<void> {
    const refused = this.refuse<void>('checkpoint', true);
    if (refused) return refused;
    const { checkpoint } = this.open.backend;
    return checkpoint ? this.enqueue(checkpoint) : Promise.resolve();
  }

  /**
   * Replaces the in-memory state of every adapter with the saved state. Unreadable files are
   * quarantined and reported; the rest loads.
   */
  loadAll(): Promise<LoadMetadata> {
    return this.refuse('load', false) ?? this.enqueue(() => this.open.backend.load('load'));
  }

  /**
   * Deletes every saved item of every adapter, as one commit (quarantined files stay). In-memory
   * state is kept.
   */
  clear(): Promise<void> {
    return this.refuse('clear', true) ?? this.enqueue(() => this.open.backend.clear());
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
      this.enqueue(() =>
        destination === undefined
          ? this.open.backups!.backupNow()
          : this.open.backend.backupTo(destination),
      )
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
        const { backend, backups, codec, options } = this.open;
        const { from, files } = await readRestoreSource(
          {
            fs: this.fs,
            backend,
            backups,
            codec,
            caller: this.caller,
            adapters: this.adapterList,
            maxFileBytes: options.limits.maxFileBytes,
            errors: this.errors,
          },
          source,
        );
        const load = await backend.restore(
          files,
          this.adapterList.map((a) => a.name),
        );
        return { source: from, files: files.length, load };
      })
    );
  }

  /** The backups in `backups.directory` (or `backups.target`), newest first; none when not configured. */
  listBackups(): Promise<BackupInfo[]> {
    return this.refuse<BackupInfo[]>('list backups', false) ?? this.open.backups!.list();
  }

  /**
   * Item files on disk that this store did not load: not loaded yet (`loadOnBoot: false`), not
   * decryptable with the configured keys, unreadable, or refused by the adapter's `restore()`. Saves
   * never overwrite or remove them; an item of the same id is not saved while its file is listed here.
   */
  listUnloaded(): Array<{ adapter: string; id: string; path: string; reason: string }> {
    this.assertOpen('list unloaded items');
    const { backend } = this.open;
    const list: Array<{ adapter: string; id: string; path: string; reason: string }> = [];
    for (const [adapter, entries] of this.index) {
      for (const [stem, entry] of entries) {
        if (entry.unloaded === undefined) continue;
        list.push({
          adapter,
          id: decodeStem(stem) ?? stem,
          path: backend.itemPath(adapter, stem, entry.fileName),
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
    const refused = this.refuse<string[]>('discard an unloaded item', true);
    if (refused) return refused;
    const { backend } = this.open;
    const discard = backend.discardUnloaded;
    if (!discard) {
      return Promise.reject(
        this.errors.fail(
          new PersistenceError(
            PersistenceErrorCode.NotSupportedByStorage,
            messages.notSupportedByStorage('discard an unloaded item', backend.location),
            { path: backend.location },
          ),
        ),
      );
    }
    return this.enqueue(() => discard(adapter, id));
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
    const { autoSave } = this.open.options;
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
      autoSave === false ? 8 : autoSave.maxBackoffTicks,
      () =>
        this.state === 'ready'
          ? this.requestSave('auto-save').catch(incompleteIsDone)
          : Promise.resolve(),
    );
    this.autoSave.start(intervalMs);
    const debounce = autoSave === false ? false : autoSave.debounce;
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
    const session = this.open;
    const resolved = resolveOptions({ ...this.rawOptions, format, adapters: [] }).format;
    session.codec = createItemFileCodec(resolved, session.options, session.cipher);
    this.inSync.clear(); // every file is rewritten in the new format
  }

  /** The serializer used for the next save. */
  getSerializer(): Serializer {
    return this.open.codec.serializer;
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
    const readOnly = this.session?.options.readOnly ?? false;
    let reason: string | undefined;
    if (state !== 'ready') reason = `the store is ${state}`;
    else if (readOnly) reason = 'the store was opened with readOnly: true';
    const backend = await this.session?.backend.status(reason === undefined);
    const notWritableReason = reason ?? backend?.notWritableReason;
    return {
      path: backend?.path ?? '',
      state,
      readOnly,
      writable: notWritableReason === undefined,
      ...(notWritableReason === undefined ? {} : { notWritableReason }),
      startedAt: this.startedAt,
      lastSaveTime: this.lastSaveTime,
      lastError: this.notifier.lastError ?? null,
      errorSinceLastSave: this.notifier.errorSinceSave,
      journal: backend?.journal ?? { bytes: 0, pendingItems: 0 },
      disk: backend?.disk ?? null,
    };
  }

  /** What exists once the store is open; throws before `onModuleInit` has begun. */
  private get open(): OpenSession {
    if (!this.session) {
      throw new PersistenceError(
        PersistenceErrorCode.StoreClosed,
        `Cannot use the store before the module has initialised: call app.init() first.`,
      );
    }
    return this.session;
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

  private async runSave(operation: PersistenceOperation): Promise<SaveMetadata> {
    const result = await this.open.backend.save(operation);
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
    if (this.open.options.readOnly) {
      throw new PersistenceError(PersistenceErrorCode.ReadOnly, messages.readOnly(operation));
    }
  }

  /** Releases the folder without saving: the application that opened this store never booted. */
  private async supersede(): Promise<void> {
    if (this.state !== 'ready') return;
    this.disableAutoSave();
    this.session?.backups?.stopSchedule();
    this.state = 'closing';
    await this.queue.idle();
    await this.open.backend.release();
    this.state = 'closed';
  }

  private async close(): Promise<void> {
    if (this.state !== 'ready') {
      this.state = 'closed';
      return;
    }
    const { backend, backups, options } = this.open;
    this.disableAutoSave();
    backups?.stopSchedule();
    this.state = 'closing';
    backend.stopIntake();
    await this.queue.idle();
    if (!options.readOnly && options.saveOnShutdown && backend.canSaveOnShutdown) {
      await this.queue.run(() => this.runSave('shutdown')).catch(() => undefined);
    }
    await backend.close();
    this.state = 'closed';
  }
}
