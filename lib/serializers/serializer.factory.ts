import { BuiltInFormat, Serializer } from '../interfaces/serializer.interface';
import { AutoSerializer, DEFAULT_COMPRESS_ABOVE } from './auto.serializer';
import { DEFAULT_MAX_INFLATED_BYTES, JsonGzipSerializer } from './json-gzip.serializer';
import { CompactJsonSerializer, JsonSerializer } from './json.serializer';
import { MsgpackSerializer } from './msgpack.serializer';

export const BUILT_IN_FORMATS: readonly BuiltInFormat[] = [
  'json',
  'json-compact',
  'json-gzip',
  'msgpack',
  'auto',
];

/** Settings of the built-in formats that take any. */
export interface SerializerSettings {
  /** `auto`: compact JSON above this many bytes is gzip-compressed. */
  compressAbove?: number;
  /** `json-gzip`, `auto`: largest size a gzip file may inflate to. */
  maxInflatedBytes?: number;
}

/**
 * The serializer for a format name, or the custom serializer itself. `'msgpack'` loads msgpackr here
 * and throws `PERSISTENCE_OPTIONAL_DEPENDENCY_MISSING` when it is not installed.
 */
export function createSerializer(
  format: BuiltInFormat | Serializer,
  settings: SerializerSettings = {},
): Serializer {
  if (typeof format !== 'string') {
    return format;
  }
  const maxInflatedBytes = settings.maxInflatedBytes ?? DEFAULT_MAX_INFLATED_BYTES;
  switch (format) {
    case 'json':
      return new JsonSerializer();
    case 'json-compact':
      return new CompactJsonSerializer();
    case 'json-gzip':
      return new JsonGzipSerializer(maxInflatedBytes);
    case 'msgpack':
      return new MsgpackSerializer();
    case 'auto':
      return new AutoSerializer(settings.compressAbove ?? DEFAULT_COMPRESS_ABOVE, maxInflatedBytes);
  }
}

/** True for an object that has what a {@link Serializer} needs. */
export function isSerializer(value: unknown): value is Serializer {
  const candidate = value as Partial<Serializer> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.format === 'string' &&
    typeof candidate.extension === 'string' &&
    typeof candidate.serialize === 'function' &&
    typeof candidate.deserialize === 'function'
  );
}
