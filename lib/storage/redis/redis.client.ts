import { storageError } from '../driver-changes.util';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import { driverDependencyMissing } from '../../persistence.messages';
import type { RedisScript } from './redis.scripts';

/* Loading ioredis lazily, the client options that make commands fail fast, and error mapping. */

/** A client the driver talks through: one server (`Redis`) or a Redis Cluster (`Cluster`). */
export type RedisConnection = Redis | Cluster;

/** True for an ioredis `Cluster` client. */
export const isCluster = (client: RedisConnection): client is Cluster =>
  (client as Partial<Cluster>).isCluster === true;

/** The ioredis constructor. */
export type RedisConstructor = new (url: string, options: RedisOptions) => Redis;

const DRIVER = 'RedisStorageDriver';

/**
 * Loads `ioredis` (an optional peer dependency) only when a Redis driver opens, so an application
 * that does not use Redis never loads it. `name` is a parameter for the test of a missing package.
 */
export async function loadRedisModule(name = 'ioredis'): Promise<RedisConstructor> {
  let loaded: { default?: unknown; Redis?: unknown };
  try {
    loaded = (await import(name)) as { default?: unknown; Redis?: unknown };
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new PersistenceError(
      PersistenceErrorCode.OptionalDependencyMissing,
      driverDependencyMissing(DRIVER, name, reason),
      { operation: 'init', cause: error },
    );
  }
  const constructor = loaded.Redis ?? loaded.default;
  if (typeof constructor !== 'function') {
    throw new PersistenceError(
      PersistenceErrorCode.OptionalDependencyMissing,
      driverDependencyMissing(DRIVER, name, 'it exports no Redis class; install ioredis 5 or 6'),
      { operation: 'init' },
    );
  }
  return constructor as RedisConstructor;
}

/**
 * Options of the clients the driver creates itself: while disconnected, commands fail at once
 * (no offline queue, no retry of a command whose connection dropped: a commit's outcome is then
 * decided by the next commit, never by a silent resend) while the client keeps reconnecting.
 */
export function clientOptions(connectTimeoutMs: number, connectionName: string): RedisOptions {
  return {
    connectionName,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: connectTimeoutMs,
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
  };
}

/** Redis replies that mean "not now, try again" rather than "no". */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

/** Maps anything ioredis threw to a typed error: retryable (unavailable) or refused. */
export function toPersistenceError(
  error: unknown,
  location: string,
  operation: string,
): PersistenceError {
  if (error instanceof PersistenceError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const isReply = error instanceof Error && error.name === 'ReplyError';
  return storageError(
    !isReply || TRANSIENT_REPLY.test(message),
    location,
    operation,
    message,
    error,
  );
}

/** Runs a script by SHA-1, loading it (EVAL) when the server does not have it yet. */
export async function runScript(
  client: RedisConnection,
  script: RedisScript,
  keys: readonly string[],
  args: ReadonlyArray<string | Buffer | number>,
): Promise<unknown> {
  try {
    return await client.callBuffer('EVALSHA', script.sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    return client.callBuffer('EVAL', script.lua, keys.length, ...keys, ...args);
  }
}
