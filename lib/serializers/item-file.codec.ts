import { DecryptionError, isEncrypted, ItemCipher } from '../encryption/item.cipher';
import { PersistenceError } from '../errors/persistence.error';
import { BuiltInFormat, Serializer } from '../interfaces/serializer.interface';
import { ITEM_FILE_VERSION } from '../persistence.constants';
import { encodeId } from '../storage/file-name.codec';
import { ENCRYPTED_SUFFIX } from '../storage/on-disk.names';
import { AutoSerializer } from './auto.serializer';
import { isGzip } from './detect-format';
import { gzipBuffer, JsonGzipSerializer } from './json-gzip.serializer';
import { CompactJsonSerializer, JsonSerializer } from './json.serializer';
import { isMsgpack, MsgpackSerializer } from './msgpack.serializer';
import { createSerializer } from './serializer.factory';
import { joinPieces, JsonPiece, objectPieces } from './json-text.util';
import type { StoredForms } from '../adapters/model.schema';

import { ItemEnvelope } from '../interfaces/item-envelope.interface';

export type { ItemEnvelope };

export { ENCRYPTED_SUFFIX };

/** The classes of the built-in formats. */
const BUILT_IN_SERIALIZERS = new Set<unknown>([
  JsonSerializer,
  CompactJsonSerializer,
  JsonGzipSerializer,
  AutoSerializer,
  MsgpackSerializer,
]);

/** Why a file could not be read. `locked`: encrypted and not readable with the keys at hand. */
export class ItemDecodeError extends Error {
  constructor(
    message: string,
    readonly kind: 'corrupt' | 'locked',
  ) {
    super(message);
  }
}

/** An item that would be written larger than the reader accepts (`limits`). */
export class ItemTooLargeError extends Error {}

/**
 * Item envelope ↔ file bytes: serializer, then (optionally) encryption bound to adapter and file name.
 * Reading tells each file's format from its bytes, so files of any built-in format, encrypted or not,
 * are read whatever the current format (msgpack files load msgpackr at the first one).
 */
export class ItemFileCodec {
  private readonly gzip: JsonGzipSerializer;
  private msgpack: MsgpackSerializer | undefined;

  constructor(
    readonly serializer: Serializer,
    private readonly cipher: ItemCipher | undefined,
    private readonly maxInflatedBytes: number,
    private readonly maxFileBytes = Number.MAX_SAFE_INTEGER,
  ) {
    this.gzip = new JsonGzipSerializer(maxInflatedBytes);
  }

  /**
   * True when the serializer is one of the built-in formats (they all write JSON's data model), not
   * a custom one (a subclass included), which gets the adapter's values as they are.
   */
  private get builtIn(): boolean {
    return BUILT_IN_SERIALIZERS.has(this.serializer.constructor);
  }

  /**
   * The indent of the JSON text the (built-in) serializer writes or compresses: 0 for the compact
   * forms; `undefined` for msgpack, which writes no JSON.
   */
  private jsonIndent(): number | undefined {
    const serializer = this.serializer;
    if (serializer instanceof JsonSerializer) return serializer.indent;
    if (serializer instanceof JsonGzipSerializer || serializer instanceof AutoSerializer) return 0;
    return undefined;
  }

  /** Extension of the files this codec writes. */
  get extension(): string {
    return this.serializer.extension + (this.cipher ? ENCRYPTED_SUFFIX : '');
  }

  /** Id of the key new files are encrypted with; `undefined` without encryption. */
  get keyId(): string | undefined {
    return this.cipher?.currentKeyId;
  }

