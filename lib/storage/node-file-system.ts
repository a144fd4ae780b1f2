import { constants, Dirent, Stats } from 'node:fs';
import {
  access,
  FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
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

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** The local file system through `node:fs/promises` (libuv's thread pool, never blocking the loop). */
export class NodeFileSystem implements PersistenceFileSystem {
  async open(path: string, how: keyof typeof FLAGS, mode = FILE_MODE): Promise<PersistenceFile> {
    return new NodeFile(await open(path, FLAGS[how], mode));
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
}
