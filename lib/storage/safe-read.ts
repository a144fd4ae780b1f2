import { errorCode, PersistenceFileSystem } from './file-system.interface';

/** Why a file was not read: the caller reports it (a file the store did not write). */
export class UnsafeFileError extends Error {}

/**
 * Reads a regular file without following a link and without reading more than `maxBytes` into
 * memory; opening never blocks on a FIFO planted in the folder.
 */
export async function readRegularFile(
  fs: PersistenceFileSystem,
  path: string,
  maxBytes: number,
  options: { singleLink?: boolean } = {},
): Promise<Buffer> {
  let handle;
  try {
    // The fast path reads a plain, non-empty file within the limit; anything else comes back
    // undefined and is decided below, where each refusal has its message.
    const whole = options.singleLink ? undefined : await fs.readWhole?.(path, maxBytes);
    if (whole) return whole;
    handle = await fs.open(path, 'read');
  } catch (error) {
    if (errorCode(error) === 'ELOOP') {
      throw new UnsafeFileError('it is a symbolic link');
    }
    throw error;
  }
  try {
    const stat = await handle.stat();
    if (stat.type !== 'file') {
      throw new UnsafeFileError('it is not a regular file');
    }
    if (options.singleLink && stat.nlink > 1) {
      throw new UnsafeFileError('it is a hard link to another file');
    }
    if (stat.size > maxBytes) {
      throw new UnsafeFileError(
        `it is ${stat.size} bytes, more than limits.maxFileBytes (${maxBytes}); raise the limit to read it`,
      );
    }
    // Not zero-filled: every byte returned is read from the file (a short read is cut off below).
    const buffer = Buffer.allocUnsafe(stat.size);
    let offset = 0;
    while (offset < stat.size) {
      const read = await handle.read(buffer, offset, stat.size - offset, offset);
      if (read === 0) break;
      offset += read;
    }
    return offset === stat.size ? buffer : buffer.subarray(0, offset);
  } finally {
    await handle.close();
  }
}