  /**
   * The serialized envelope, before encryption (what decides whether an item changed). Throws
   * {@link ItemTooLargeError} when the reader would refuse it: the writer and the reader agree on
   * the limits, so nothing is saved that cannot be loaded.
   */
  async serialize(
    id: string,
    data: unknown,
    schemaVersion = 1,
    stored?: StoredForms,
  ): Promise<Buffer> {
    // A built-in adapter's records in the form JSON writes them (same bytes, sooner), or straight
    // as JSON text; a custom serializer gets the adapter's value as it is.
    const json = this.builtIn ? stored?.json : undefined;
    const indent = json ? this.jsonIndent() : undefined;
    const text =
      json && indent !== undefined
        ? envelopeJson(id, schemaVersion, json(id, data, indent), indent)
        : undefined;
    if (text && this.serializer instanceof JsonSerializer) return text;
    if (stored && this.builtIn && !text) data = stored.form(data);
    const envelope: ItemEnvelope =
      schemaVersion > 1
        ? { id, v: ITEM_FILE_VERSION, sv: schemaVersion, data }
        : { id, v: ITEM_FILE_VERSION, data };
    let bytes: unknown;
    const auto = this.serializer instanceof AutoSerializer ? this.serializer : undefined;
    if (this.serializer instanceof JsonGzipSerializer || auto) {
      const json = text ?? Buffer.from(JSON.stringify(envelope), 'utf8');
      if (auto && json.length <= auto.compressAbove) {
        return json;
      }
      if (json.length > this.maxInflatedBytes) {
        throw new ItemTooLargeError(
          `it is ${json.length} bytes of JSON before compression, more than limits.maxInflatedBytes (${this.maxInflatedBytes})`,
        );
      }
      bytes = await gzipBuffer(json);
    } else {
      bytes = await this.serializer.serialize(envelope);
    }
    if (!Buffer.isBuffer(bytes)) {
      throw new TypeError(
        `serializer "${this.serializer.format}" returned ${typeof bytes}, not a Buffer`,
      );
    }
    return bytes;
  }

  /** The file's bytes: the serialized envelope, encrypted when encryption is on. */
  seal(adapter: string, stem: string, plain: Buffer): Buffer {
    const data = this.cipher ? this.cipher.encrypt(plain, adapter, stem) : plain;
    if (data.length > this.maxFileBytes) {
      throw new ItemTooLargeError(
        `its file would be ${data.length} bytes, more than limits.maxFileBytes (${this.maxFileBytes})`,
      );
    }
    return data;
  }

  async encode(
    adapter: string,
    id: string,
    data: unknown,
    schemaVersion = 1,
  ): Promise<{ stem: string; fileName: string; data: Buffer }> {
    const stem = encodeId(id);
    const plain = await this.serialize(id, data, schemaVersion);
    return { stem, fileName: stem + this.extension, data: this.seal(adapter, stem, plain) };
  }

  /**
   * Reads one item file. Throws `ItemDecodeError`: `locked` when it is encrypted and cannot be
   * decrypted with the keys at hand (a right key may still read it), `corrupt` for anything else,
   * including an id inside that does not belong to the file's name. A msgpack file without msgpackr
   * installed throws its `PERSISTENCE_OPTIONAL_DEPENDENCY_MISSING` error as it is (the file is fine).
   */
  async decode(
    adapter: string,
    file: { stem: string; extension: string },
    bytes: Buffer,
  ): Promise<DecodedItem> {
    try {
      return await this.decodeOrThrow(adapter, file, bytes);
    } catch (error) {
      if (error instanceof ItemDecodeError || error instanceof PersistenceError) throw error;
      const kind = error instanceof DecryptionError ? 'locked' : 'corrupt';
      throw new ItemDecodeError(error instanceof Error ? error.message : String(error), kind);
    }
  }

