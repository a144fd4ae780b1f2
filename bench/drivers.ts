/*
 * The bench's backends that are ours on a storage driver (a server): which driver, where a cell
 * writes (a Redis key prefix, a PostgreSQL table), and how the bench removes what a cell wrote.
 * Each loads its driver module only when used, so a bench without servers never loads them.
 */
import { randomBytes } from 'node:crypto';
import type { StorageDriver } from '../lib';

/** Ours on a storage driver: names of --backend. */
export const DRIVER_BACKENDS = ['redis', 'postgres'] as const;
export type DriverBackend = (typeof DRIVER_BACKENDS)[number];

export const isDriverBackend = (backend: string): backend is DriverBackend =>
  (DRIVER_BACKENDS as readonly string[]).includes(backend);

export const BENCH_REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const BENCH_POSTGRES_URL =
  process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A fresh place for one cell: a key prefix (redis) or a table name (postgres). */
export const newPlace = (backend: DriverBackend): string =>
  backend === 'redis'
    ? `{bench:${randomBytes(6).toString('hex')}}:` // a hash tag: the cleanup SCAN matches it as is
    : `bench_${randomBytes(6).toString('hex')}`;

/** The driver of `backend` on `place`. */
export async function createDriver(backend: DriverBackend, place: string): Promise<StorageDriver> {
  if (backend === 'redis') {
    const { RedisStorageDriver } = await import('../lib/storage/redis');
    return new RedisStorageDriver({ url: BENCH_REDIS_URL, keyPrefix: place });
  }
  const { PostgresStorageDriver } = await import('../lib/storage/postgres');
  return new PostgresStorageDriver({ connectionString: BENCH_POSTGRES_URL, table: place });
}

/** Where a driver backend keeps its data, for the results' description. */
export const serverOf = (backend: DriverBackend): string =>
  backend === 'redis' ? BENCH_REDIS_URL : BENCH_POSTGRES_URL;

/** What one commit is on `backend`, for the results' description. */
export const commitOf = (backend: DriverBackend): string =>
  backend === 'redis'
    ? 'one Lua-script commit of the changed items with compare-and-set'
    : 'one transaction committing the changed items with compare-and-set';

/** Removes what a cell wrote (the bench may SCAN and DROP; the drivers never do). */
export async function removePlace(backend: DriverBackend, place: string): Promise<void> {
  if (backend === 'redis') {
    const { default: Redis } = await import('ioredis');
    const client = new Redis(BENCH_REDIS_URL);
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${place}*`, 'COUNT', 1000);
      if (keys.length > 0) await client.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    client.disconnect();
    return;
  }
  const { Client } = await import('pg');
  const client = new Client({ connectionString: BENCH_POSTGRES_URL });
  await client.connect();
  for (const suffix of ['', '_meta', '_leases', '_quarantine']) {
    await client.query(`DROP TABLE IF EXISTS "${place}${suffix}"`);
  }
  await client.end();
}
