import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { BACKUP_MANIFEST_FILE } from '../persistence.constants';
import { isBackupId } from '../storage/backup-id.util';
import { BackupFile, checkBackupContents, readBackup } from '../storage/backup.storage';
import { LocalBackupTarget } from '../storage/local-backup.target';
import { JOURNAL_FILE, QUARANTINE_DIR } from '../storage/on-disk.names';
import { DEFAULT_OPTIONS } from '../store/persistence.options';
import { ADAPTER_NAME } from '../store/adapter.resolver';
import { errorCode, PersistenceFileSystem } from '../storage/file-system.interface';
import { FileSystemStorage, ItemFile } from '../storage/file-system.storage';
import { exists, folderStat, listDirectory } from '../storage/fs.util';
import { JOURNAL_HEADER_BYTES, JournalOp, readAllSegments, ReadSegment } from '../storage/journal';
import { NodeFileSystem } from '../storage/node-file-system';
import { isAlive, LockOwner, StoreLock } from '../storage/store.lock';
import { CliError } from './cli.error';
import { noStore } from './cli.messages';

/** Who holds the store, from its `.lock`. */
export interface LockState extends Omit<LockOwner, 'token'> {
  /** The process is running (or, on another host, cannot be checked and counts as running). */
  running: boolean;
  sameHost: boolean;
}

/** The journal's committed records not yet checkpointed, and what follows them. */
export interface JournalState {
  records: JournalOp[][];
  /** Bytes of the complete records. */
  bytes: number;
  /** Bytes after the last complete record: a torn tail from a crash, cut off at the next start. */
  tornBytes: number;
  /** Each journal file as the start judges it (sealed segments, then the active journal). */
  segments: ReadSegment[];
}

/** A file under `.quarantine/<collection>/`. */
export interface QuarantinedFile {
  collection: string;
  /** Its name in quarantine: `<ISO time>-<random>-<original name>`. */
  name: string;
  /** The item file name it had, when the name has the quarantine form. */
  originalName?: string;
  /** When it was set aside (ISO), read from its name. */
  quarantinedAt?: string;
  path: string;
  size: number;
}

/** `2026-11-24T21-00-00-000Z-0a1b2c3d-sess-1.json`, as written by `FileSystemStorage.quarantine()`. */
const QUARANTINE_NAME = /^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})-(\d{3})Z-[0-9a-f]{8}-(.+)$/;

/**
 * A store folder seen from outside the application that owns it: read with the store's own storage
 * code (no links followed, size limits), changing nothing.
 */
export class StoreFolder {
  readonly root: string;
  readonly storage: FileSystemStorage;

  constructor(
    path: string,
    readonly fs: PersistenceFileSystem = new NodeFileSystem(),
  ) {
    this.root = resolve(path);
    this.storage = new FileSystemStorage(fs, {
      root: this.root,
      ioConcurrency: DEFAULT_OPTIONS.ioConcurrency,
      fileMode: DEFAULT_OPTIONS.fileMode,
      dirMode: DEFAULT_OPTIONS.dirMode,
      maxFileBytes: DEFAULT_OPTIONS.limits.maxFileBytes,
    });
  }

  /**
   * False when nothing is at the path; throws when something that is not a folder is. A symbolic link
   * to a folder is that folder, as the application accepts it (`folderStat`).
   */
  async exists(): Promise<boolean> {
    try {
      const stat = await folderStat(this.fs, this.root);
      if (stat.type !== 'directory') throw new CliError(noStore(this.root, 'it is not a folder'));
      return true;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return false;
      throw error;
    }
  }

  /** True when the folder is a backup: it holds a backup manifest. */
  async isBackup(): Promise<boolean> {
    return exists(this.fs, join(this.root, BACKUP_MANIFEST_FILE));
  }