  private async decodeOrThrow(
    adapter: string,
    file: { stem: string; extension: string },
    bytes: Buffer,
  ): Promise<DecodedItem> {
    if (bytes.length === 0) {
      throw new Error('the file is empty');
    }
    let extension = file.extension;
    let keyId: string | undefined;
    if (isEncrypted(bytes)) {
      keyId = ItemCipher.keyIdOf(bytes);
      if (!this.cipher) {
        throw new DecryptionError(
          `it is encrypted (key "${ItemCipher.keyIdOf(bytes)}") and no encryption option is set`,
        );
      }
      bytes = this.cipher.decrypt(bytes, adapter, file.stem);
      extension = extension.endsWith(ENCRYPTED_SUFFIX)
        ? extension.slice(0, -ENCRYPTED_SUFFIX.length)
        : extension;
    }
    let parsed: unknown;
    if (extension === this.serializer.extension && !isBuiltIn(this.serializer)) {
      parsed = await this.serializer.deserialize(bytes);
    } else if (isGzip(bytes)) {
      parsed = await this.gzip.deserialize(bytes);
    } else if (isMsgpack(bytes)) {
      this.msgpack ??=
        this.serializer instanceof MsgpackSerializer ? this.serializer : new MsgpackSerializer();
      parsed = this.msgpack.deserialize(bytes);
    } else {
      parsed = JSON.parse(bytes.toString('utf8'));
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error('the file does not hold an item envelope object');
    }
    const envelope = parsed as Partial<ItemEnvelope>;
    if (
      typeof envelope.id !== 'string' ||
      !Object.prototype.hasOwnProperty.call(envelope, 'data')
    ) {
      throw new Error('the envelope has no "id" or no "data"');
    }
    if (typeof envelope.v !== 'number' || envelope.v > ITEM_FILE_VERSION) {
      throw new Error(`envelope version ${String(envelope.v)} is not supported by this release`);
    }
    if (envelope.sv !== undefined && (!Number.isSafeInteger(envelope.sv) || envelope.sv < 1)) {
      throw new Error(`schema version ${JSON.stringify(envelope.sv)} is not a positive integer`);
    }
    if (envelope.id === '' || encodeId(envelope.id) !== file.stem) {
      throw new Error(
        `the id inside (${JSON.stringify(envelope.id)}) does not match the file name`,
      );
    }
    return { envelope: envelope as ItemEnvelope, plain: bytes, keyId };
  }
}

/** A read item file: its envelope, its bytes before encryption, the key id it was encrypted with. */
export interface DecodedItem {
  envelope: ItemEnvelope;
  plain: Buffer;
  keyId?: string;
}

function isBuiltIn(serializer: Serializer): boolean {
  return (
    serializer instanceof JsonSerializer ||
    serializer instanceof JsonGzipSerializer ||
    serializer instanceof MsgpackSerializer ||
    serializer instanceof AutoSerializer
  );
}

/** Settings of the codec, from the resolved options. */
export interface ItemFileCodecSettings {
  compressAbove?: number;
  limits: { maxInflatedBytes: number; maxFileBytes: number };
}

/** The codec of a format (a built-in name or a custom serializer), with the cipher, if any. */
export function createItemFileCodec(
  format: BuiltInFormat | Serializer,
  settings: ItemFileCodecSettings,
  cipher: ItemCipher | undefined,
): ItemFileCodec {
  const serializer = createSerializer(format, {
    compressAbove: settings.compressAbove,
    maxInflatedBytes: settings.limits.maxInflatedBytes,
  });
  return new ItemFileCodec(
    serializer,
    cipher,
    settings.limits.maxInflatedBytes,
    settings.limits.maxFileBytes,
  );
}

/**
 * The envelope's JSON text from its data's, the very bytes `JSON.stringify(envelope, null, indent)`
 * gives (same keys, same order).
 */
function envelopeJson(
  id: string,
  schemaVersion: number,
  data: readonly JsonPiece[],
  indent: number,
): Buffer {
  const members: Array<readonly [string, readonly JsonPiece[]]> = [
    ['id', [JSON.stringify(id)]],
    ['v', [String(ITEM_FILE_VERSION)]],
  ];
  if (schemaVersion > 1) members.push(['sv', [JSON.stringify(schemaVersion)]]);
  members.push(['data', data]);
  return joinPieces(objectPieces(members, indent, 0));
}
