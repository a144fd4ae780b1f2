/*
 * The public API of `nestjs-persistence`, and nothing else. Health checks are in the separate
 * `nestjs-persistence/health` entry point (lib/health/index.ts), the Redis driver in
 * `nestjs-persistence/redis` (lib/storage/redis/index.ts): their peers' types reach only the
 * applications that import them.
 */
export * from './adapters';
export * from './decorators';
export * from './errors';
export { PersistenceEvents } from './events/persistence-events.enum';
export * from './interfaces';
export {
  PERSISTENCE_ADAPTERS,
  PERSISTENCE_AUTO_SAVE_DEBOUNCE,
  PERSISTENCE_AUTO_SAVE_INTERVAL,
  PERSISTENCE_BACKUP_CRON,
  QUARANTINE_DIR,
} from './persistence.constants';
export { PersistenceModule } from './persistence.module';
export { PERSISTENCE_MODULE_OPTIONS } from './persistence.module-definition';
export type {
  PersistenceFeatureOptions,
  PersistenceModuleAsyncOptions,
  PersistenceModuleForRootOptions,
  PersistenceOptionsFactory,
} from './persistence.types';
export {
  AutoSerializer,
  CompactJsonSerializer,
  detectFormat,
  JsonGzipSerializer,
  JsonSerializer,
  MsgpackSerializer,
} from './serializers';
export { PersistenceStore } from './store/persistence.store';
export { PersistenceFileSystem } from './storage/file-system.interface';
export type {
  DirEntry,
  DiskSpace,
  EntryType,
  FileStat,
  PersistenceFile,
} from './storage/file-system.interface';
export { NodeFileSystem } from './storage/node-file-system';
export { LocalBackupTarget } from './storage/local-backup.target';
export type { LocalBackupTargetOptions } from './storage/local-backup.target';
export { StorageDriver } from './interfaces/storage-driver.interface';
export type * from './interfaces/storage-driver.interface';
