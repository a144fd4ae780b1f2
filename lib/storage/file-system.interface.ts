/**
 * The file-system calls the store makes, and nothing else: the storage layer goes through this
 * interface only, so a test can record every call of a save and replay a crash after any of them
 * (see test/crash-points.spec.ts). The default is {@link NodeFileSystem}.
 */
export interface PersistenceFileSystem {
  /**
   * Opens a file:
   *  - `read`: read-only, never through a symbolic link (ELOOP), never blocking on a FIFO;
   *  - `create`: a new file that must not exist yet (EEXIST), write-only, with `mode`;
   *  - `append`: read-write, created with `mode` when missing, not truncated;
   *  - `directory`: a folder, to fsync its entries.
   */
  open(
    path: string,
    how: 'read' | 'create' | 'append' | 'directory',
    mode?: number,
  ): Promise<PersistenceFile>;
  /**
   * Optional: opens like `append`, but every write through the handle is durable when it resolves
   * (O_DSYNC): its bytes and the file's new size reach the disk, as a write followed by
   * `datasync()` would make them, in one call. The journal commits a record that fits its staging
   * buffer in one such write: one trip to the thread pool per save instead of two. Without it, the
   * journal writes, then calls `datasync()`. A wrapper that intercepts `open()` to see or fail
   * writes must wrap this too (or leave it `undefined`): the journal's commits go through it.
   */
  openSyncedAppend?(path: string, mode?: number): Promise<PersistenceFile>;
  /** Entries of a folder, with their type as seen without following links. */
  readdir(path: string): Promise<DirEntry[]>;
  /** Metadata of a path, without following a final link. */
  lstat(path: string): Promise<FileStat>;
  /**
   * Optional: the path with every symbolic link resolved (realpath(3)); rejects with ENOENT when it
   * does not exist. "Is this inside the store folder" compares real paths with it (`path.util.ts`);
   * without it, the paths as given are compared.
   */
  realpath?(path: string): Promise<string>;
  /** Creates one folder; resolves `false` when it already exists. */
  mkdir(path: string, mode: number): Promise<boolean>;
  rename(from: string, to: string): Promise<void>;
  /**
   * Creates `newPath` as a second name (hard link) of the file `existing`; fails with EEXIST, atomically,
   * when `newPath` already exists (never replaces it). Durable after an fsync of the folder.
   */
  link(existing: string, newPath: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Removes an empty folder. */
  rmdir(path: string): Promise<void>;
  /** Resolves when this process may write into `path` now (access(2) with W_OK); rejects otherwise. */
  access(path: string, how: 'write'): Promise<void>;
  /** Space of the file system holding `path` (statfs(2)). */
  statfs(path: string): Promise<DiskSpace>;
  /**
   * Optional fast path of a whole-file read (item files at load): opens as `read` does (no link, no
   * FIFO block), reads to the end and closes, with no file handle object and no stat. Resolves
   * `undefined` whenever the careful path (open, stat, read, close) must decide: the file is empty,
   * larger than `maxBytes`, or not a regular file. Without it, every read takes the careful path.
   */
  readWhole?(path: string, maxBytes: number): Promise<Buffer | undefined>;
}

/** Space of a file system, in bytes. */
export interface DiskSpace {
  /** Bytes this process may still write (the blocks available to unprivileged users). */
  available: number;
  /** Size of the file system. */
  total: number;
}

export interface PersistenceFile {
  stat(): Promise<FileStat>;
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`; resolves how many were read. */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): Promise<void>;
  truncate(length: number): Promise<void>;
  chmod(mode: number): Promise<void>;
  /** fsync: the file's data, or a folder's entries, reach the disk. */
  sync(): Promise<void>;
  /**
   * fdatasync: the file's data and what reading it back needs (its size) reach the disk, not its
   * times. Optional: without it, `sync()` is used.
   */
  datasync?(): Promise<void>;
  close(): Promise<void>;
}

export interface DirEntry {
  name: string;
  type: EntryType;
}

export type EntryType = 'file' | 'directory' | 'symlink' | 'other';

export interface FileStat {
  type: EntryType;
  size: number;
  /** Permission bits. */
  mode: number;
  /** Number of hard links. */
  nlink: number;
}

/** DI token of the file system (override it in tests: `overrideProvider(PersistenceFileSystem)`). */
export const PersistenceFileSystem = Symbol('PersistenceFileSystem');

/** An error with a Node-style `code`, as the file system throws. */
export function fsError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const error = new Error(`${code}: ${syscall} '${path}'`) as NodeJS.ErrnoException;
  error.code = code;
  error.syscall = syscall;
  error.path = path;
  return error;
}

/** The error code of a file-system error, if any. */
export const errorCode = (error: unknown): string | undefined =>
  (error as NodeJS.ErrnoException | undefined)?.code;
