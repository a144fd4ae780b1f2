/*
 * The `nestjs-persistence/redis` entry point: the only code whose types reach `ioredis`, kept out
 * of the main entry so that an application without Redis type-checks without it.
 */
export { RedisStorageDriver } from './redis.storage-driver';
export type { RedisStorageDriverOptions } from './redis.storage-driver';
