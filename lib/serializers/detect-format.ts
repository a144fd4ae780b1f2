import { isEncrypted } from '../encryption/item.cipher';
import { DetectedFormat } from '../interfaces/serializer.interface';
import { isMsgpack } from './msgpack.serializer';

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;

/** True when `data` starts with the gzip magic bytes. */
export function isGzip(data: Uint8Array): boolean {
  return data.length >= 2 && data[0] === GZIP_MAGIC_0 && data[1] === GZIP_MAGIC_1;
}

/**
 * Tells a file's format from its bytes: `'encrypted'` for the store's encryption header
 * (`NPE\x01`), `'json-gzip'` for the gzip magic (`1f 8b`), `'msgpack'` for the msgpack item header
 * (`89 'NPM' 01`), `'json'` for valid JSON (indented or compact: one format to a reader), `'binary'`
 * for anything else. The three headers differ in their first byte, and none can start valid JSON.
 * (`format: 'auto'` writes JSON or gzip, so its files are told as one of those.)
 */
export function detectFormat(data: Uint8Array): DetectedFormat {
  if (isEncrypted(data)) {
    return 'encrypted';
  }
  if (isGzip(data)) {
    return 'json-gzip';
  }
  if (isMsgpack(data)) {
    return 'msgpack';
  }
  try {
    JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
    return 'json';
  } catch {
    return 'binary';
  }
}
