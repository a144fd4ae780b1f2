import {
  close as closeFd,
  constants,
  Dirent,
  open as openFd,
  read as readFd,
  Stats,
} from 'node:fs';
import {
  access,
  FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  rmdir,
  statfs,
  unlink,
} from 'node:fs/promises';
import { FILE_MODE } from './on-disk.names';
import {
  DirEntry,
  DiskSpace,
  EntryType,
  FileStat,
  fsError,
  PersistenceFile,
  PersistenceFileSystem,
} from './file-system.interface';

const typeOf = (entry: Dirent | Stats): EntryType =>
  entry.isFile()
    ? 'file'
    : entry.isDirectory()
      ? 'directory'
      : entry.isSymbolicLink()
        ? 'symlink'
        : 'other';

const statOf = (stats: Stats): FileStat => ({
  type: typeOf(stats),
  size: stats.size,
  mode: stats.mode & 0o7777,
  nlink: stats.nlink,
});

const FLAGS = {
  read: constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
  create: constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
  append: constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW,
  directory: constants.O_RDONLY | constants.O_DIRECTORY,
} as const;

/** O_DSYNC, or 0 where the platform has no such flag. */
const SYNCED_WRITES: number = typeof constants.O_DSYNC === 'number' ? constants.O_DSYNC : 0;

class NodeFile implements PersistenceFile {
  constructor(private readonly handle: FileHandle) {}

  async stat(): Promise<FileStat> {
    return statOf(await this.handle.stat());
  }

  async read(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<number> {
    return (await this.handle.read(buffer, offset, length, position)).bytesRead;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await this.handle.write(
        data,
        written,
        data.length - written,
        position + written,
      );
      written += bytesWritten;
    }
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  chmod(mode: number): Promise<void> {
    return this.handle.chmod(mode);
  }

  sync(): Promise<void> {
    return this.handle.sync();
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** Size of the reusable buffers whole-file reads start in (most item files fit). */
const SCRATCH_BYTES = 64 * 1024;
/** Scratch buffers not in use, shared by every store of the process (at most {@link SCRATCH_KEPT}). */
const scratch: Buffer[] = [];
const SCRATCH_KEPT = 32;
/** Past this size the careful path reads the file (it allocates exactly the file's size once). */
const WHOLE_READ_MAX = 1024 * 1024;
/** Read errors after which the careful path decides (a folder, a FIFO, a device). */
const NOT_A_PLAIN_READ = new Set(['EISDIR', 'ESPIPE', 'EAGAIN', 'EWOULDBLOCK', 'EINVAL']);

/**
 * Reads a whole file with the callback API: open, read until the end, close; three trips to the
 * thread pool instead of the four (and the file handle object) of open, stat, read, close. Resolves
 * `undefined` when the careful path must decide (see {@link PersistenceFileSystem.readWhole}), or
 * past {@link WHOLE_READ_MAX}.
 */
function readWhole(path: string, maxBytes: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    openFd(path, FLAGS.read, (openError, fd) => {
      if (openError) {
        reject(openError);
        return;
      }
      let buffer = scratch.pop() ?? Buffer.allocUnsafeSlow(SCRATCH_BYTES);
      let length = 0;
      const finish = (error: NodeJS.ErrnoException | null, result?: Buffer): void => {
        if (buffer.length === SCRATCH_BYTES && scratch.length < SCRATCH_KEPT) scratch.push(buffer);
        closeFd(fd, (closeError) => {
          if (error) reject(error);
          else if (closeError) reject(closeError);
          else resolve(result);
        });
      };
      const next = (): void => {
        if (length === buffer.length) {
          if (length > maxBytes || length >= WHOLE_READ_MAX) {
            finish(null, undefined);
            return;
          }
          const bigger = Buffer.allocUnsafeSlow(Math.min(length * 2, maxBytes + 1, WHOLE_READ_MAX));
          buffer.copy(bigger, 0, 0, length);
          if (buffer.length === SCRATCH_BYTES && scratch.length < SCRATCH_KEPT) {
            scratch.push(buffer);
          }
          buffer = bigger;
        }
        readFd(fd, buffer, length, buffer.length - length, length, (readError, bytesRead) => {
          if (readError) {
            finish(NOT_A_PLAIN_READ.has(readError.code ?? '') ? null : readError, undefined);
          } else if (bytesRead > 0) {
            length += bytesRead;
            next();
          } else if (length === 0 || length > maxBytes) {
            finish(null, undefined);
          } else if (buffer.length === SCRATCH_BYTES) {
            // The scratch buffer goes back to the pool: hand out a copy of exactly the bytes read.
            finish(null, Buffer.from(buffer.subarray(0, length)));
          } else {
            finish(null, buffer.subarray(0, length));
          }
        });
      };
      next();
    });
  });
}

/** The local file system through `node:fs/promises` (libuv's thread pool, never blocking the loop). */
export class NodeFileSystem implements PersistenceFileSystem {
  async open(path: string, how: keyof typeof FLAGS, mode = FILE_MODE): Promise<PersistenceFile> {
    return new NodeFile(await open(path, FLAGS[how], mode));
  }

  /**
   * O_DSYNC where the platform has it; elsewhere (Windows) it rejects and the journal writes, then
   * syncs. A subclass that overrides `open()` (to count, fail or change writes) but not this gets
   * no such handle either, so every journal write still goes through its `open()`.
   */
  async openSyncedAppend(path: string, mode = FILE_MODE): Promise<PersistenceFile> {
    const base = NodeFileSystem.prototype;
    if (
      !SYNCED_WRITES ||
      (this.open !== base.open && this.openSyncedAppend === base.openSyncedAppend)
    ) {
      throw fsError('ENOTSUP', 'open', path);
    }
    return new NodeFile(await open(path, FLAGS.append | SYNCED_WRITES, mode));
  }

  async readdir(path: string): Promise<DirEntry[]> {
    return (await readdir(path, { withFileTypes: true })).map((entry) => ({
      name: entry.name,
      type: typeOf(entry),
    }));
  }

  async lstat(path: string): Promise<FileStat> {
    return statOf(await lstat(path));
  }

  realpath(path: string): Promise<string> {
    return realpath(path);
  }

  async mkdir(path: string, mode: number): Promise<boolean> {
    try {
      await mkdir(path, { mode });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  }

  rename(from: string, to: string): Promise<void> {
    return rename(from, to);
  }

  link(existing: string, newPath: string): Promise<void> {
    return link(existing, newPath);
  }

  unlink(path: string): Promise<void> {
    return unlink(path);
  }

  rmdir(path: string): Promise<void> {
    return rmdir(path);
  }

  access(path: string, how: 'write'): Promise<void> {
    return access(path, how === 'write' ? constants.W_OK : constants.F_OK);
  }

  async statfs(path: string): Promise<DiskSpace> {
    const stats = await statfs(path);
    return { available: stats.bavail * stats.bsize, total: stats.blocks * stats.bsize };
  }

  readWhole(path: string, maxBytes: number): Promise<Buffer | undefined> {
    return readWhole(path, maxBytes);
  }
}
