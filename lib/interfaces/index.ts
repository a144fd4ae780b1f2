export * from './persistence-adapter.interface';
export * from './persistence-metadata.interface';
export * from './persistence-module-options.interface';
export * from './serializer.interface';
