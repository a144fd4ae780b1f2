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
import { resolve } from 'node:path';
import { FocusAdapter } from '../adapters/focus/focus.adapter';
import { MemoryAdapter } from '../adapters/memory/memory.adapter';
import { SessionAdapter } from '../adapters/session/session.adapter';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceEvents } from '../events/persistence-events.enum';
import { PersistenceNotifier } from '../events/persistence.notifier';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
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
import { BuiltInFormat, Serializer } from '../interfaces/serializer.interface';
import { PERSISTENCE_MODULE_OPTIONS } from '../persistence.module-definition';
import { PERSISTENCE_LOGGER_CONTEXT } from '../persistence.constants';
import * as messages from '../persistence.messages';
import { createSerializer } from '../serializers/serializer.factory';
import {
  isFreeDestination,
  BackupProblem,
  readBackup,
  recoverRestores,
  swapInBackup,
  writeBackup,
} from '../storage/backup.storage';
import { FileSystemStorage } from '../storage/file-system.storage';
import { ItemFileCodec } from '../storage/item-file.codec';
import { ItemCipher } from '../encryption/item.cipher';
import { isSameOrInside } from '../storage/path.util';
import { resolveAdapters } from './adapter.resolver';
import { AutoSaveScheduler } from './auto-save.scheduler';
import { OperationQueue } from './operation.queue';
import { assertInterval, resolveOptions } from './persistence.options';
import { SnapshotReader } from './snapshot.reader';
import { SnapshotWriter } from './snapshot.writer';

/**
 * The public API: save, load, clear, back up and restore the state of every adapter, and watch it
 * happen. One operation runs at a time; `saveAll()` calls that arrive during a save share one more.
 */
@Injectable()
export class PersistenceStore
  implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown
{
  private readonly logger = new Logger(PERSISTENCE_LOGGER_CONTEXT);
  private readonly queue = new OperationQueue();
  private readonly notifier: PersistenceNotifier;
  private readonly adapterList: PersistenceAdapter[] = [];
  private options!: ResolvedPersistenceOptions;
  private storage!: FileSystemStorage;
  private codec!: ItemFileCodec;
  private cipher?: ItemCipher;
  private autoSave?: AutoSaveScheduler;
  private queuedSave?: Promise<SaveMetadata>;
  private lastSaveTime: Date | null = null;
  private state: 'created' | 'ready' | 'closing' | 'closed' = 'created';
  private shutdown?: Promise<void>;
  private releaseBootEvents?: () => void;

