import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { Serializer } from '../interfaces/serializer.interface';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** Compact JSON compressed with gzip, on libuv's thread pool (never zlib's sync API). */
export class JsonGzipSerializer implements Serializer {
  readonly format = 'json-gzip';
  readonly extension = '.json.gz';

  async serialize(value: unknown): Promise<Buffer> {
    return gzipAsync(Buffer.from(JSON.stringify(value), 'utf8'));
  }

  async deserialize(data: Buffer): Promise<unknown> {
    const inflated = await gunzipAsync(data);
    return JSON.parse(inflated.toString('utf8'));
  }
}
