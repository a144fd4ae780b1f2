import { PersistenceLogger } from '../events/persistence.logger';
import type { SchedulerRegistry } from '@nestjs/schedule';
import { basename, dirname, join, resolve } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { BackupEntry, BackupTarget, StoredBackup } from '../interfaces/backup-target.interface';
import { BackupInfo, BackupMetadata } from '../interfaces/persistence-metadata.interface';
import { ResolvedBackupOptions } from '../interfaces/persistence-module-options.interface';
import { BACKUP_MANIFEST_VERSION } from '../persistence.constants';
import * as messages from '../persistence.messages';
import { backupIdTime, isBackupId, newBackupId } from '../storage/backup-id.util';
import { BackupFile, checkBackupContents } from '../storage/backup.storage';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { LocalBackupTarget } from '../storage/local-backup.target';
import { BackupScheduler } from './backup.scheduler';
import { BackupVerifier } from './backup.verifier';

/** What the orchestrator needs from the store. */
export interface BackupHost {
  readonly fs: PersistenceFileSystem;
  /** Permission bits of what a local backup target writes. */
  readonly modes: { fileMode: number; dirMode: number };
  /** The committed items of `collections`, as backup entries (item files, or a driver's records). */
  entries(collections: readonly string[]): AsyncIterable<BackupEntry>;
  /** Absolute path of the store folder, or the storage driver's location. */
  readonly storePath: string;
  readonly maxFileBytes: number;
  /** The adapters' folder names. */
  collections(): string[];
  /** The current serializer's extension. */
  extension(): string | undefined;
  /** Writes the journal into the item files (reports its own failure). */
  checkpoint(): Promise<void>;
  /** The checks of one backup's files as they are written. */
  verifier(): BackupVerifier;
  /** Reports an error as `persistence.error` and returns it. */
  report(error: PersistenceError): PersistenceError;
  /** The store's logger. */
  logger: PersistenceLogger;
}

/**
 * Backups into `backups.directory` (or `backups.target`): the schedule, `backup()` without a path
 * (differential: unchanged files shared with the previous backup), retention, `listBackups()` and
 * reading a backup back for `restore(id)`. The store runs `backupNow()` in its operation queue.
 */
export class BackupOrchestrator {
  readonly target?: BackupTarget;
  private scheduler?: BackupScheduler;

  constructor(
    private readonly options: ResolvedBackupOptions | undefined,
    private readonly host: BackupHost,
  ) {
    if (options?.target) {
      this.target = options.target;
    } else if (options?.directory) {
      this.target = new LocalBackupTarget(host.fs, {
        directory: options.directory,
        fileMode: host.modes.fileMode,
        dirMode: host.modes.dirMode,
        maxManifestBytes: host.maxFileBytes,
      });
    }
  }

  /**
   * Starts the schedule (`backups.cron`), if any: `run` is the store's `backup()`. Not on a read-only
   * store, which never writes.
   */
  startSchedule(registry: SchedulerRegistry, readOnly: boolean, run: () => Promise<unknown>): void {
    const cron = this.options?.cron;
    if (cron === undefined) return;
    if (readOnly) {
      this.host.logger.warn(messages.scheduledBackupReadOnly());
      return;
    }
    this.scheduler = new BackupScheduler(registry, cron, run, this.host.logger);
    this.scheduler.start();
  }

  stopSchedule(): void {
    this.scheduler?.stop();
  }

  /**
   * The id of the backup `source` names, when it names one of the target: the id itself, or (local
   * folder) the path of a backup folder in `backups.directory`. `undefined`: a plain path.
   */
  backupIdOf(source: string): string | undefined {
    if (!this.target) return undefined;
    if (isBackupId(source)) return source;
    const directory = this.options?.directory;
    if (this.options?.target || !directory) return undefined;
    const path = resolve(source);
    return dirname(path) === directory && isBackupId(basename(path)) ? basename(path) : undefined;
  }

  /** Where the backup `id` is, for messages and metadata. */
  locate(id: string): string {
    return this.target instanceof LocalBackupTarget
      ? join(this.target.location, id)
      : `${this.target?.location ?? ''}/${id}`;
  }

