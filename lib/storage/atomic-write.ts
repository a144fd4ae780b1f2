import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Default permissions of files the store writes. */
export const FILE_MODE = 0o600;

/** Suffix of temporary files; a file whose name starts with "." and ends with it is a leftover. */
export const TEMP_SUFFIX = '.tmp';

export interface AtomicWriteOptions {
  /** Permission bits of a new file. @default 0o600 */
  mode?: number;
  /**
   * Also fsync the directory so the rename itself is durable. Callers that write many files into one
   * directory pass `false` and call {@link fsyncDirectory} once at the end.
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
 * fsync it, rename it over the target, then (by default) fsync the folder. A crash leaves either the old
 * file or the new one, never a mix; a leftover temporary file is removed at the next start-up.
 */
export async function atomicWrite(
  target: string,
  data: Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const dir = dirname(target);
  const temp = join(
    dir,
    `.${basename(target).slice(0, 100)}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`,
  );
  const mode = options.mode ?? FILE_MODE;
  const handle = await open(temp, 'wx', mode);
  try {
    await handle.chmod(mode); // exactly `mode`, whatever the process umask
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, target);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  if (options.syncDirectory ?? true) {
    await fsyncDirectory(dir);
  }
}

/** Makes the entries of a directory (created, renamed, removed files) durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
