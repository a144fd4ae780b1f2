import { storageError } from '../driver-changes.util';
import type { Pool, PoolClient, PoolConfig } from 'pg';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import { driverDependencyMissing } from '../../persistence.messages';

/* Loading pg lazily, running a transaction on one pooled connection, and error mapping. */

/** The pg Pool constructor. */
export type PoolConstructor = new (config: PoolConfig) => Pool;

const DRIVER = 'PostgresStorageDriver';

/**
 * Loads `pg` (an optional peer dependency) only when a PostgreSQL driver opens, so an application
 * that does not use PostgreSQL never loads it. `name` is a parameter for the test of a missing package.
 */
export async function loadPgModule(name = 'pg'): Promise<PoolConstructor> {
  let loaded: { Pool?: unknown; default?: { Pool?: unknown } };
  try {
    loaded = (await import(name)) as typeof loaded;
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new PersistenceError(
      PersistenceErrorCode.OptionalDependencyMissing,
      driverDependencyMissing(DRIVER, name, reason),
      { operation: 'init', cause: error },
    );
  }
  const constructor = loaded.Pool ?? loaded.default?.Pool;
  if (typeof constructor !== 'function') {
    throw new PersistenceError(
      PersistenceErrorCode.OptionalDependencyMissing,
      driverDependencyMissing(DRIVER, name, 'it exports no Pool class; install pg 8'),
      { operation: 'init' },
    );
  }
  return constructor as PoolConstructor;
}

/**
 * SQLSTATE classes and codes that mean "not now, try again" rather than "no": connection
 * exceptions (08), a server shutting down or starting (57P01-57P03), a cancelled statement (57014),
 * too many connections (53300), serialization failures and deadlocks (40001, 40P01), a lock not
 * available (55P03).
 */
const TRANSIENT_STATE = /^(08|57P0[123]$|57014$|53300$|40001$|40P01$|55P03$)/;

/** The SQLSTATE of a server error, undefined for a client-side one (socket, timeout). */
export const sqlState = (error: unknown): string | undefined => {
  // A server error carries a severity; a socket error (EPIPE, ECONNRESET) has a code too, but none.
  const { code, severity } = (error ?? {}) as { code?: unknown; severity?: unknown };
  return typeof severity === 'string' && typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)
    ? code
    : undefined;
};

/** Maps anything pg threw to a typed error: retryable (unavailable) or refused. */
export function toPersistenceError(
  error: unknown,
  location: string,
  operation: string,
): PersistenceError {
  if (error instanceof PersistenceError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const state = sqlState(error);
  const reason = state === undefined ? message : `${message} [SQLSTATE ${state}]`;
  return storageError(
    state === undefined || TRANSIENT_STATE.test(state),
    location,
    operation,
    reason,
    error,
  );
}

/** Thrown inside a transaction to roll it back and reject with `error` as it is. */
export class Refusal extends Error {
  constructor(readonly error: PersistenceError) {
    super(error.message);
  }
}

/**
 * Checks a connection out of the pool with `onError` listening from the very start: a server error
 * that arrives in the same read as the end of the handshake (a backend terminated at that moment)
 * is emitted before an `await pool.connect()` would resume, and an 'error' event nobody listens to
 * would crash the process. Resolves the client and the function that stops listening.
 */
export function checkOut(
  pool: Pool,
  onError: (error: Error) => void,
): Promise<{ client: PoolClient; unlisten: () => void }> {
  return new Promise((resolve, reject) => {
    pool.connect((error: Error | undefined, client: PoolClient | undefined) => {
      if (error !== undefined || client === undefined) {
        reject(error ?? new Error('the pool gave no connection'));
        return;
      }
      client.on('error', onError);
      resolve({ client, unlisten: () => client.off('error', onError) });
    });
  });
}

/** Serialization failures and deadlocks: the transaction can be run again as it is. */
const RETRYABLE = new Set(['40001', '40P01']);

/**
 * Runs `work` in one transaction on one pooled connection: COMMIT when it resolves, ROLLBACK when it
 * throws (nothing of it is then visible). A connection whose state is unknown after an error (the
 * ROLLBACK failed too) is destroyed, not returned to the pool. Serialization failures and deadlocks
 * are retried a few times.
 */
export async function inTransaction<T>(
  pool: Pool,
  begin: string,
  work: (client: PoolClient) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    // An error event on a checked-out client (the server went away) must not crash the process;
    // the pending query rejects on its own.
    const { client, unlisten } = await checkOut(pool, () => undefined);
    let broken: Error | undefined;
    try {
      await client.query(begin);
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      }
      const state = sqlState(error);
      if (broken === undefined && state !== undefined && RETRYABLE.has(state) && attempt < 5) {
        continue;
      }
      throw error instanceof Refusal ? error.error : error;
    } finally {
      unlisten();
      client.release(broken);
    }
  }
}
