import { join, resolve } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { BackupEntry } from '../interfaces/backup-target.interface';
import { BackupVerifier } from './backup.verifier';
import { BackupMetadata, LoadMetadata } from '../interfaces/persistence-metadata.interface';
import * as messages from '../persistence.messages';
import {
  BackupFile,
  isFreeDestination,
  storeEntries,
  writeBackup,
} from '../storage/backup.storage';
import { swapInBackupKeepingUnreadable } from '../storage/restore.swap';
import { FileSystemStorage } from '../storage/file-system.storage';
import { encodeId } from '../storage/file-name.codec';
import { exists, fsyncDirectory } from '../storage/fs.util';
import { Journal, JournalOp } from '../storage/journal';
import { readLiveSnapshot, SnapshotMoved } from '../storage/live-snapshot';
import { JOURNAL_FILE } from '../storage/on-disk.names';
import { isReallySameOrInside } from '../storage/path.util';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { guardWrites } from '../storage/guarded-file-system';
import { LockHeldError, StoreLock } from '../storage/store.lock';
import { forgetLoaded, inSyncAfterLoad, NOT_LOADED_YET } from './committed.index';
import { pinUnreadableUnread } from './unread.checker';
import { readJournalOnly, recoverAtStart } from './crash.recovery';
import { wrapIo } from './error.reporter';
import { JournalCheckpointer } from './journal.checkpointer';
import { openStores } from './open-stores.registry';
import { SnapshotReader } from './snapshot.reader';
import { SaveResult, SnapshotWriter } from './snapshot.writer';
import { BackendStatus, StoreBackend, BackendContext } from './store.backend';

/**
 * The state in a folder of the file system: one writer per folder (the lock), crash recovery at
 * start, saves committed into the write-ahead journal and checkpointed into the item files
 * (`JournalCheckpointer`), a folder deleted under the store recreated, and restore by swapping
 * folders.
 */
export class FileSystemBackend implements StoreBackend {
  readonly canSaveOnShutdown = true;
  private readonly storage: FileSystemStorage;
  private readonly journal: Journal;
  private readonly checkpointer: JournalCheckpointer;
  private lock?: StoreLock;
  /** Read-only: the journal's commits, read at open, laid over the item files by the boot load. */
  private bootOverlay: JournalOp[][] = [];
  /** Recovery could not write the journal into the item files: the boot load reads it instead. */
  private replayDeferred = false;
  private folderRemoved = false;
  /** Why the last load failed as a whole, until a load succeeds (for the health check). */
  private loadFailure?: string;

  /** The file system for everything but the lock: no write passes once the lock is lost. */
  private readonly fs: PersistenceFileSystem;

  constructor(private readonly ctx: BackendContext) {
    const { options } = ctx;
    const fs = guardWrites(ctx.fs, () => this.lock?.writable());
    this.fs = fs;
    this.storage = new FileSystemStorage(fs, {
      root: options.path,
      ioConcurrency: options.ioConcurrency,
      fileMode: options.fileMode,
      dirMode: options.dirMode,
      maxFileBytes: options.limits.maxFileBytes,
    });
    this.journal = new Journal(fs, join(options.path, JOURNAL_FILE), options.fileMode);
    this.checkpointer = new JournalCheckpointer(
      fs,
      this.journal,
      this.storage,
      options.path,
      options.checkpointBytes,
      ctx.errors,
    );
  }

  get location(): string {
    return this.ctx.options.path;
  }

  /** Locks the folder and recovers from a crash (read-only: reads the journal, changes nothing). */
  async open(): Promise<void> {
    const { errors, options } = this.ctx;
    const path = this.location;
    if (options.readOnly) {
      this.bootOverlay = await errors.io('init', 'read the journal of', path, () =>
        readJournalOnly(this.fs, this.journal.path, errors, this.ctx.logger),
      );
    } else {
      await errors.io('init', 'create', path, () => this.storage.ensureRoot());
      await this.supersedeFailedBoot();
      await this.acquireLock();
      try {
        await errors.io('init', 'recover', path, async () => {
          this.replayDeferred = await recoverAtStart({
            fs: this.fs,
            root: path,
            fileMode: options.fileMode,
            storage: this.storage,
            checkpointer: this.checkpointer,
            collections: this.ctx.adapters.map((a) => a.name),
            errors,
            logger: this.ctx.logger,
          });
        });
      } catch (error) {
        await this.journal.close().catch(() => undefined);
        await this.lock?.release();
        throw error;
      }
      openStores.add(path, this.ctx.registration);
    }
    if (await this.storage.isWritableByOthers().catch(() => false)) {
      this.ctx.logger.warn(messages.writableByOthers(path));
    }
  }

