import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { Serializer } from '../interfaces/serializer.interface';

const gzipAsync = promisify(gzip);

/** Compresses on libuv's thread pool. */
export const gzipBuffer = (data: Buffer): Promise<Buffer> => gzipAsync(data);
const gunzipAsync = promisify(gunzip);

/** Default ceiling on what one gzip file may inflate to (256 MiB). */
export const DEFAULT_MAX_INFLATED_BYTES = 256 * 1024 * 1024;

/** Compact JSON compressed with gzip, on libuv's thread pool (never zlib's sync API). */
export class JsonGzipSerializer implements Serializer {
  readonly format = 'json-gzip';
  readonly extension = '.json.gz';

  /** @param maxInflatedBytes a file that inflates beyond this is rejected (a gzip bomb). */
  constructor(private readonly maxInflatedBytes = DEFAULT_MAX_INFLATED_BYTES) {}

  async serialize(value: unknown): Promise<Buffer> {
    return gzipAsync(Buffer.from(JSON.stringify(value), 'utf8'));
  }

  async deserialize(data: Buffer): Promise<unknown> {
    let inflated: Buffer;
    try {
      inflated = await gunzipAsync(data, { maxOutputLength: this.maxInflatedBytes });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new Error(
          `it inflates beyond limits.maxInflatedBytes (${this.maxInflatedBytes} bytes): a gzip bomb, or raise the limit`,
        );
      }
      throw error;
    }
    return JSON.parse(inflated.toString('utf8'));
  }
}
