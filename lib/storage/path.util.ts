import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { errorCode, PersistenceFileSystem } from './file-system.interface';

/** True when `child` is `parent` itself or lies below it (both absolute), comparing the paths as given. */
export function isSameOrInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * The real path of an absolute `path` (every symbolic link resolved), also for a path that does not
 * exist yet (a file about to be written): the real path of its deepest existing ancestor, with the
 * rest of the names after it. Without `fs.realpath`, the path as given.
 */
export async function realPathOf(fs: PersistenceFileSystem, path: string): Promise<string> {
  if (!fs.realpath) return path;
  const rest: string[] = [];
  for (let current = path; ;) {
    try {
      return join(await fs.realpath(current), ...rest);
    } catch (error) {
      const code = errorCode(error);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      const parent = dirname(current);
      if (parent === current) return path;
      rest.unshift(basename(current));
      current = parent;
    }
  }
}

/**
 * True when `child` is `parent` or lies below it, as given or once every link is resolved on both
 * sides: a folder reached through a symbolic link (to the store, to one of its parents, from inside
 * it) is where the link leads.
 */
export async function isReallySameOrInside(
  fs: PersistenceFileSystem,
  child: string,
  parent: string,
): Promise<boolean> {
  if (isSameOrInside(child, parent)) return true;
  const [realChild, realParent] = await Promise.all([
    realPathOf(fs, child),
    realPathOf(fs, parent),
  ]);
  return isSameOrInside(realChild, realParent);
}