  async start(load: boolean): Promise<void> {
    if (load) {
      const overlay = this.bootOverlay;
      this.bootOverlay = [];
      await this.ctx.queue.run(() => this.bootLoad(overlay));
    } else {
      await this.indexFiles();
    }
  }

  /**
   * The boot load, under `onUnreadable`. With `'fail'`, a load that left items nobody can use yet
   * (or failed as a whole) rejects with one reported error, before any corrupt file is moved to
   * quarantine: the refused start changes nothing. With `'start'` the application starts with what
   * could be read (the health check says what is missing).
   */
  private async bootLoad(overlay: readonly JournalOp[][]): Promise<void> {
    const { ctx } = this;
    const fail = ctx.options.onUnreadable === 'fail';
    let reader: SnapshotReader;
    try {
      ({ reader } = await this.runLoad('load', overlay, fail ? 'refuse' : 'start'));
    } catch (error) {
      if (!fail) return; // reported; the application starts with what could be read
      throw ctx.errors.report(
        new PersistenceError(
          PersistenceErrorCode.UnreadableItems,
          messages.loadFailedAtStart(this.location, messages.reasonOf(error)),
          { operation: 'init', path: this.location, cause: error },
        ),
        'init',
      );
    }
    const refusal = fail ? reader.problems.refusal(this.location, true) : undefined;
    if (refusal) throw ctx.errors.report(refusal, 'init');
    for (const collection of await reader.quarantineDeferred(ctx.index)) {
      ctx.inSync.delete(collection);
    }
    reader.problems.log(ctx.logger, this.location);
  }

  async save(operation: PersistenceOperation): Promise<SaveResult> {
    const { ctx } = this;
    // The folder check overlaps the commit's sync instead of costing a trip of its own.
    const sink = {
      path: this.journal.path,
      begin: () => this.journal.begin(() => this.checkStoreFolder()),
    };
    const writer = new SnapshotWriter(
      sink,
      ctx.index,
      this.location,
      (error) => ctx.errors.report(error, operation),
      ctx.caller(),
      ctx.failures,
      ctx.checks,
    );
    let result;
    try {
      result = await writer.save(ctx.adapters, ctx.codec(), operation, () =>
        this.ensureStoreFolder(),
      );
    } catch (error) {
      throw ctx.errors.failed(operation, 'save', this.location, error);
    }
    this.checkpointer.committed(result.ops);
    await this.checkpointer.rotateJournal();
    return result;
  }

  async load(operation: PersistenceOperation): Promise<LoadMetadata> {
    const overlay = this.ctx.options.readOnly
      ? await readJournalOnly(this.fs, this.journal.path, this.ctx.errors, this.ctx.logger)
      : [];
    return (await this.runLoad(operation, overlay)).meta;
  }

  /**
   * Removes what this store loaded, as one journal commit. The files it did not load stay, and so
   * does their entry in the index: a save still may not touch them (`PERSISTENCE_UNLOADED_ITEM`),
   * `listUnloaded()` still lists them, and only `discardUnloaded()` sets them aside.
   */
  async clear(): Promise<void> {
    const ops: JournalOp[] = [];
    for (const [collection, entries] of this.ctx.index) {
      for (const entry of entries.values()) {
        if (entry.unloaded !== undefined) continue;
        for (const fileName of [entry.fileName, ...(entry.others ?? [])]) {
          ops.push({ collection, fileName });
        }
      }
    }
    await this.ctx.errors.io('clear', 'clear', this.location, async () => {
      if (ops.length > 0) await this.journal.append(ops);
      this.checkpointer.committed(ops);
      forgetLoaded(this.ctx.index);
      this.ctx.inSync.clear();
      await this.checkpointer.applyJournal();
    });
  }

