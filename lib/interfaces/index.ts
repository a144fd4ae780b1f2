export type { ItemEnvelope } from './item-envelope.interface';
export * from './persistence-adapter.interface';
export * from './persistence-event.interface';
export * from './persistence-metadata.interface';
export type { PersistenceStatus } from './persistence-status.interface';
export type { UnloadedItem, UnloadedKind } from './unloaded-item.interface';
export type {
  BackupContents,
  BackupEntry,
  BackupManifest,
  BackupTarget,
  StoredBackup,
  UnverifiedBackupFile,
} from './backup-target.interface';
export type {
  AutoSaveOptions,
  BackupOptions,
  EncryptionKey,
  EncryptionOptions,
  LockOptions,
  PersistenceLimits,
  PersistenceModuleOptions,
} from './persistence-module-options.interface';
export type { BuiltInFormat, DetectedFormat, Serializer } from './serializer.interface';
