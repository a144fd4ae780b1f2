export { RedisStorageDriver } from './redis.storage-driver';
export type { RedisStorageDriverOptions } from './redis.storage-driver';