  readonly checkpoint = (): Promise<void> =>
    this.ctx.errors.io('checkpoint', 'checkpoint', this.location, () =>
      this.checkpointer.applyJournal(),
    );

  async backupTo(destination: string): Promise<BackupMetadata> {
    const { errors } = this.ctx;
    const started = performance.now();
    const target = resolve(destination);
    const store = this.location;
    let problem: string | undefined;
    const [inside, holds] = await errors.io('backup', 'inspect', target, () =>
      Promise.all([
        isReallySameOrInside(this.ctx.fs, target, store),
        isReallySameOrInside(this.ctx.fs, store, target),
      ]),
    );
    if (inside) {
      problem = messages.backupDestinationInside(target, store);
    } else if (holds) {
      problem = messages.backupDestinationHoldsStore(target, store);
    } else if (
      !(await errors.io('backup', 'inspect', target, () => isFreeDestination(this.fs, target)))
    ) {
      problem = messages.backupDestinationNotEmpty(target);
    }
    if (problem) {
      throw errors.report(
        new PersistenceError(PersistenceErrorCode.InvalidBackupDestination, problem, {
          operation: 'backup',
          path: target,
        }),
      );
    }
    await this.beforeBackup();
    const collections = this.ctx.adapters.map((a) => a.name);
    // Read-only: another process writes, so only the decoding checks apply, not this store's hashes.
    const verifier = new BackupVerifier(this.ctx, !this.ctx.options.readOnly);
    const written = await errors.io('backup', 'write the backup', target, () =>
      writeBackup(
        this.storage,
        collections,
        target,
        verifier.verify(this.backupEntries(collections)),
        { verified: true, unverified: verifier.unverified },
      ),
    );
    return {
      path: target,
      ...written,
      unverified: verifier.unverified,
      timestamp: new Date(),
      durationMs: performance.now() - started,
    };
  }

  /**
   * The committed state's item files. Read-only (another process may be writing): a consistent
   * snapshot of the item files and the journal's records, read without checkpointing
   * ({@link readLiveSnapshot}); otherwise the item files, which `beforeBackup()` brought up to date.
   */
  backupEntries(collections: readonly string[]): AsyncIterable<BackupEntry> {
    const extension = this.ctx.codec().serializer.extension;
    if (!this.ctx.options.readOnly) return storeEntries(this.storage, collections, extension);
    const { storage, journal, location, ctx } = this;
    return (async function* () {
      const entries = await ctx.errors.io('backup', 'read a consistent snapshot of', location, () =>
        readLiveSnapshot(storage, journal.path, collections, extension).catch((error: unknown) => {
          if (!(error instanceof SnapshotMoved)) throw error;
          // Reported once, by io().
          throw new PersistenceError(
            PersistenceErrorCode.IoFailed,
            messages.liveSnapshotMoving(location, error.message),
            { operation: 'backup', path: location },
          );
        }),
      );
      yield* entries;
    })();
  }

  beforeBackup(): Promise<void> {
    if (this.ctx.options.readOnly) return Promise.resolve(); // the writer checkpoints, not this one
    return this.ctx.errors.io('backup', 'checkpoint', this.location, () =>
      this.checkpointer.applyJournal(),
    );
  }

  scheduledBackup(run: () => Promise<unknown>): Promise<unknown> {
    return run();
  }

  async restoreSourceProblem(from: string): Promise<string | undefined> {
    const { fs } = this.ctx;
    return (await isReallySameOrInside(fs, from, this.location)) ||
      (await isReallySameOrInside(fs, this.location, from))
      ? 'it is the store folder, inside it, or contains it'
      : undefined;
  }

  /**
   * Swaps the backup's files in for the collections' folders (never deleting a file this code could
   * not read: see {@link swapInBackupKeepingUnreadable}; with `loadOnBoot: false` the files not read
   * yet are checked first), then loads them.
   */
  async restore(files: readonly BackupFile[], collections: string[]): Promise<LoadMetadata> {
    const { ctx } = this;
    await ctx.errors.io('restore', 'swap in the backup', this.location, async () => {
      await this.checkpointer.applyJournal();
      const { adapters, index, options } = ctx;
      await pinUnreadableUnread(
        this.storage,
        index,
        adapters,
        ctx.codec(),
        ctx.caller(),
        options.ioConcurrency,
      );
      const setAside = await swapInBackupKeepingUnreadable(
        this.storage,
        collections,
        files,
        ctx.codec().serializer.extension,
      );
      if (setAside.length > 0) ctx.logger.warn(messages.restoreSetAside(setAside));
    });
    return (await this.runLoad('restore', [])).meta;
  }

