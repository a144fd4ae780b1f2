import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** Why a file was not read: the caller reports it (a file the store did not write). */
export class UnsafeFileError extends Error {}

/**
 * Reads a regular file without following a link and without reading more than `maxBytes` into
 * memory. `O_NONBLOCK` keeps a FIFO planted in the folder from hanging the read.
 */
export async function readRegularFile(
  path: string,
  maxBytes: number,
  options: { singleLink?: boolean } = {},
): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new UnsafeFileError('it is a symbolic link');
    }
    throw error;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
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
    const buffer = Buffer.alloc(stat.size);
    let offset = 0;
    while (offset < stat.size) {
      const { bytesRead } = await handle.read(buffer, offset, stat.size - offset, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    return offset === stat.size ? buffer : buffer.subarray(0, offset);
  } finally {
    await handle.close();
  }
}
