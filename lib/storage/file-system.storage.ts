import { randomBytes } from 'node:crypto';
import { Dirent } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { QUARANTINE_DIR } from '../persistence.constants';
import { atomicWrite, fsyncDirectory, isTempFileName } from './atomic-write';
import { ENCRYPTED_SUFFIX } from './item-file.codec';
import { mapLimit } from './map-limit.util';
import { readRegularFile } from './safe-read';

/** Default folder permissions of the store. */
export const DIR_MODE = 0o700;

/** Extensions of the built-in formats. */
const BUILT_IN_EXTENSIONS = ['.json.gz', '.json'];

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

/** A file to write: its name inside a collection folder and its bytes. */
export interface FileToWrite {
  fileName: string;
  data: Uint8Array;
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

const isMissing = (error: unknown): boolean =>
  (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

/**
 * The store's folder on the local file system: one folder per collection, one file per item. Every
 * write goes through {@link atomicWrite}; this class only decides names and order.
 */
export class FileSystemStorage {
  /** Unreadable files that could not be quarantined: never removed by a save. */
  private readonly pinned = new Set<string>();

  readonly root: string;
  private readonly ioConcurrency: number;

  constructor(readonly settings: StorageSettings) {
    this.root = settings.root;
    this.ioConcurrency = settings.ioConcurrency;
  }

  collectionPath(collection: string): string {
    return join(this.root, collection);
  }

  /** True when users other than the owner may write into the store folder. */
  async isWritableByOthers(): Promise<boolean> {
    return ((await stat(this.root)).mode & 0o022) !== 0;
  }

  /** Creates the root folder. Returns the leftover temporary files it removed. */
  async prepare(collections: readonly string[]): Promise<string[]> {
    await mkdir(this.root, { recursive: true, mode: this.settings.dirMode });
    const removed: string[] = [];
    for (const dir of [this.root, ...collections.map((c) => this.collectionPath(c))]) {
      for (const entry of await this.entries(dir)) {
        if (entry.isFile() && isTempFileName(entry.name)) {
          await unlink(join(dir, entry.name)).catch((error: unknown) => {
            if (!isMissing(error)) throw error;
          });
          removed.push(join(dir, entry.name));
        }
      }
    }
    return removed;
  }

  /** Item files of a collection: built-in extensions and `extraExtension` (a custom serializer's). */
  async list(collection: string, extraExtension?: string): Promise<ItemFile[]> {
    const dir = this.collectionPath(collection);
    const files: ItemFile[] = [];
    for (const entry of await this.entries(dir)) {
      const parsed = entry.isFile() ? parseItemFileName(entry.name, extraExtension) : undefined;
      if (parsed) {
        files.push({ ...parsed, fileName: entry.name, path: join(dir, entry.name) });
      }
    }
    return files;
  }

  pin(path: string): void {
    this.pinned.add(path);
  }

  /** Reads an item file: a regular file only, never through a link, never over the size limit. */
  read(path: string): Promise<Buffer> {
    return readRegularFile(path, this.settings.maxFileBytes);
  }

  /** Writes files into a collection's folder atomically, then makes the folder durable once. */
  async write(collection: string, files: readonly FileToWrite[]): Promise<void> {
    const dir = this.collectionPath(collection);
    await mkdir(dir, { recursive: true, mode: this.settings.dirMode });
    await mapLimit(files, this.ioConcurrency, (file) =>
      atomicWrite(join(dir, file.fileName), file.data, {
        syncDirectory: false,
        mode: this.settings.fileMode,
      }),
    );
    await fsyncDirectory(dir);
  }

  /** Removes item files of a collection, then makes the folder durable once. */
  async remove(collection: string, fileNames: readonly string[]): Promise<void> {
    const dir = this.collectionPath(collection);
    const removable = fileNames.filter((name) => !this.pinned.has(join(dir, name)));
    if (removable.length === 0) return;
    await mapLimit(removable, this.ioConcurrency, (name) =>
      unlink(join(dir, name)).catch((error: unknown) => {
        if (!isMissing(error)) throw error;
      }),
    );
    await fsyncDirectory(dir);
  }

  /**
   * Moves an unreadable file to `.quarantine/<collection>/` under a name that is never reused, so the
   * next save cannot overwrite it and nothing is deleted. Returns where it went.
   */
  async quarantine(collection: string, file: ItemFile): Promise<string> {
    const dir = join(this.root, QUARANTINE_DIR, collection);
    await mkdir(dir, { recursive: true, mode: this.settings.dirMode });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const target = join(dir, `${stamp}-${randomBytes(4).toString('hex')}-${file.fileName}`);
    await rename(file.path, target);
    await fsyncDirectory(dir);
    await fsyncDirectory(this.collectionPath(collection));
    return target;
  }

  /** Removes the folders of the given collections. */
  async clear(collections: readonly string[]): Promise<void> {
    for (const collection of collections) {
      await rm(this.collectionPath(collection), { recursive: true, force: true });
    }
    await fsyncDirectory(this.root);
  }

  private async entries(dir: string): Promise<Dirent[]> {
    try {
      return await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return [];
      throw error;
    }
  }
}
