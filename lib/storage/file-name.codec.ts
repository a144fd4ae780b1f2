import { createHash } from 'node:crypto';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { invalidId } from '../persistence.messages';

/*
 * Item ids become file-name stems (the name without its extension):
 *   - a "safe" id is its own stem: 1-128 chars of [A-Za-z0-9._-], not starting with "." and not ending
 *     with "." (so never ".", "..", a hidden file or a temporary file), and not a Windows device name;
 *   - any other id is "~" followed by the base64url of its UTF-8 bytes, when that fits in 200 chars;
 *   - a longer one is "~~" followed by the SHA-256 of its UTF-8 bytes (the id itself is inside the file).
 * "~" never appears in a safe id, so the three forms cannot collide, and no stem contains a path separator.
 */

const SAFE_ID = /^[A-Za-z0-9_-](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9_-])?$/;
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
const MAX_ENCODED_STEM = 200;
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
  const encoded = `~${Buffer.from(id, 'utf8').toString('base64url')}`;
  if (encoded.length <= MAX_ENCODED_STEM) {
    return encoded;
  }
  return `~~${createHash('sha256').update(id, 'utf8').digest('hex')}`;
}

/** The id a stem stands for, or `undefined` for a hashed stem (whose id is only inside the file). */
export function decodeStem(stem: string): string | undefined {
  if (stem.startsWith('~~')) {
    return undefined;
  }
  if (stem.startsWith('~')) {
    return Buffer.from(stem.slice(1), 'base64url').toString('utf8');
  }
  return stem;
}
