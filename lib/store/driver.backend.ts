import { randomBytes } from 'node:crypto';
import { basename, resolve } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { BackupEntry } from '../interfaces/backup-target.interface';
import { BackupMetadata, LoadMetadata } from '../interfaces/persistence-metadata.interface';
import { StorageDriver } from '../interfaces/storage-driver.interface';
import {
  BACKUP_LEASE,
  BACKUP_LEASE_TTL_MS,
  BACKUP_MANIFEST_VERSION,
} from '../persistence.constants';
import * as messages from '../persistence.messages';
import { BackupFile, isFreeDestination, writeBackupFolder } from '../storage/backup.storage';
import { BackupVerifier } from './backup.verifier';
import { DriverReplica } from './driver.replica';
import { wrapIo } from './error.reporter';
import { SaveResult, SnapshotWriter } from './snapshot.writer';
import { BackendStatus, StoreBackend, BackendContext } from './store.backend';

/**
 * The state in a `StorageDriver` (option `storage`): no folder, lock, journal or recovery. Saves
 * commit through `DriverCommitSink` (one `driver.commit()`), and `DriverReplica` opens (with retries),
 * loads, and follows other replicas' commits. Scheduled backups run on one replica at a time.
 */
export class DriverBackend implements StoreBackend {
  private readonly replica: DriverReplica;
  /** Why the last `loadAll()` failed as a whole, until a load succeeds (for the health check). */
  private loadFailure?: string;

  constructor(
    private readonly ctx: BackendContext,
    private readonly driver: StorageDriver,
  ) {
    driver.useLogger?.(ctx.logger);
    this.replica = new DriverReplica({
      driver,
      conflicts: ctx.options.conflicts,
      adapters: ctx.adapters,
      index: ctx.index,
      inSync: ctx.inSync,
      queue: ctx.queue,
      notifier: ctx.notifier,
      logger: ctx.logger,
      codec: () => ctx.codec(),
      caller: () => ctx.caller(),
      fail: (error, operation, log = true) =>
        log ? ctx.errors.report(error, operation) : ctx.errors.quiet(error, operation),
      refuseUnreadable: ctx.options.onUnreadable === 'fail',
    });
  }

  get location(): string {
    return this.replica.location;
  }

  /** Saves before the first load could overwrite what other replicas wrote. */
  get canSaveOnShutdown(): boolean {
    return this.replica.loaded;
  }

