import type { Pool } from 'pg';
import type { PersistenceError } from '../../errors/persistence.error';
import { invalidDriverArgument } from '../driver-changes.util';
import { TABLE_NAME } from './postgres.schema';

/* The driver's options: their checks, defaults, and the server they name (for messages). */

/** Options of {@link PostgresStorageDriver}. */
export interface PostgresStorageDriverOptions {
  /**
   * The server, as a `postgres://[user:password@]host[:port]/database` URL (libpq parameters such
   * as `?sslmode=require` allowed). Leave out when passing `pool`.
   */
  connectionString?: string;
  /**
   * A `pg` Pool of the application's own to use instead of `connectionString`. The driver never
   * ends it; while watching it holds one of its connections (the LISTEN connection).
   */
  pool?: Pool;
  /**
   * The store's table (the driver adds `<table>_meta`, `<table>_leases` and `<table>_quarantine`,
   * and uses the channel `<table>`, in another schema than `public` `<table>@<8 hex>`): one per
   * store, so that several stores share one database.
   * Replicas of one application share it. Lowercase letters, digits and `_`, at most 48 characters.
   * @default 'nestjs_persistence'
   */
  table?: string;
  /**
   * This replica's id, stamped on its rows and notices: a replica ignores its own notices. Give
   * each replica (process) its own.
   * @default a random UUID per driver
   */
  replicaId?: string;
  /**
   * How long `open()` and `watchReady()` wait for the server before they reject (retryably); also
   * the connection timeout of the pool the driver creates.
   * @default 2000
   */
  connectTimeoutMs?: number;
  /**
   * Connections of the pool the driver creates from `connectionString` (one of them is the LISTEN
   * connection while watching). Not used with `pool`.
   * @default 4
   */
  poolSize?: number;
}

/** The options with their defaults, checked. */
export interface ResolvedPostgresOptions {
  connectionString?: string;
  pool?: Pool;
  table: string;
  replicaId?: string;
  connectTimeoutMs: number;
  poolSize: number;
  /** Where the data are, without credentials. */
  server: string;
}

export const DRIVER = 'PostgresStorageDriver';
const DEFAULT_TABLE = 'nestjs_persistence';

export function invalid(option: string, got: unknown, fix: string): PersistenceError {
  return invalidDriverArgument(DRIVER, option, got, fix);
}

/** The server of a connection string, without credentials, for messages. */
function publicServer(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    return `postgres://${url.host}${url.pathname}`;
  } catch {
    return 'postgres';
  }
}

export const isPositiveInteger = (value: unknown): boolean =>
  Number.isInteger(value) && (value as number) > 0;

/** Checks every option (typed errors that say how to fix them) and fills in the defaults. */
export function resolveOptions(options: PostgresStorageDriverOptions): ResolvedPostgresOptions {
  if (options === null || typeof options !== 'object') {
    throw invalid(
      'options',
      options,
      "Pass an object: new PostgresStorageDriver({ connectionString: 'postgres://…' }).",
    );
  }
  const { connectionString, pool, table, replicaId, connectTimeoutMs, poolSize } = options;
  if (connectionString !== undefined && pool !== undefined) {
    throw invalid('connectionString', connectionString, 'Pass either connectionString or pool.');
  }
  if (connectionString === undefined && pool === undefined) {
    throw invalid(
      'connectionString',
      connectionString,
      "Pass connectionString (e.g. 'postgres://user@127.0.0.1:5432/app') or a pg Pool as pool.",
    );
  }
  if (
    connectionString !== undefined &&
    (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\/./.test(connectionString))
  ) {
    throw invalid(
      'connectionString',
      connectionString,
      "Give a postgres:// URL, e.g. 'postgres://user@127.0.0.1:5432/app'.",
    );
  }
  if (
    pool !== undefined &&
    (pool === null || typeof pool.query !== 'function' || typeof pool.connect !== 'function')
  ) {
    throw invalid('pool', pool, "Pass a pg Pool (new Pool(...) from 'pg'), or connectionString.");
  }
  const poolMax = (pool as { options?: { max?: unknown } } | undefined)?.options?.max;
  if (typeof poolMax === 'number' && poolMax < 2) {
    throw invalid(
      'pool',
      `a Pool of max ${poolMax}`,
      'Give a Pool of at least 2 connections (max): the driver holds one to listen while watching.',
    );
  }
  if (table !== undefined && (typeof table !== 'string' || !TABLE_NAME.test(table))) {
    throw invalid(
      'table',
      table,
      "Give lowercase letters, digits and '_' (not first a digit), at most 48, e.g. 'myapp_state'.",
    );
  }
  if (
    replicaId !== undefined &&
    (typeof replicaId !== 'string' || replicaId.length === 0 || replicaId.length > 128)
  ) {
    throw invalid('replicaId', replicaId, 'Give a non-empty string of at most 128 characters.');
  }
  if (connectTimeoutMs !== undefined && !isPositiveInteger(connectTimeoutMs)) {
    throw invalid('connectTimeoutMs', connectTimeoutMs, 'Give a positive integer (milliseconds).');
  }
  if (poolSize !== undefined && (!isPositiveInteger(poolSize) || poolSize < 2)) {
    throw invalid('poolSize', poolSize, 'Give an integer of at least 2 (connections).');
  }
  return {
    connectionString,
    pool,
    table: table ?? DEFAULT_TABLE,
    replicaId,
    connectTimeoutMs: connectTimeoutMs ?? 2000,
    poolSize: poolSize ?? 4,
    server: connectionString !== undefined ? publicServer(connectionString) : poolServer(pool!),
  };
}

/** Where a pool of the application's own connects, as far as its options say. */
function poolServer(pool: Pool): string {
  const options = (pool as { options?: { host?: string; port?: number; database?: string } })
    .options;
  if (options === undefined) return 'postgres';
  const connectionString = (options as { connectionString?: string }).connectionString;
  if (typeof connectionString === 'string') return publicServer(connectionString);
  return `postgres://${options.host ?? 'localhost'}:${options.port ?? 5432}/${options.database ?? ''}`;
}
