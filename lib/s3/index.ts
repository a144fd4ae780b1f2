/*
 * The `nestjs-persistence/s3` entry point: the only code that needs `@aws-sdk/client-s3` (an optional
 * peer dependency), kept out of the main entry so that the library works and type-checks without it.
 */
export type { S3BackupTargetOptions } from './s3-backup-target-options.interface';
export { S3BackupTarget } from './s3-backup.target';
export { parseS3Url } from './s3-url.util';