  /**
   * The files of a backup folder, read and checked (shape, manifest, checksums) by the code a
   * restore uses: a backup in a backups folder (named by its id) as `restore(id)` reads it, any other
   * as `restore(folder)` does.
   */
  async backupFiles(collections: readonly string[]): Promise<BackupFile[]> {
    const id = basename(this.root);
    const maxFileBytes = DEFAULT_OPTIONS.limits.maxFileBytes;
    if (isBackupId(id)) {
      const target = new LocalBackupTarget(this.fs, { directory: dirname(this.root) });
      return checkBackupContents(await target.read(id, { maxFileBytes }), collections, undefined);
    }
    return readBackup(this.fs, this.root, collections, undefined, maxFileBytes);
  }

  /** Throws a clear error unless the path is a folder. */
  async assertExists(): Promise<void> {
    if (!(await this.exists())) throw new CliError(noStore(this.root, 'it does not exist'));
  }

  /**
   * Collection folders (named like adapters), sorted; `others`: other entries that are not the
   * store's own (hidden names are the store's: `.journal`, `.lock`, `.quarantine`, …).
   */
  async collections(): Promise<{ names: string[]; others: string[] }> {
    const names: string[] = [];
    const others: string[] = [];
    for (const entry of await listDirectory(this.fs, this.root)) {
      if (entry.name.startsWith('.')) continue;
      if (entry.type === 'directory' && ADAPTER_NAME.test(entry.name)) names.push(entry.name);
      else others.push(entry.name);
    }
    return { names: names.sort(), others: others.sort() };
  }

  /** Item files of a collection (built-in extensions, plain or encrypted), sorted by name. */
  async itemFiles(collection: string): Promise<ItemFile[]> {
    const files = await this.storage.list(collection);
    return files.sort((a, b) => (a.fileName < b.fileName ? -1 : a.fileName > b.fileName ? 1 : 0));
  }

  /** Entries of a collection folder that the store ignores (other names, links, folders). */
  async ignoredEntries(collection: string): Promise<number> {
    const all = await listDirectory(this.fs, this.storage.collectionPath(collection));
    return all.length - (await this.itemFiles(collection)).length;
  }

  /** Reads a file as the store does: regular files only, no links, the default size limit. */
  read(path: string): Promise<Buffer> {
    return this.storage.read(path);
  }

  async journal(): Promise<JournalState> {
    // Sealed segments (not yet checkpointed) first, then the active journal.
    const segments = await readAllSegments(this.fs, join(this.root, JOURNAL_FILE));
    return {
      records: segments.flatMap((segment) => segment.records),
      // A file header is not a record.
      bytes: segments.reduce(
        (sum, segment) => sum + Math.max(0, segment.validLength - JOURNAL_HEADER_BYTES),
        0,
      ),
      tornBytes: segments.reduce((sum, segment) => sum + segment.tornTailBytes, 0),
      segments,
    };
  }

  async quarantined(): Promise<QuarantinedFile[]> {
    const base = join(this.root, QUARANTINE_DIR);
    const files: QuarantinedFile[] = [];
    for (const dir of await listDirectory(this.fs, base)) {
      if (dir.type !== 'directory') continue;
      for (const entry of await listDirectory(this.fs, join(base, dir.name))) {
        if (entry.type !== 'file') continue;
        const path = join(base, dir.name, entry.name);
        const size = (await this.fs.lstat(path)).size;
        const match = QUARANTINE_NAME.exec(entry.name);
        files.push({
          collection: dir.name,
          name: entry.name,
          originalName: match?.[6],
          quarantinedAt: match
            ? `${match[1]}T${match[2]}:${match[3]}:${match[4]}.${match[5]}Z`
            : undefined,
          path,
          size,
        });
      }
    }
    return files.sort((a, b) =>
      a.collection === b.collection
        ? a.name.localeCompare(b.name)
        : a.collection.localeCompare(b.collection),
    );
  }

  /** Who holds the store, or `undefined` when no `.lock` exists (or it cannot be read). */
  async lock(): Promise<LockState | undefined> {
    const owner = await new StoreLock(this.fs, this.root, DEFAULT_OPTIONS.fileMode).currentOwner();
    if (!owner) return undefined;
    const { pid, host, since } = owner;
    return { pid, host, since, running: isAlive(owner), sameHost: host === hostname() };
  }
}
