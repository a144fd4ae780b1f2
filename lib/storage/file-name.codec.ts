import { createHash } from 'node:crypto';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { invalidId } from '../persistence.messages';

/*
 * Item ids become file-name stems (the name without its extension). The scheme is safe on every
 * common file system, including case-insensitive and normalising ones (macOS, Windows):
 *   - a "safe" id is its own stem: 1-128 chars of [a-z0-9._-] (lower case only), not starting or
 *     ending with "." (so never ".", "..", a hidden or temporary file), not a Windows device name;
 *   - any other id is "~" + the base32 (RFC 4648 alphabet, lower case, no padding) of its UTF-8
 *     bytes, when that fits in 200 chars: lower-case ASCII only, so no two ids collide even where
 *     "A" and "a" are one file name;
 *   - a longer one is "~~" + the SHA-256 (hex) of its UTF-8 bytes; the id itself is inside the file.
 * "~" never appears in a safe id, so the three forms cannot collide, and no stem contains a path
 * separator, a NUL, or a character that a file system could fold or normalise.
 */

const SAFE_ID = /^[a-z0-9_-](?:[a-z0-9._-]{0,126}[a-z0-9_-])?$/;
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/;
const MAX_ENCODED_STEM = 200;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
/** Longest id accepted, in UTF-16 code units. */
export const MAX_ID_LENGTH = 65_536;

/** Throws a `PersistenceError` (InvalidId) unless `id` can be stored. */
export function assertValidId(id: unknown): asserts id is string {
  if (typeof id !== 'string') {
    throw new PersistenceError(PersistenceErrorCode.InvalidId, invalidId(id, 'ids are strings'));
  }
  if (id.length === 0) {
    throw new PersistenceError(PersistenceErrorCode.InvalidId, invalidId(id, 'it is empty'));
  }
  if (!id.isWellFormed()) {
    throw new PersistenceError(
      PersistenceErrorCode.InvalidId,
      invalidId(
        id,
        'it holds a lone UTF-16 surrogate, which has no UTF-8 form (use id.toWellFormed())',
      ),
    );
  }
  if (id.length > MAX_ID_LENGTH) {
    throw new PersistenceError(
      PersistenceErrorCode.InvalidId,
      invalidId(id, `it is longer than ${MAX_ID_LENGTH} characters`),
    );
  }
}

/** The file-name stem for an id. */
export function encodeId(id: string): string {
  assertValidId(id);
  if (SAFE_ID.test(id) && !WINDOWS_DEVICE.test(id)) {
    return id;
  }
  const bytes = Buffer.from(id, 'utf8');
  if (Math.ceil((bytes.length * 8) / 5) + 1 <= MAX_ENCODED_STEM) {
    return `~${base32(bytes)}`;
  }
  return `~~${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The id a stem stands for, or `undefined` for a hashed or malformed stem. */
export function decodeStem(stem: string): string | undefined {
  if (stem.startsWith('~~')) {
    return undefined;
  }
  if (stem.startsWith('~')) {
    return unbase32(stem.slice(1))?.toString('utf8');
  }
  return stem;
}

function base32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) {
    out += BASE32[(buffer << (5 - bits)) & 31];
  }
  return out;
}

function unbase32(text: string): Buffer | undefined {
  const bytes: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of text) {
    const value = BASE32.indexOf(char);
    if (value < 0) return undefined;
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bytes.push((buffer >>> (bits - 8)) & 255);
      bits -= 8;
    }
    buffer &= (1 << bits) - 1;
  }
  return Buffer.from(bytes);
}
