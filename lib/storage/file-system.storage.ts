import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { ENCRYPTED_SUFFIX, QUARANTINE_DIR } from './on-disk.names';
import { atomicWrite, isTempFileName } from './atomic-write';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { ensureDirectory, fsyncDirectory, listDirectory, statDirectory } from './fs.util';
import { JournalOp, JournalSourceReader, writesFile } from './journal';
import { IoThrottle, mapLimit } from './map-limit.util';
import { readRegularFile } from './safe-read';
import { TimeSlicer } from './event-loop.util';

/** Longest run of listing a folder, or of sorting a segment's ops, before the loop gets a turn. */
const LIST_SLICE_MS = 5;

/** Extensions of the built-in formats. */
const BUILT_IN_EXTENSIONS = ['.json.gz', '.json', '.msgpack', '.jsonz'];

/** How the store's folder is laid out and protected. */
export interface StorageSettings {
  root: string;
  ioConcurrency: number;
  fileMode: number;
  dirMode: number;
  maxFileBytes: number;
}

/** One item file found on disk. */
export interface ItemFile {
  /** File name without extension (see file-name.codec.ts). */
  stem: string;
  extension: string;
  fileName: string;
  path: string;
}

/**
 * Splits an item file name into stem and extension: the built-in ones and `extraExtension` (a custom
 * serializer's), each also with `.enc` when encrypted, longest first. `undefined` for names that are
 * not item files (hidden, temporary, or another extension).
 */
export function parseItemFileName(
  name: string,
  extraExtension?: string,
): { stem: string; extension: string } | undefined {
  if (name.startsWith('.')) return undefined;
  const plain = extraExtension ? [extraExtension, ...BUILT_IN_EXTENSIONS] : BUILT_IN_EXTENSIONS;
  const extensions = [...plain, ...plain.map((ext) => ext + ENCRYPTED_SUFFIX)].sort(
    (a, b) => b.length - a.length,
  );
  const extension = extensions.find((ext) => name.endsWith(ext));
  if (!extension || name.length === extension.length) return undefined;
  return { stem: name.slice(0, -extension.length), extension };
}

/**
 * The store's folder: one folder per collection, one file per item. Every write goes through
 * {@link atomicWrite}; this class decides names and order, and makes folders durable.
 */
export class FileSystemStorage {
  /** Unreadable files left in place: never removed by a checkpoint. */
  private readonly pinned = new Set<string>();
  readonly root: string;

  constructor(
    readonly fs: PersistenceFileSystem,
    readonly settings: StorageSettings,
  ) {
    this.root = settings.root;
  }

  collectionPath(collection: string): string {
    return join(this.root, collection);
  }

  /** True when users other than the owner may write into the store folder. */
  async isWritableByOthers(): Promise<boolean> {
    return ((await statDirectory(this.fs, this.root)).mode & 0o022) !== 0;
  }

  /** Creates the root folder durably. */
  async ensureRoot(): Promise<void> {
    await ensureDirectory(this.fs, this.root, this.settings.dirMode);
  }

  /** Creates the collection folders and removes leftover temporary files; returns those removed. */
  async prepare(collections: readonly string[]): Promise<string[]> {
    const removed: string[] = [];
    for (const dir of [this.root, ...collections.map((c) => this.collectionPath(c))]) {
      await ensureDirectory(this.fs, dir, this.settings.dirMode);
      for (const entry of await listDirectory(this.fs, dir)) {
        if (entry.type === 'file' && isTempFileName(entry.name)) {
          await this.fs.unlink(join(dir, entry.name)).catch((error: unknown) => {
            if (errorCode(error) !== 'ENOENT') throw error;
          });
          removed.push(join(dir, entry.name));
        }
      }
      if (removed.length > 0) await fsyncDirectory(this.fs, dir);
    }
    return removed;
  }

