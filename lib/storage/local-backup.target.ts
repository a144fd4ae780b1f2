import { join } from 'node:path';
import {
  BackupContents,
  BackupEntry,
  BackupManifest,
  BackupTarget,
  StoredBackup,
} from '../interfaces/backup-target.interface';
import { BACKUP_MANIFEST_FILE } from '../persistence.constants';
import { isBackupId } from './backup-id.util';
import { DIR_MODE, FILE_MODE } from './on-disk.names';
import { BackupProblem, parseManifest, writeBackupFolder } from './backup.storage';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { ensureDirectory, fsyncDirectory, listDirectory, removeTree } from './fs.util';
import { readRegularFile, UnsafeFileError } from './safe-read';
import { claimWriterTag, isWriterGone, WRITER_TAG_PATTERN } from './writer.tag';

/** Settings of a {@link LocalBackupTarget}. */
export interface LocalBackupTargetOptions {
  /** Absolute path of the folder holding the backups, one sub-folder per backup. */
  directory: string;
  /** Permission bits of the files written. @default 0o600 */
  fileMode?: number;
  /** Permission bits of the folders created. @default 0o700 */
  dirMode?: number;
  /** Largest manifest read, in bytes. @default 67108864 (64 MiB) */
  maxManifestBytes?: number;
}

/**
 * The default {@link BackupTarget}: a folder on the local file system, through
 * `PersistenceFileSystem` and `atomicWrite()`.
 *
 * ```
 * <directory>/
 *   <id>/                          a complete backup: the manifest, one folder per adapter
 *   .<id>.backup-<writer>/         only while a backup is written (renamed to <id>/ when complete)
 *   .<id>.removing-<writer>/       only while a backup is removed (renamed away first)
 * ```
 *
 * `<writer>` is `<host hash>-<pid>-<token>` (`writer.tag.ts`): several stores, processes or replicas
 * may write into one folder at once, and each removes a hidden folder only when its writer is
 * provably gone (this host, process not running), never another live writer's.
 *
 * Unchanged files are hard links to the same file of the base backup (verified byte for byte first),
 * so a differential backup stores only what changed and still stands on its own: removing the base
 * removes one name of each shared file, never the file. Where a link cannot be made (another file
 * system, a link limit), the file is copied.
 */
export class LocalBackupTarget implements BackupTarget {
  readonly targetVersion = 1;
  readonly location: string;

  constructor(
    private readonly fs: PersistenceFileSystem,
    private readonly options: LocalBackupTargetOptions,
  ) {
    this.location = options.directory;
  }

  private get modes(): { fileMode: number; dirMode: number } {
    return {
      fileMode: this.options.fileMode ?? FILE_MODE,
      dirMode: this.options.dirMode ?? DIR_MODE,
    };
  }

  private get maxManifestBytes(): number {
    return this.options.maxManifestBytes ?? 64 * 1024 * 1024;
  }

  /** Folders named as backup ids whose manifest can be read and names that same id. */
  async list(): Promise<StoredBackup[]> {
    const found: StoredBackup[] = [];
    for (const entry of await listDirectory(this.fs, this.location)) {
      if (entry.type !== 'directory' || !isBackupId(entry.name)) continue;
      const manifest = await this.readManifest(entry.name).catch(() => undefined);
      if (manifest?.id === entry.name) found.push({ id: entry.name, manifest });
    }
    return found;
  }

  async write(
    id: string,
    header: Omit<BackupManifest, 'files' | 'newBytes'>,
    entries: AsyncIterable<BackupEntry>,
    base?: StoredBackup,
  ): Promise<BackupManifest> {
    this.assertId(id);
    await ensureDirectory(this.fs, this.location, this.modes.dirMode);
    await this.removeLeftovers();
    const writer = claimWriterTag();
    try {
      return await writeBackupFolder(
        this.fs,
        this.modes,
        join(this.location, id),
        `.${id}.backup-${writer.tag}`,
        header,
        entries,
        base && isBackupId(base.id)
          ? { folder: join(this.location, base.id), manifest: base.manifest }
          : undefined,
      );
    } finally {
      writer.release();
    }
  }

