import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { PersistenceFileSystem } from './file-system.interface';
import { fsyncDirectory } from './fs.util';
import { FILE_MODE, TEMP_SUFFIX } from './on-disk.names';

export { FILE_MODE, TEMP_SUFFIX };

export interface AtomicWriteOptions {
  /** Permission bits of the new file, exactly (the umask does not apply). @default 0o600 */
  mode?: number;
  /**
   * Also fsync the folder so the rename itself is durable. Callers that write many files into one
   * folder pass `false` and call {@link fsyncDirectory} once at the end.
   * @default true
   */
  syncDirectory?: boolean;
}

/** True for a file name this routine uses for its temporary files. */
export function isTempFileName(name: string): boolean {
  return name.startsWith('.') && name.endsWith(TEMP_SUFFIX);
}

/**
 * The only way the library writes a file: write a uniquely named temporary file in the same folder,
 * fsync it, close it, rename it over the target, then (by default) fsync the folder. A crash leaves
 * either the old file or the new one, never a mix; a leftover temporary file is removed at the next
 * start-up.
 */
export async function atomicWrite(
  fs: PersistenceFileSystem,
  target: string,
  data: Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const dir = dirname(target);
  const temp = join(
    dir,
    `.${basename(target).slice(0, 100)}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`,
  );
  await writeNewFile(fs, temp, data, options.mode ?? FILE_MODE);
  try {
    await fs.rename(temp, target);
  } catch (error) {
    await fs.unlink(temp).catch(() => undefined);
    throw error;
  }
  if (options.syncDirectory ?? true) {
    await fsyncDirectory(fs, dir);
  }
}

/**
 * Writes `data` whole into a new file (EEXIST when `path` exists), with exactly `mode`, fsynced and
 * closed (`durable: false`: not fsynced, for content that may be lost in a crash); on failure the
 * file is removed again. The first half of {@link atomicWrite}; the store lock
 * publishes such a file with `link()` instead of `rename()`, so its name never shows partial content.
 */
export async function writeNewFile(
  fs: PersistenceFileSystem,
  path: string,
  data: Uint8Array,
  mode: number = FILE_MODE,
  durable = true,
): Promise<void> {
  const handle = await fs.open(path, 'create', mode);
  try {
    await handle.chmod(mode);
    await handle.write(data, 0);
    if (durable) await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fs.unlink(path).catch(() => undefined);
    throw error;
  }
  await handle.close();
}