  constructor(
    @Inject(PERSISTENCE_MODULE_OPTIONS) private readonly rawOptions: PersistenceModuleOptions,
    private readonly moduleRef: ModuleRef,
    private readonly sessionAdapter: SessionAdapter,
    private readonly memoryAdapter: MemoryAdapter,
    private readonly focusAdapter: FocusAdapter,
    @Optional() eventEmitter?: EventEmitter2,
    @Optional() private readonly schedulerRegistry?: SchedulerRegistry,
  ) {
    this.notifier = new PersistenceNotifier(eventEmitter);
    if (!eventEmitter) {
      this.logger.warn(messages.eventEmitterMissing());
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

  /** Validates the options, prepares the folder, recovers, loads, and starts auto-save. */
  async onModuleInit(): Promise<void> {
    this.options = resolveOptions(this.rawOptions);
    if (this.options.encryption) {
      this.cipher = ItemCipher.create(this.options.encryption, () => {
        throw new Error('unreachable: validated by resolveOptions');
      });
    }
    this.setCodec(createSerializer(this.options.format));
    const builtIn = this.options.builtInAdapters
      ? [this.sessionAdapter, this.memoryAdapter, this.focusAdapter]
      : [];
    this.adapterList.push(
      ...(await resolveAdapters(this.moduleRef, builtIn, this.options.adapters)),
    );
    if (this.options.autoSave !== false && !this.schedulerRegistry) {
      throw new PersistenceError(
        PersistenceErrorCode.SchedulerMissing,
        messages.schedulerMissing(),
        {
          operation: 'init',
        },
      );
    }
    this.storage = new FileSystemStorage({
      root: this.options.path,
      ioConcurrency: this.options.ioConcurrency,
      fileMode: this.options.fileMode,
      dirMode: this.options.dirMode,
      maxFileBytes: this.options.limits.maxFileBytes,
    });
    try {
      for (const done of await recoverRestores(this.options.path)) {
        this.logger.warn(`Recovery: ${done}.`);
      }
      const removed = await this.storage.prepare(this.adapterList.map((a) => a.name));
      if (removed.length > 0) {
        this.logger.log(`Recovery: removed ${removed.length} leftover temporary file(s).`);
      }
      if (await this.storage.isWritableByOthers()) {
        this.logger.warn(messages.writableByOthers(this.options.path));
      }
    } catch (error) {
      throw this.wrapIo('init', 'prepare', this.options.path, error);
    }
    this.state = 'ready';
    this.holdBootEvents();
    if (this.options.loadOnBoot) {
      // A failed load never stops the application: it starts with what could be read.
      await this.loadAll().catch(() => undefined);
    }
    if (this.options.autoSave !== false) {
      this.enableAutoSave(this.options.autoSave.interval);
    }
  }

  /** Lets the boot load's events out once `@OnEvent` listeners are wired. */
  onApplicationBootstrap(): void {
    this.releaseBootEvents?.();
  }

  /**
   * Runs after every `onModuleDestroy()` hook, so services that flush their state there are included:
   * stops auto-save, waits for operations in flight, saves once more, and closes the store.
   */
  beforeApplicationShutdown(): Promise<void> {
    this.shutdown ??= this.close();
    return this.shutdown;
  }

  /**
   * Saves the state of every adapter. Resolves after a save that includes the state as it was at the
   * time of the call: a call made while a save runs waits for one more save, shared by every call that
   * arrives meanwhile.
   */
  saveAll(): Promise<SaveMetadata> {
    this.assertOpen('save');
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
   * Replaces the in-memory state of every adapter with the saved state. Unreadable files are
   * quarantined and reported; the rest loads.
   */
  loadAll(): Promise<LoadMetadata> {
    this.assertOpen('load');
    return this.queue.run(() => this.runLoad('load'));
  }

  /** Deletes every saved item of every adapter (quarantined files stay). In-memory state is kept. */
  clear(): Promise<void> {
    this.assertOpen('clear');
    return this.queue.run(() =>
      this.io('clear', 'clear', this.options.path, () =>
        this.storage.clear(this.adapterList.map((a) => a.name)),
      ),
    );
  }

  /**
   * Writes a complete copy of the saved state (not of unsaved changes: call `saveAll()` first for
   * those) to `destination`, which must be outside the store and missing or empty. The copy appears
   * whole or not at all.
   */
  backup(destination: string): Promise<BackupMetadata> {
    this.assertOpen('back up');
    return this.queue.run(async () => {
      const started = performance.now();
      const target = resolve(destination);
      const store = this.options.path;
      let problem: string | undefined;
      if (isSameOrInside(target, store)) {
        problem = messages.backupDestinationInside(target, store);
      } else if (isSameOrInside(store, target)) {
        problem = messages.backupDestinationHoldsStore(target, store);
      } else if (!(await this.io('backup', 'inspect', target, () => isFreeDestination(target)))) {
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
    this.assertOpen('restore');
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
          from,
          collections,
          this.codec.serializer.extension,
          this.options.limits.maxFileBytes,
        );
        for (const file of files) {
          try {
            const envelope = await this.codec.decode(file.collection, file, file.data);
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
      await this.io('restore', 'swap in the backup', this.options.path, () =>
        swapInBackup(this.storage, collections, files),
      );
      const load = await this.runLoad('restore');
      return { source: from, files: files.length, load };
    });
  }

  /** Starts (or restarts with a new interval) auto-save. Needs `ScheduleModule.forRoot()`. */
  enableAutoSave(intervalMs: number): void {
    this.assertOpen('enable auto-save');
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

  private setCodec(serializer: Serializer): void {
    this.codec = new ItemFileCodec(serializer, this.cipher, this.options.limits.maxInflatedBytes);
  }

  private async runSave(operation: PersistenceOperation): Promise<SaveMetadata> {
    const writer = new SnapshotWriter(this.storage, (error) => this.fail(error, operation));
    try {
      const meta = await writer.save(this.adapterList, this.codec);
      this.lastSaveTime = meta.timestamp;
      this.notifier.saved(meta);
      return meta;
    } catch (error) {
      const failure =
        error instanceof PersistenceError
          ? error
          : this.wrapIo(operation, 'save', this.options.path, error);
      // Per-item failures were reported one by one; the summary goes to the caller only.
      if (failure.code !== PersistenceErrorCode.SaveIncomplete) this.fail(failure, operation);
      throw failure;
    }
  }

  private async runLoad(operation: PersistenceOperation): Promise<LoadMetadata> {
    const reader = new SnapshotReader(this.storage, this.options.ioConcurrency, (error) =>
      this.fail(error, operation),
    );
    try {
      const meta = await reader.load(this.adapterList, this.codec);
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
    if (this.options.saveOnShutdown) {
      try {
        await this.queue.run(() => this.runSave('shutdown'));
      } catch {
        // Already logged and emitted; shutdown goes on.
      }
    }
    this.state = 'closed';
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