  readonly discardUnloaded = async (adapter: string, id: string): Promise<string[]> => {
    const { ctx } = this;
    const entries = ctx.index.get(adapter);
    const stem = encodeId(id);
    const entry = entries?.get(stem);
    if (!entries || entry?.unloaded === undefined) return [];
    await this.checkpoint();
    const moved: string[] = [];
    for (const fileName of [entry.fileName, ...(entry.others ?? [])]) {
      const file = {
        stem,
        extension: '',
        fileName,
        path: join(this.storage.collectionPath(adapter), fileName),
      };
      const to = await ctx.errors.io('save', 'set aside', file.path, () =>
        this.storage.quarantine(adapter, file),
      );
      this.storage.unpin(file.path);
      moved.push(to);
    }
    entries.delete(stem);
    ctx.inSync.delete(adapter); // the item in memory (if any) is saved at the next save
    ctx.failures.clear(adapter, stem);
    return moved;
  };

  itemPath(adapter: string, _stem: string, fileName: string): string {
    return join(this.location, adapter, fileName);
  }

  async status(checkWritable: boolean): Promise<BackendStatus> {
    const path = this.location;
    const lost = this.lock?.lostError;
    const notWritableReason = lost
      ? lost.message
      : checkWritable
        ? await this.ctx.fs.access(path, 'write').then(
            () => undefined,
            (error: unknown) => `the folder is not writable: ${messages.reasonOf(error)}`,
          )
        : undefined;
    const disk = path === '' ? null : await this.ctx.fs.statfs(path).catch(() => null);
    return {
      path,
      ...(notWritableReason === undefined ? {} : { notWritableReason }),
      ...(this.loadFailure === undefined ? {} : { loadFailure: this.loadFailure }),
      journal: this.checkpointer.backlog,
      disk,
      storage: 'file-system',
    };
  }

  stopIntake(): void {
    // Nothing arrives from outside: this process is the folder's one writer.
  }

  async close(): Promise<void> {
    if (this.ctx.options.readOnly) return;
    await this.ctx.queue.run(() => this.checkpointAt('shutdown')).catch(() => undefined); // the journal keeps the commits; the next start replays them
    await this.release();
  }

  async release(): Promise<void> {
    await this.checkpointer.backgroundDone();
    await this.journal.close().catch(() => undefined);
    await this.lock?.release();
    openStores.delete(this.location, this.ctx.registration);
  }

  private checkpointAt(operation: PersistenceOperation): Promise<void> {
    return this.ctx.errors.io(operation, 'checkpoint', this.location, () =>
      this.checkpointer.applyJournal(),
    );
  }

  private async acquireLock(): Promise<void> {
    const path = this.location;
    this.lock = new StoreLock(
      this.ctx.fs,
      path,
      this.ctx.options.fileMode,
      this.ctx.options.lock,
      (lost) => {
        this.ctx.logger.error(lost.message);
        this.ctx.errors.report(lost, 'save');
      },
    );
    try {
      const stale = await this.lock.acquire();
      if (stale) {
        this.ctx.logger.warn(messages.staleLockTaken(path, stale, this.lock.unrenewedMs));
      }
    } catch (error) {
      this.lock = undefined;
      if (error instanceof LockHeldError) {
        throw new PersistenceError(
          PersistenceErrorCode.StoreLocked,
          messages.storeLocked(path, error.owner),
          { operation: 'init', path },
        );
      }
      throw wrapIo('init', 'lock', path, error);
    }
  }

  /** A store of this process on the same folder whose application never booted gives way. */
  private async supersedeFailedBoot(): Promise<void> {
    const other = openStores.get(this.location);
    if (other && !other.isBootstrapped()) {
      this.ctx.logger.warn(messages.supersededFailedBoot(this.location));
      await other.supersede();
    }
  }