  /**
   * Reads a backup: the manifest first, then every file of its adapter folders, never through a
   * symbolic link. A file with several names (hard links) is read only when the manifest lists it (it
   * is then checked against its checksum like any other); anything else is refused.
   */
  async read(id: string, limits: { maxFileBytes: number }): Promise<BackupContents> {
    this.assertId(id);
    const folder = join(this.location, id);
    const stat = await this.fs.lstat(folder).catch((error: unknown) => {
      throw errorCode(error) === 'ENOENT' ? new BackupProblem('it does not exist') : error;
    });
    if (stat.type !== 'directory') throw new BackupProblem('it is not a folder');
    const manifest = await this.readManifest(id);
    if (manifest.id !== id) {
      throw new BackupProblem(
        `its manifest ${BACKUP_MANIFEST_FILE} names another backup (${String(manifest.id)})`,
        BACKUP_MANIFEST_FILE,
      );
    }
    const listed = new Set(manifest.files.map((f) => f.path));
    const files: BackupContents['files'] = [];
    for (const entry of await this.fs.readdir(folder)) {
      if (entry.name === BACKUP_MANIFEST_FILE) continue;
      if (entry.type !== 'directory') {
        throw new BackupProblem(`it holds "${entry.name}", which is not a folder of item files`);
      }
      for (const item of await this.fs.readdir(join(folder, entry.name))) {
        const path = `${entry.name}/${item.name}`;
        if (item.type !== 'file') throw new BackupProblem(`"${path}" is not an item file`);
        const data = await readRegularFile(
          this.fs,
          join(folder, entry.name, item.name),
          limits.maxFileBytes,
          { singleLink: !listed.has(path) },
        ).catch((error: unknown) => {
          throw error instanceof UnsafeFileError
            ? new BackupProblem(`"${path}" cannot be restored: ${error.message}`)
            : error;
        });
        files.push({ path, data });
      }
    }
    return { manifest, files };
  }

  /**
   * Renames the backup to a hidden name (one atomic step: it is no longer listed), then deletes it.
   * A backup already gone (another replica's retention removed it first) is not an error.
   */
  async remove(id: string): Promise<void> {
    this.assertId(id);
    const writer = claimWriterTag();
    try {
      const hidden = join(this.location, `.${id}.removing-${writer.tag}`);
      try {
        await this.fs.rename(join(this.location, id), hidden);
      } catch (error) {
        if (errorCode(error) === 'ENOENT') return;
        throw error;
      }
      await fsyncDirectory(this.fs, this.location);
      await removeTree(this.fs, hidden);
      await fsyncDirectory(this.fs, this.location);
    } finally {
      writer.release();
    }
  }

  private async readManifest(id: string): Promise<BackupManifest> {
    const data = await readRegularFile(
      this.fs,
      join(this.location, id, BACKUP_MANIFEST_FILE),
      this.maxManifestBytes,
      { singleLink: true },
    ).catch((error: unknown) => {
      throw new BackupProblem(
        `its ${BACKUP_MANIFEST_FILE} cannot be read (${error instanceof Error ? error.message : String(error)})`,
      );
    });
    return parseManifest(data);
  }

  /**
   * Hidden folders left by writes and removals that were cut off: only those whose writer is provably
   * gone ({@link isWriterGone}). Another live writer's folders (a replica, another store or process
   * sharing the directory) are never touched; nor are folders named otherwise (an older release's,
   * whose writer cannot be told).
   */
  private async removeLeftovers(): Promise<void> {
    const pattern = new RegExp(`^\\.(.+)\\.(?:backup|removing)-(${WRITER_TAG_PATTERN})$`);
    let removed = false;
    for (const entry of await listDirectory(this.fs, this.location)) {
      const match = pattern.exec(entry.name);
      if (entry.type !== 'directory' || !match || !isBackupId(match[1])) continue;
      if (!isWriterGone(match[2])) continue;
      // Another writer may be removing the same leftover: what is left is removed next time.
      removed = await removeTree(this.fs, join(this.location, entry.name)).then(
        () => true,
        () => removed,
      );
    }
    if (removed) await fsyncDirectory(this.fs, this.location);
  }

  private assertId(id: string): void {
    if (!isBackupId(id)) throw new BackupProblem(`"${String(id)}" is not a backup id`);
  }
}
