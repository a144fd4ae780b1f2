import { dirname, join } from 'node:path';
import { errorCode, FileStat, PersistenceFileSystem } from './file-system.interface';

/** Makes a folder's entries (created, renamed, removed files) durable. */
export async function fsyncDirectory(fs: PersistenceFileSystem, dir: string): Promise<void> {
  const handle = await fs.open(dir, 'directory');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates a folder and its missing parents. Each folder created is made durable by an fsync of its
 * parent, so a crash cannot lose a folder that files were later written into.
 */
export async function ensureDirectory(
  fs: PersistenceFileSystem,
  path: string,
  mode: number,
): Promise<void> {
  const missing: string[] = [];
  let current = path;
  for (;;) {
    try {
      const stat = await folderStat(fs, current);
      if (stat.type !== 'directory') {
        throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${current}'`), {
          code: 'ENOTDIR',
        });
      }
      break;
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      missing.unshift(current);
      const parent = dirname(current);
      if (parent === current) break;
      current = parent;
    }
  }
  for (const dir of missing) {
    if (await fs.mkdir(dir, mode)) {
      await fsyncDirectory(fs, dirname(dir));
    }
  }
}

/** Metadata of a folder, following links (opening it as a folder fails for anything else). */
/**
 * What is at `path`, as a folder is looked for (the store folder, its parents): a symbolic link to a
 * folder (`current/data -> shared/data`, macOS's /tmp) is that folder; any other link is a link.
 * The application and the CLI both accept a store folder through this.
 */
export async function folderStat(fs: PersistenceFileSystem, path: string): Promise<FileStat> {
  const stat = await fs.lstat(path);
  if (stat.type !== 'symlink') return stat;
  return statDirectory(fs, path).catch(() => stat);
}

export async function statDirectory(fs: PersistenceFileSystem, dir: string): Promise<FileStat> {
  const handle = await fs.open(dir, 'directory');
  try {
    return await handle.stat();
  } finally {
    await handle.close();
  }
}

/** Removes a file or a folder with everything in it, without following links; missing is fine. */
export async function removeTree(fs: PersistenceFileSystem, path: string): Promise<void> {
  let type;
  try {
    type = (await fs.lstat(path)).type;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }
  if (type === 'directory') {
    for (const entry of await fs.readdir(path)) {
      await removeTree(fs, join(path, entry.name));
    }
    await fs.rmdir(path);
  } else {
    await fs.unlink(path).catch((error: unknown) => {
      if (errorCode(error) !== 'ENOENT') throw error;
    });
  }
}

/** Entries of a folder; a missing folder has none. */
export async function listDirectory(fs: PersistenceFileSystem, dir: string) {
  try {
    return await fs.readdir(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

/** True when the path exists (without following a final link). */
export async function exists(fs: PersistenceFileSystem, path: string): Promise<boolean> {
  try {
    await fs.lstat(path);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
}