  /**
   * Recovery from a deleted folder. A save into a journal whose folder was removed would go into a
   * deleted file. The first save that finds the folder gone fails with a clear error; the next one
   * recreates the folder, the lock and the journal, and writes the whole state again.
   */
  private async ensureStoreFolder(): Promise<void> {
    if (!this.folderRemoved) return; // checked at each commit (checkStoreFolder)
    const path = this.location;
    await this.journal.close().catch(() => undefined);
    await this.lock?.release();
    await this.storage.ensureRoot();
    await this.acquireLock();
    await this.journal.open();
    await fsyncDirectory(this.fs, path);
    await this.storage.prepare(this.ctx.adapters.map((a) => a.name));
    await this.checkpointer.forget();
    for (const entries of this.ctx.index.values()) entries.clear(); // everything is written again
    this.ctx.inSync.clear();
    this.folderRemoved = false;
    this.ctx.logger.warn(`Recreated the store folder ${path}; saving the whole state.`);
  }

  /**
   * Fails the commit when the journal is gone (the store folder was removed): the record went into
   * a deleted file, so the save is refused, and the next one recreates the folder.
   */
  private async checkStoreFolder(): Promise<void> {
    if (await exists(this.fs, this.journal.path)) return;
    this.folderRemoved = true;
    const path = this.location;
    throw new PersistenceError(PersistenceErrorCode.IoFailed, messages.storeFolderRemoved(path), {
      operation: 'save',
      path,
    });
  }

  /**
   * With `loadOnBoot: false`: learn which files exist, as not loaded. Memory is not the whole truth
   * then, so no save overwrites or removes them until `loadAll()` loads them.
   */
  private async indexFiles(): Promise<void> {
    for (const adapter of this.ctx.adapters) {
      const files = await this.storage.list(adapter.name, this.ctx.codec().serializer.extension);
      const entries = new Map(
        files.map((file) => [
          file.stem,
          {
            fileName: file.fileName,
            ref: undefined,
            hash: '',
            unloaded: NOT_LOADED_YET,
            unloadedKind: 'not-loaded' as const,
          },
        ]),
      );
      this.ctx.index.set(adapter.name, entries);
    }
  }

  /**
   * A load; `boot` for the boot load, whose problems the caller logs once it has decided on the start
   * (`'refuse'`: a failure of the whole load is not logged either, the refusal says it).
   */
  private async runLoad(
    operation: PersistenceOperation,
    overlay: readonly JournalOp[][],
    boot?: 'refuse' | 'start',
  ): Promise<{ meta: LoadMetadata; reader: SnapshotReader }> {
    const { ctx } = this;
    const reader = new SnapshotReader(
      this.storage,
      ctx.options.ioConcurrency,
      (error, log) =>
        log ? ctx.errors.report(error, operation) : ctx.errors.quiet(error, operation),
      ctx.caller(),
      ctx.options.readOnly,
      boot !== undefined,
    );
    try {
      let records = overlay;
      if (this.replayDeferred) {
        this.replayDeferred = false; // reported by recovery already
        records = [...overlay, ...(await this.checkpointer.uncheckpointed())];
      } else if (!ctx.options.readOnly) {
        try {
          await this.checkpointer.applyJournal();
        } catch (error) {
          // The item files are behind the journal: load them with its commits on top.
          ctx.errors.report(wrapIo(operation, 'checkpoint', this.location, error), operation);
          records = [...overlay, ...(await this.checkpointer.uncheckpointed())];
        }
      }
      ctx.inSync.clear(); // the index is rebuilt from the files
      const meta = await reader.load(ctx.adapters, ctx.codec(), ctx.index, records);
      for (const [name, unloaded] of inSyncAfterLoad(ctx.adapters, ctx.index, ctx.codec().keyId)) {
        ctx.inSync.set(name, unloaded);
      }
      this.loadFailure = undefined;
      if (boot === undefined) reader.problems.log(ctx.logger, this.location);
      ctx.notifier.loaded(meta);
      return { meta, reader };
    } catch (error) {
      const failure = wrapIo(operation, 'load', this.location, error);
      this.loadFailure = failure.message;
      throw boot === 'refuse' ? failure : ctx.errors.report(failure, operation);
    }
  }
}
