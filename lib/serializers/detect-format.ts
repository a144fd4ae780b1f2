import { isEncrypted } from '../encryption/item.cipher';
import { DetectedFormat } from '../interfaces/serializer.interface';

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;

/** True when `data` starts with the gzip magic bytes. */
export function isGzip(data: Uint8Array): boolean {
  return data.length >= 2 && data[0] === GZIP_MAGIC_0 && data[1] === GZIP_MAGIC_1;
}

/**
 * Tells a file's format from its bytes: `'encrypted'` for the store's encryption header, `'json-gzip'`
 * for the gzip magic, `'json'` for valid JSON (indented or compact: one format to a reader),
 * `'binary'` for anything else.
 */
export function detectFormat(data: Uint8Array): DetectedFormat {
  if (isEncrypted(data)) {
    return 'encrypted';
  }
  if (isGzip(data)) {
    return 'json-gzip';
  }
  try {
    JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
    return 'json';
  } catch {
    return 'binary';
  }
}
