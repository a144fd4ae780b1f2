import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  EncryptionKey,
  EncryptionOptions,
} from '../interfaces/persistence-module-options.interface';

/*
 * Encrypted item file (all integers unsigned):
 *
 *   offset  size  field
 *   0       4     magic "NPE" + format version 0x01
 *   4       1     key id length n (1-64)
 *   5       n     key id, UTF-8
 *   5+n     12    IV, random per file
 *   17+n    ...   AES-256-GCM ciphertext of the serialized envelope (json / gzip / custom bytes)
 *   end-16  16    GCM authentication tag
 *
 * Additional authenticated data: the header (bytes 0 .. 17+n) + 0x00 + adapter name + 0x00 + file
 * stem. The header cannot be altered, and a file moved to another item or adapter fails to decrypt.
 */

const MAGIC = Buffer.from([0x4e, 0x50, 0x45, 0x01]); // "NPE" v1
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
export const DEFAULT_KEY_ID = 'default';

/** True when `data` starts like an encrypted item file. */
export function isEncrypted(data: Uint8Array): boolean {
  return data.length >= MAGIC.length && MAGIC.every((byte, i) => data[i] === byte);
}

/** Why a file could not be decrypted; a right key might still read it, so it is never quarantined. */
export class DecryptionError extends Error {}

/** Turns an option key into 32 bytes, or returns a problem (never including the key itself). */
export function parseKey(key: EncryptionKey): Buffer | string {
  if (typeof key === 'string') {
    if (/^[0-9a-fA-F]{64}$/.test(key)) return Buffer.from(key, 'hex');
    const decoded = Buffer.from(key, 'base64');
    if (decoded.length === KEY_BYTES && /^[A-Za-z0-9+/_-]+={0,2}$/.test(key)) return decoded;
    return 'a string key must be 64 hex digits or the base64 of 32 bytes';
  }
  if (key instanceof Uint8Array) {
    return key.length === KEY_BYTES
      ? Buffer.from(key)
      : `a key must be ${KEY_BYTES} bytes (got ${key.length})`;
  }
  return 'a key must be a Buffer or a string';
}

/** AES-256-GCM for item files, with a keyring so keys can be rotated. */
export class ItemCipher {
  private constructor(
    private readonly keys: ReadonlyMap<string, Buffer>,
    readonly currentKeyId: string,
  ) {}

  /** Builds the cipher from options; `problem` gets a message that names the option, never a key. */
  static create(
    options: EncryptionOptions,
    problem: (option: string, fix: string) => never,
  ): ItemCipher {
    const keys = new Map<string, Buffer>();
    if (options.key !== undefined) {
      if (options.keys !== undefined || options.current !== undefined) {
        problem('encryption', 'Give either { key } or { keys, current }, not both.');
      }
      const parsed = parseKey(options.key);
      if (typeof parsed === 'string') problem('encryption.key', `Invalid key: ${parsed}.`);
      keys.set(DEFAULT_KEY_ID, parsed);
      return new ItemCipher(keys, DEFAULT_KEY_ID);
    }
    if (typeof options.keys !== 'object' || options.keys === null) {
      problem('encryption', 'Give { key } or { keys: { [id]: key }, current: id }.');
    }
    for (const [id, key] of Object.entries(options.keys)) {
      if (!KEY_ID.test(id)) {
        problem(
          'encryption.keys',
          `Key id ${JSON.stringify(id)} must be 1-64 chars of [A-Za-z0-9._-].`,
        );
      }
      const parsed = parseKey(key);
      if (typeof parsed === 'string') problem(`encryption.keys.${id}`, `Invalid key: ${parsed}.`);
      keys.set(id, parsed);
    }
    if (typeof options.current !== 'string' || !keys.has(options.current)) {
      problem(
        'encryption.current',
        'Name the id of one of encryption.keys: new files use that key.',
      );
    }
    return new ItemCipher(keys, options.current);
  }

  encrypt(plain: Uint8Array, adapter: string, stem: string): Buffer {
    const keyId = Buffer.from(this.currentKeyId, 'utf8');
    const iv = randomBytes(IV_BYTES);
    const header = Buffer.concat([MAGIC, Buffer.from([keyId.length]), keyId, iv]);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.currentKeyId)!, iv);
    cipher.setAAD(aad(header, adapter, stem));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([header, body, cipher.getAuthTag()]);
  }

  /** Throws `DecryptionError` for an unknown key or a failed authentication; `Error` for a bad header. */
  decrypt(data: Buffer, adapter: string, stem: string): Buffer {
    const { keyId, header } = readHeader(data);
    const key = this.keys.get(keyId);
    if (!key) {
      throw new DecryptionError(
        `it is encrypted with key "${keyId}", which is not in encryption.keys; add that key to read it`,
      );
    }
    const iv = header.subarray(header.length - IV_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(aad(header, adapter, stem));
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(data.subarray(header.length, data.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw new DecryptionError(
        `it does not authenticate with key "${keyId}": the key is wrong, the file was altered, or it belongs to another item`,
      );
    }
  }

  /** The id of the key a file was encrypted with. */
  static keyIdOf(data: Buffer): string {
    return readHeader(data).keyId;
  }
}

function readHeader(data: Buffer): { keyId: string; header: Buffer } {
  if (!isEncrypted(data) || data.length < MAGIC.length + 1) {
    throw new Error('it is not an encrypted item file');
  }
  const idLength = data[MAGIC.length];
  const headerLength = MAGIC.length + 1 + idLength + IV_BYTES;
  if (idLength === 0 || idLength > 64 || data.length < headerLength + TAG_BYTES) {
    throw new Error('its encryption header is malformed or truncated');
  }
  const keyId = data.subarray(MAGIC.length + 1, MAGIC.length + 1 + idLength).toString('latin1');
  if (!KEY_ID.test(keyId)) {
    throw new Error('its encryption header holds no valid key id');
  }
  return { keyId, header: data.subarray(0, headerLength) };
}

function aad(header: Buffer, adapter: string, stem: string): Buffer {
  return Buffer.concat([header, Buffer.from(`\0${adapter}\0${stem}`, 'utf8')]);
}
