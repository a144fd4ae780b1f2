import { Serializer } from '../interfaces/serializer.interface';
import { ITEM_FILE_VERSION } from '../persistence.constants';
import { JsonGzipSerializer } from '../serializers/json-gzip.serializer';
import { isGzip } from '../serializers/detect-format';
import { JsonSerializer } from '../serializers/json.serializer';
import { encodeId } from './file-name.codec';

/**
 * What every item file holds once deserialized: the id (file names may be encoded or hashed), the
 * envelope version (for migrations), and the adapter's value.
 */
export interface ItemEnvelope {
  id: string;
  v: number;
  data: unknown;
}

const gzip = new JsonGzipSerializer();

/** Bytes and file name of one item in the given format. */
export async function encodeItem(
  serializer: Serializer,
  id: string,
  data: unknown,
): Promise<{ stem: string; fileName: string; data: Buffer }> {
  const stem = encodeId(id);
  const envelope: ItemEnvelope = { id, v: ITEM_FILE_VERSION, data };
  const bytes = await serializer.serialize(envelope);
  if (!Buffer.isBuffer(bytes)) {
    throw new TypeError(`serializer "${serializer.format}" returned ${typeof bytes}, not a Buffer`);
  }
  return { stem, fileName: stem + serializer.extension, data: bytes };
}

/**
 * Reads one item file: a custom serializer's own extension goes to it; otherwise the format is told
 * from the bytes (gzip or JSON). Throws with a readable reason when the file is not a valid item file,
 * including when the id inside does not belong to the file's name.
 */
export async function decodeItem(
  serializer: Serializer,
  file: { stem: string; extension: string },
  bytes: Buffer,
): Promise<ItemEnvelope> {
  if (bytes.length === 0) {
    throw new Error('the file is empty');
  }
  let parsed: unknown;
  if (file.extension === serializer.extension && !isBuiltIn(serializer)) {
    parsed = await serializer.deserialize(bytes);
  } else if (isGzip(bytes)) {
    parsed = await gzip.deserialize(bytes);
  } else {
    parsed = JSON.parse(bytes.toString('utf8'));
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error('the file does not hold an item envelope object');
  }
  const envelope = parsed as Partial<ItemEnvelope>;
  if (typeof envelope.id !== 'string' || !('data' in envelope)) {
    throw new Error('the envelope has no "id" or no "data"');
  }
  if (typeof envelope.v !== 'number' || envelope.v > ITEM_FILE_VERSION) {
    throw new Error(`envelope version ${String(envelope.v)} is not supported by this release`);
  }
  if (encodeId(envelope.id) !== file.stem) {
    throw new Error(`the id inside (${JSON.stringify(envelope.id)}) does not match the file name`);
  }
  return envelope as ItemEnvelope;
}

function isBuiltIn(serializer: Serializer): boolean {
  return serializer instanceof JsonSerializer || serializer instanceof JsonGzipSerializer;
}