  open(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Opens the driver and loads; when the storage does not answer, the application starts anyway
   * (error reported, opened and loaded later).
   */
  start(load: boolean): Promise<void> {
    return this.ctx.queue.run(() => this.replica.start(load));
  }

  /**
   * A save on a storage driver: the same snapshots and codec as on files, committed by one
   * `driver.commit()` with each item's expected revision; then conflicts and revisions.
   */
  async save(operation: PersistenceOperation): Promise<SaveResult> {
    const { ctx, replica } = this;
    const writer = new SnapshotWriter(
      replica.sink,
      ctx.index,
      replica.location,
      (error) => ctx.errors.report(error, operation),
      ctx.caller(),
      ctx.failures,
      ctx.checks,
    );
    try {
      replica.assertLoaded(operation);
      const result = await writer.save(ctx.adapters, ctx.codec(), operation);
      await replica.afterCommit(operation);
      await replica.followSkipped();
      return result;
    } catch (error) {
      throw ctx.errors.failed(operation, 'save', replica.location, error);
    }
  }

  load(operation: PersistenceOperation): Promise<LoadMetadata> {
    return this.replica.load(operation).then(
      (meta) => {
        this.loadFailure = undefined;
        return meta;
      },
      (error: unknown) => {
        const failure = wrapIo(operation, 'load', this.location, error);
        this.loadFailure = failure.message;
        throw this.ctx.errors.report(failure, operation);
      },
    );
  }

  clear(): Promise<void> {
    return this.ctx.errors.io('clear', 'clear', this.location, () => this.replica.clear());
  }

  /** `backup(destination)` on a storage driver: its items, from one consistent state, as files. */
  async backupTo(destination: string): Promise<BackupMetadata> {
    const { ctx } = this;
    const started = performance.now();
    const target = resolve(destination);
    if (
      !(await ctx.errors.io('backup', 'inspect', target, () => isFreeDestination(ctx.fs, target)))
    ) {
      throw ctx.errors.report(
        new PersistenceError(
          PersistenceErrorCode.InvalidBackupDestination,
          messages.backupDestinationNotEmpty(target),
          { operation: 'backup', path: target },
        ),
      );
    }
    const collections = ctx.adapters.map((a) => a.name);
    // Other replicas commit to the same storage: only the decoding checks apply, not this replica's hashes.
    const verifier = new BackupVerifier(ctx, false);
    const manifest = await ctx.errors.io('backup', 'write the backup', target, () =>
      writeBackupFolder(
        ctx.fs,
        { fileMode: ctx.options.fileMode, dirMode: ctx.options.dirMode },
        target,
        `.${basename(target)}.backup-${randomBytes(6).toString('hex')}`,
        {
          version: BACKUP_MANIFEST_VERSION,
          createdAt: new Date().toISOString(),
          collections,
          verified: true,
          unverified: verifier.unverified,
        },
        verifier.verify(this.replica.entries(collections)),
      ),
    );
    return {
      path: target,
      unverified: verifier.unverified,
      files: manifest.files.length,
      size: manifest.newBytes ?? 0,
      timestamp: new Date(),
      durationMs: performance.now() - started,
    };
  }

  backupEntries(collections: readonly string[]): AsyncIterable<BackupEntry> {
    return this.replica.entries(collections);
  }

  beforeBackup(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * A scheduled backup on a storage driver: once per cluster. The replica that takes the lease
   * `backup` runs it (renewing the lease meanwhile); the others skip this tick. The lease is not
   * released after the run but left to expire, so a replica whose clock lags does not run the same
   * tick again.
   */
  async scheduledBackup(run: () => Promise<unknown>): Promise<unknown> {
    const { driver } = this;
    let lease;
    try {
      lease = await driver.acquireLease(BACKUP_LEASE, BACKUP_LEASE_TTL_MS);
    } catch (error) {
      throw this.ctx.errors.report(
        wrapIo('backup', 'take the backup lease of', driver.location, error),
      );
    }
    if (!lease) {
      this.ctx.logger.log(messages.backupLeaseHeld(driver.location));
      return undefined;
    }
    const held = lease;
    const renewal = setInterval(() => {
      held.renew().catch(() => false);
    }, BACKUP_LEASE_TTL_MS / 3);
    try {
      return await run();
    } finally {
      clearInterval(renewal);
    }
  }

  restoreSourceProblem(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  restore(files: readonly BackupFile[]): Promise<LoadMetadata> {
    return this.ctx.errors.io('restore', 'restore the backup into', this.location, () =>
      this.replica.restoreFiles(files),
    );
  }

  itemPath(adapter: string, stem: string): string {
    return `${this.location} ${adapter}/${stem}`;
  }

  status(checkWritable: boolean): Promise<BackendStatus> {
    let notWritableReason: string | undefined;
    if (checkWritable) {
      // The driver's own view of its connection, when it has one: a lost server shows at once.
      const problem = this.driver.connectionProblem?.();
      if (!this.replica.loaded) notWritableReason = this.replica.notLoadedReason;
      else if (problem !== undefined) {
        notWritableReason = messages.storageDisconnected(this.location, problem);
      }
    }
    return Promise.resolve({
      path: this.location,
      ...(notWritableReason === undefined ? {} : { notWritableReason }),
      ...(this.loadFailure === undefined ? {} : { loadFailure: this.loadFailure }),
      journal: { bytes: 0, pendingItems: 0 },
      disk: null,
      storage: 'driver',
    });
  }

  stopIntake(): void {
    this.replica.stopWatching();
  }

  async close(): Promise<void> {
    await this.replica.close().catch(() => undefined);
  }

  release(): Promise<void> {
    return this.close();
  }
}
