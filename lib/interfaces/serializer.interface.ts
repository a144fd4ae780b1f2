/**
 * Names of the built-in formats. `'msgpack'` needs the optional package `msgpackr`; `'auto'` writes
 * compact JSON, gzip-compressed above `compressAbove` bytes.
 */
export type BuiltInFormat = 'json' | 'json-compact' | 'json-gzip' | 'msgpack' | 'auto';

/** What {@link detectFormat} can tell from a file's bytes. */
export type DetectedFormat = 'json' | 'json-gzip' | 'msgpack' | 'encrypted' | 'binary';

/**
 * Turns one item file's content into bytes and back. Implement it for a format of your own and pass
 * the instance as the `format` option or to `PersistenceStore.setSerializer()`.
 *
 * `serialize()` is given one item's `ItemEnvelope` (`{ id, v, data }`), and `deserialize()`
 * must give the same envelope back. `deserialize()` must throw on bytes it cannot read: the store
 * then quarantines the file.
 */
export interface Serializer {
  /** Name reported in `SaveMetadata.format`, e.g. `'cbor'`. */
  readonly format: string;
  /** File extension including the dot, e.g. `'.cbor'`. Must not be `.tmp`. */
  readonly extension: string;
  serialize(value: unknown): Buffer | Promise<Buffer>;
  /** May return a promise (an async format such as gzip). */
  deserialize(data: Buffer): unknown;
}
