import { Serializer } from '../interfaces/serializer.interface';
import { isGzip } from './detect-format';
import { DEFAULT_MAX_INFLATED_BYTES, gzipBuffer, JsonGzipSerializer } from './json-gzip.serializer';

/**
 * Default size, in bytes of compact JSON, above which `format: 'auto'` compresses an item: one
 * 4 KiB file-system block. A smaller file takes a whole block anyway, so compressing it would save
 * no disk space and cost CPU on both save and load.
 */
export const DEFAULT_COMPRESS_ABOVE = 4096;

/**
 * `format: 'auto'`: each item as compact JSON, or, when that is larger than `compressAbove` bytes,
 * as gzip of it. One extension for both (`.jsonz`: the store names a file before it knows its size);
 * the reader tells them apart by the gzip magic bytes, as for every file.
 */
export class AutoSerializer implements Serializer {
  readonly format = 'auto';
  readonly extension = '.jsonz';
  private readonly gzip: JsonGzipSerializer;

  /**
   * @param compressAbove items whose compact JSON is larger than this are gzip-compressed.
   * @param maxInflatedBytes a file that inflates beyond this is rejected (a gzip bomb).
   */
  constructor(
    readonly compressAbove = DEFAULT_COMPRESS_ABOVE,
    maxInflatedBytes = DEFAULT_MAX_INFLATED_BYTES,
  ) {
    this.gzip = new JsonGzipSerializer(maxInflatedBytes);
  }

  /** Compact JSON, gzip-compressed above the threshold. */
  async serialize(value: unknown): Promise<Buffer> {
    return this.encodeJson(Buffer.from(JSON.stringify(value), 'utf8'));
  }

  /** The file's bytes for an item's compact JSON. */
  async encodeJson(json: Buffer): Promise<Buffer> {
    return json.length > this.compressAbove ? gzipBuffer(json) : json;
  }

  deserialize(data: Buffer): unknown {
    return isGzip(data) ? this.gzip.deserialize(data) : JSON.parse(data.toString('utf8'));
  }
}