  /** Item files of a collection: built-in extensions and `extraExtension` (a custom serializer's). */
  async list(collection: string, extraExtension?: string): Promise<ItemFile[]> {
    const dir = this.collectionPath(collection);
    const files: ItemFile[] = [];
    const slicer = new TimeSlicer(LIST_SLICE_MS); // a folder can hold tens of thousands of items
    for (const entry of await listDirectory(this.fs, dir)) {
      const wait = slicer.yieldIfDue();
      if (wait) await wait;
      const parsed =
        entry.type === 'file' ? parseItemFileName(entry.name, extraExtension) : undefined;
      if (parsed) {
        files.push({ ...parsed, fileName: entry.name, path: join(dir, entry.name) });
      }
    }
    return files;
  }

  pin(path: string): void {
    this.pinned.add(path);
  }

  unpin(path: string): void {
    this.pinned.delete(path);
  }

  /** The names of the pinned files of `collection`: those this code could not read. */
  pinnedIn(collection: string): string[] {
    const dir = this.collectionPath(collection);
    const names: string[] = [];
    for (const path of this.pinned) if (dirname(path) === dir) names.push(basename(path));
    return names;
  }

  /** Reads an item file: a regular file only, never through a link, never over the size limit. */
  read(path: string): Promise<Buffer> {
    return readRegularFile(this.fs, path, this.settings.maxFileBytes);
  }

  /**
   * Brings the item files up to date with journal operations (the checkpoint): the last operation on
   * each file wins; files are written atomically and each touched folder is fsynced once at the end.
   * Committed ops' bytes are read back from the journal files they point into (each opened once),
   * one file at a time per worker. Pinned files are never removed.
   */
  async apply(ops: readonly JournalOp[], throttle?: IoThrottle): Promise<void> {
    const last = new Map<string, JournalOp>();
    const slicer = new TimeSlicer(LIST_SLICE_MS); // a segment can hold tens of thousands of ops
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      last.set(`${op.collection}\0${op.fileName}`, op); // NUL is in no collection or file name
      if (i % 512 === 511) {
        const wait = slicer.yieldIfDue();
        if (wait) await wait;
      }
    }
    const touched = new Set<string>();
    const final = [...last.values()];
    const journal = new JournalSourceReader(this.fs);
    try {
      await mapLimit(
        final,
        this.settings.ioConcurrency,
        async (op) => {
          const dir = this.collectionPath(op.collection);
          const path = join(dir, op.fileName);
          touched.add(dir);
          const data = writesFile(op) ? await journal.read(op) : undefined;
          if (data) {
            await atomicWrite(this.fs, path, data, {
              syncDirectory: false,
              mode: this.settings.fileMode,
            });
          } else if (!this.pinned.has(path)) {
            await this.fs.unlink(path).catch((error: unknown) => {
              if (errorCode(error) !== 'ENOENT') throw error;
            });
          }
        },
        throttle,
      );
    } finally {
      await journal.close();
    }
    for (const dir of touched) await fsyncDirectory(this.fs, dir);
  }

  /**
   * Moves an unreadable file to `.quarantine/<collection>/` under a name that is never reused, so no
   * save can overwrite it and nothing is deleted. Returns where it went.
   */
  async quarantine(collection: string, file: ItemFile): Promise<string> {
    const { dir, target } = await this.quarantineTarget(collection, file.fileName);
    await this.fs.rename(file.path, target);
    await fsyncDirectory(this.fs, dir);
    await fsyncDirectory(this.fs, this.collectionPath(collection));
    return target;
  }

  /**
   * Puts a second name of an item file into `.quarantine/<collection>/` (a hard link: the file stays
   * where it is until whatever replaces it runs). Returns the new name.
   */
  async quarantineLink(collection: string, fileName: string): Promise<string> {
    const { dir, target } = await this.quarantineTarget(collection, fileName);
    await this.fs.link(join(this.collectionPath(collection), fileName), target);
    await fsyncDirectory(this.fs, dir);
    return target;
  }

  /** `.quarantine/<collection>/` (created) and a name in it that is never reused. */
  private async quarantineTarget(
    collection: string,
    fileName: string,
  ): Promise<{ dir: string; target: string }> {
    const dir = join(this.root, QUARANTINE_DIR, collection);
    await ensureDirectory(this.fs, dir, this.settings.dirMode);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    return { dir, target: join(dir, `${stamp}-${randomBytes(4).toString('hex')}-${fileName}`) };
  }
}