  /**
   * A new backup into the target, sharing unchanged files with this store's newest backup, then
   * retention. Runs in the store's operation queue.
   */
  async backupNow(): Promise<BackupMetadata> {
    const target = this.target;
    if (!target) {
      throw this.host.report(
        new PersistenceError(
          PersistenceErrorCode.InvalidBackupDestination,
          messages.backupsNotConfigured(),
          { operation: 'backup' },
        ),
      );
    }
    const started = performance.now();
    await this.host.checkpoint();
    const { id, manifest, own } = await this.io(
      'write a backup into',
      target.location,
      async () => {
        const existing = await target.list();
        const own = this.own(existing);
        const id = newBackupId(
          new Date(),
          existing.map((b) => b.id),
        );
        const collections = this.host.collections();
        const verifier = this.host.verifier();
        const manifest = await target.write(
          id,
          {
            version: BACKUP_MANIFEST_VERSION,
            createdAt: new Date().toISOString(),
            collections,
            id,
            store: this.host.storePath,
            ...(own[0] ? { base: own[0].id } : {}),
            verified: true,
            unverified: verifier.unverified,
          },
          verifier.verify(this.host.entries(collections)),
          own[0],
        );
        // Whatever the target wrote into its manifest, the checks' result is what this backup holds.
        return {
          id,
          manifest: { ...manifest, verified: true, unverified: verifier.unverified },
          own,
        };
      },
    );
    if (manifest.unverified.length > 0) {
      this.host.logger.warn(messages.backupUnverified(this.locate(id), manifest.unverified.length));
    }
    await this.applyRetention({ id, manifest }, own);
    const size = manifest.files.reduce((sum, f) => sum + f.size, 0);
    return {
      path: this.locate(id),
      id,
      files: manifest.files.length,
      size,
      newBytes: manifest.newBytes ?? size,
      unverified: manifest.unverified,
      timestamp: new Date(),
      durationMs: performance.now() - started,
    };
  }

  /** Every backup of the target, newest first. */
  async list(): Promise<BackupInfo[]> {
    const target = this.target;
    if (!target) return [];
    const found = await this.io('list the backups in', target.location, () => target.list());
    return found
      .filter((b) => isBackupId(b.id))
      .sort((a, b) => (a.id < b.id ? 1 : -1))
      .map(backupInfoOf);
  }

  /**
   * Reads the backup `id` back and checks it against its manifest (names, sizes, checksums); throws a
   * BackupProblem (or the target's error) when it is missing or altered. Items are checked by the store.
   */
  async read(id: string): Promise<BackupFile[]> {
    const contents = await this.target!.read(id, { maxFileBytes: this.host.maxFileBytes });
    return checkBackupContents(contents, this.host.collections(), this.host.extension());
  }

  /** This store's backups (by name, manifest id and store), newest first. */
  private own(backups: readonly StoredBackup[]): StoredBackup[] {
    return backups
      .filter(
        (b) =>
          isBackupId(b.id) && b.manifest.id === b.id && b.manifest.store === this.host.storePath,
      )
      .sort((a, b) => (a.id < b.id ? 1 : -1));
  }

  /**
   * Retention after `written` (just written, every file checked): walking this store's `older`
   * backups newest first, only verified ones (written by a release that checks every file as it writes it)
   * count towards `keep`; those older than the `keep`-th verified one are removed. The new backup is
   * always the first counted, so the newest backup that restores is never removed, and a backup that
   * was not verified never takes the place of one that was. A failure is reported, the backup stands.
   */
  private async applyRetention(
    written: StoredBackup,
    older: readonly StoredBackup[],
  ): Promise<void> {
    const keep = this.options?.keep;
    if (keep === undefined) return;
    let counted = 1;
    for (const old of older) {
      if (old.id === written.id) continue;
      if (counted < keep) {
        if (old.manifest.verified === true) counted++;
        continue;
      }
      try {
        await this.target!.remove(old.id);
        this.host.logger.log(messages.backupVerifiedRetention(this.locate(old.id), keep));
      } catch (error) {
        this.host.report(
          new PersistenceError(
            PersistenceErrorCode.IoFailed,
            messages.backupRetentionFailed(this.locate(old.id), messages.reasonOf(error)),
            { operation: 'backup', path: this.locate(old.id), cause: error },
          ),
        );
      }
    }
  }

  private async io<T>(action: string, path: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw this.host.report(
        error instanceof PersistenceError
          ? error
          : new PersistenceError(
              PersistenceErrorCode.IoFailed,
              messages.ioFailed(action, path, messages.reasonOf(error)),
              { operation: 'backup', path, cause: error },
            ),
      );
    }
  }
}

/** What `listBackups()` says of one backup. */
export function backupInfoOf({ id, manifest }: StoredBackup): BackupInfo {
  const bytes = manifest.files.reduce((sum, f) => sum + f.size, 0);
  const time = new Date(manifest.createdAt);
  return {
    id,
    time: Number.isNaN(time.getTime()) ? backupIdTime(id) : time,
    files: manifest.files.length,
    bytes,
    newBytes: manifest.newBytes ?? bytes,
    base: manifest.base ?? null,
    store: manifest.store ?? null,
    verified: manifest.verified === true,
    unverified: manifest.unverified?.length ?? 0,
  };
}
