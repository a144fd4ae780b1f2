export * from './auto.serializer';
export * from './detect-format';
export * from './json-gzip.serializer';
export * from './json.serializer';
export * from './msgpack.serializer';
export * from './serializer.factory';
