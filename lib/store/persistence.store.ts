import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  OnApplicationBootstrap,
  OnModuleInit,
  Optional,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { SchedulerRegistry } from '@nestjs/schedule';
import { Observable } from 'rxjs';
import { FocusAdapter } from '../adapters/focus/focus.adapter';
import { MemoryAdapter } from '../adapters/memory/memory.adapter';
import { SessionAdapter } from '../adapters/session/session.adapter';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { holdBootEvents } from '../events/boot-events.util';
import { PersistenceEvents } from '../events/persistence-events.enum';
import { isLoggerOption, PersistenceLogger } from '../events/persistence.logger';
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
import { PersistenceModuleOptions } from '../interfaces/persistence-module-options.interface';
import { PersistenceStatus } from '../interfaces/persistence-status.interface';
import { BuiltInFormat, Serializer } from '../interfaces/serializer.interface';
import { PERSISTENCE_SCHEDULER_REGISTRY } from '../persistence.constants';
import * as messages from '../persistence.messages';
import { PERSISTENCE_MODULE_OPTIONS } from '../persistence.module-definition';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { AdapterCaller } from './adapter.caller';
import { resolveStoreAdapters } from './adapter.resolver';
import { AutoSaveScheduler, createAutoSave, startAutoSaveDebounce } from './auto-save.scheduler';
import { applyCommandLineOverride } from './command-line.override';
import { UnloadedItem, unloadedItems } from './committed.index';
import { ErrorReporter } from './error.reporter';
import { FailureMemo } from './failure.memo';
import { StoreRegistration } from './open-stores.registry';
import { OperationQueue } from './operation.queue';
import {
  assertInterval,
  checkBackupsFolder,
  DEFAULT_OPTIONS,
  resolveOptions,
} from './persistence.options';
import { restoreBackup } from './restore.checker';
import { composeStatus, OpenStore, StoreShared } from './open.store';

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
  private readonly logger = new PersistenceLogger();
  private readonly queue = new OperationQueue();
  private readonly notifier: PersistenceNotifier;
  private readonly errors: ErrorReporter;
  /** What the store shares with its backend (through `OpenStore`), from its construction on. */
  private readonly shared: StoreShared;
  private readonly adapterList: PersistenceAdapter[] = [];
  private caller = new AdapterCaller(DEFAULT_OPTIONS.adapterTimeout);
  private opened?: OpenStore;
  private autoSave?: AutoSaveScheduler;
  private queuedSave?: Promise<SaveMetadata>;
  private lastSaveTime: Date | null = null;
  /** The last save's SAVE_INCOMPLETE, until a complete save (for the health check). */
  private lastSaveIncomplete: PersistenceError | null = null;
  private state: 'created' | 'ready' | 'closing' | 'closed' = 'created';
  private shutdown?: Promise<void>;
  private releaseBootEvents?: () => void;
  private bootstrapped = false;
  /** How this store appears in the registry of folders held by this process. */
  private readonly registration: StoreRegistration = {
    isBootstrapped: () => this.bootstrapped,
    supersede: () => this.stop(true), // its application never booted: no save
  };
  private startedAt: Date | null = null;

  constructor(
    @Inject(PERSISTENCE_MODULE_OPTIONS) private readonly rawOptions: PersistenceModuleOptions,
    @Inject(PersistenceFileSystem) private readonly fs: PersistenceFileSystem,
    private readonly moduleRef: ModuleRef,
    sessionAdapter: SessionAdapter,
    memoryAdapter: MemoryAdapter,
    focusAdapter: FocusAdapter,
    // Always provided: the application's registry, or the module's own.
    @Inject(PERSISTENCE_SCHEDULER_REGISTRY) private readonly schedulerRegistry: SchedulerRegistry,
    @Optional() eventEmitter?: EventEmitter2,
  ) {
    // The options are known here already (a forRootAsync factory has run): even this constructor's
    // line goes to the `logger` option. resolveOptions() refuses a bad one at init.
    const logger: unknown = (rawOptions as PersistenceModuleOptions | undefined)?.logger;
    if (isLoggerOption(logger)) this.logger.use(logger);
    this.notifier = new PersistenceNotifier(eventEmitter, this.logger);
    this.errors = new ErrorReporter(this.notifier);
    this.shared = {
      fs: this.fs,
      adapters: this.adapterList,
      trusted: new Set([sessionAdapter, memoryAdapter, focusAdapter]),
      index: new Map(),
      inSync: new Map(),
      failures: new FailureMemo(),
      queue: this.queue,
      notifier: this.notifier,
      errors: this.errors,
      logger: this.logger,
      registration: this.registration,
      caller: () => this.caller,
    };
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
    const options = await applyCommandLineOverride(resolveOptions(this.rawOptions), this.fs);
    await checkBackupsFolder(this.fs, options);
    this.caller = new AdapterCaller(options.adapterTimeout);
    const opened = new OpenStore(options, this.shared);
    this.opened = opened;
    this.adapterList.push(...resolveStoreAdapters(this.moduleRef, options));
    // Before recovery: what it reports (a damaged journal) must reach @OnEvent listeners too.
    this.releaseBootEvents = holdBootEvents(this.moduleRef, this.notifier);
    await opened.backend.open();
    this.state = 'ready';
    this.startedAt = new Date();
    try {
      await opened.backend.start(options.loadOnBoot);
    } catch (error) {
      // onUnreadable: 'fail' refused the start (reported once): let go of the folder or the
      // storage, so the next start (with the fix) is not held up by this one.
      this.state = 'closed';
      await opened.backend.release().catch(() => undefined);
      this.notifier.complete();
      throw error;
    }
    if (options.autoSave !== false && !options.readOnly) {
      this.enableAutoSave(options.autoSave.interval);
    }
    opened.startBackups(this.schedulerRegistry, () => this.backup());
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
    this.shutdown ??= this.stop().finally(() => this.notifier.complete());
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
   * Deletes every saved item this store loaded, as one commit; in-memory state is kept. What it did
   * not load stays, still protected from saves: quarantined files and the items of
   * {@link listUnloaded} (remove those with {@link discardUnloaded}). With a storage driver each
   * removal expects the revision this replica last saw (a newer one is a conflict under the
   * `conflicts` policy), and a replica that has not loaded yet refuses.
   */
  clear(): Promise<void> {
    return this.refuse('clear', true) ?? this.enqueue(() => this.open.backend.clear());
  }

  /**
   * Writes a complete copy of the saved state (not of unsaved changes: call `saveAll()` first for
   * those) to `destination`, which must be outside the store and missing or empty. The copy appears
   * whole or not at all. Without `destination`: a new backup into `backups.directory` (or
   * `backups.target`), sharing unchanged files with the previous one, then retention (`backups.keep`).
   * On a store opened with `readOnly: true` (another process writes the folder) the copy is a
   * consistent snapshot of that process's committed state, read without checkpointing or writing
   * into the store.
   */
  backup(destination?: string): Promise<BackupMetadata> {
    return (
      this.refuse('back up', false) ??
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
   * `source` is a folder, or the id of a backup from `listBackups()`. A stored item this code cannot
   * read (another key, a newer schema version) is never deleted: it stays, or, when the backup holds
   * its id, is set aside in `.quarantine/` (files) or kept with the backup's item reported (drivers).
   */
  restore(source: string): Promise<RestoreMetadata> {
    return (
      this.refuse('restore', true) ??
      this.enqueue(async () => {
        const { backend, backups, codec, options } = this.open;
        const scope = { ...this.shared, backend, backups, codec, caller: this.caller, options };
        return restoreBackup(scope, source);
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
  listUnloaded(): UnloadedItem[] {
    this.assertOpen('list unloaded items');
    const { backend } = this.open;
    return unloadedItems(this.shared.index, (adapter, stem, entry) =>
      backend.itemPath(adapter, stem, entry.fileName),
    );
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
      return Promise.reject(this.errors.notSupported('discard an unloaded item', backend.location));
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
    this.autoSave ??= createAutoSave(this.schedulerRegistry, this.open.options.autoSave, {
      isBusy: () => this.queue.busy,
      save: () => this.queue.run(() => this.runSave('auto-save')),
      saveSoon: () =>
        this.state === 'ready' ? this.requestSave('auto-save') : Promise.resolve(undefined),
      logger: this.logger,
    });
    this.autoSave.start(intervalMs);
    startAutoSaveDebounce(this.autoSave, this.open.options.autoSave, this.adapterList);
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
    this.open.setFormat(resolveOptions({ ...this.rawOptions, format, adapters: [] }).format);
    this.shared.inSync.clear(); // every file is rewritten in the new format
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
    const facts = {
      startedAt: this.startedAt,
      lastSaveTime: this.lastSaveTime,
      lastSaveIncomplete: this.lastSaveIncomplete?.message ?? null,
    };
    return composeStatus(state, this.opened, facts, this.notifier, this.shared.index);
  }

  /** What exists once the store is open; throws before `onModuleInit` has begun. */
  private get open(): OpenStore {
    if (this.opened) return this.opened;
    throw new PersistenceError(
      PersistenceErrorCode.StoreClosed,
      messages.notInitialised('use the store'),
    );
  }

  /** A save after those queued, shared with a save already waiting to start. */
  private requestSave(operation: PersistenceOperation): Promise<SaveMetadata> {
    if (this.queuedSave) return this.queuedSave;
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
    this.lastSaveIncomplete = result.incomplete ?? null;
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
    if (this.state === 'ready') return;
    const problem =
      this.state === 'created'
        ? messages.notInitialised(operation)
        : messages.storeClosed(operation);
    throw new PersistenceError(PersistenceErrorCode.StoreClosed, problem);
  }

  private assertWritable(operation: string): void {
    this.assertOpen(operation);
    if (this.open.options.readOnly) {
      throw new PersistenceError(PersistenceErrorCode.ReadOnly, messages.readOnly(operation));
    }
  }

  /** Stops auto-save and backups, drains the queue, saves once (unless superseded), and closes. */
  private async stop(superseded = false): Promise<void> {
    if (this.state !== 'ready') {
      if (!superseded) this.state = 'closed';
      return;
    }
    const { backend, backups, options } = this.open;
    this.disableAutoSave();
    backups?.stopSchedule();
    this.state = 'closing';
    if (!superseded) backend.stopIntake();
    await this.queue.idle();
    if (superseded) {
      await backend.release();
    } else {
      if (!options.readOnly && options.saveOnShutdown && backend.canSaveOnShutdown) {
        await this.queue.run(() => this.runSave('shutdown')).catch(() => undefined);
      }
      await backend.close();
    }
    this.state = 'closed';
  }
}
