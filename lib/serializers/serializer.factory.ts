import { BuiltInFormat, Serializer } from '../interfaces/serializer.interface';
import { JsonGzipSerializer } from './json-gzip.serializer';
import { CompactJsonSerializer, JsonSerializer } from './json.serializer';

export const BUILT_IN_FORMATS: readonly BuiltInFormat[] = ['json', 'json-compact', 'json-gzip'];

/** The serializer for a format name, or the custom serializer itself. */
export function createSerializer(format: BuiltInFormat | Serializer): Serializer {
  if (typeof format !== 'string') {
    return format;
  }
  switch (format) {
    case 'json':
      return new JsonSerializer();
    case 'json-compact':
      return new CompactJsonSerializer();
    case 'json-gzip':
      return new JsonGzipSerializer();
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
