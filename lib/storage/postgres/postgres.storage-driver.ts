import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import type {
  AppliedChange,
  CommitOptions,
  CommitResult,
  DriverChange,
  DriverWatchEvent,
  Lease,
  LoadResult,
  StorageDriver,
  StoredProblem,
  StoredRecord,
} from '../../interfaces/storage-driver.interface';
import { badStoredData, driverNotOpen, postgresBadRowFix } from '../../persistence.messages';
import { checkDriverChanges, invalidDriverArgument } from '../driver-changes.util';
import { inTransaction, loadPgModule, toPersistenceError } from './postgres.client';
import { commitInTransaction, parseRevision } from './postgres.commit';
import { acquireLeaseRow, releaseLeaseRow, renewLeaseRow } from './postgres.leases';
import { PostgresListener } from './postgres.listener';
import { migrate, PostgresTables, TABLE_NAME } from './postgres.schema';

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
   * and uses the channel `<table>`): one per store, so that several stores share one database.
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

const DRIVER = 'PostgresStorageDriver';
const DEFAULT_TABLE = 'nestjs_persistence';

function invalid(option: string, got: unknown, fix: string): PersistenceError {
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

const isPositiveInteger = (value: unknown): boolean =>
  Number.isInteger(value) && (value as number) > 0;

/**
 * Keeps the store's items in one PostgreSQL table, for applications running several replicas
 * (docs/storage-drivers.md). A commit is one transaction (compare-and-set on each item's revision);
 * replicas learn of each other's commits through LISTEN/NOTIFY; leases are rows timed by the
 * server's clock. `pg` is loaded at `open()`, so it is only needed when used.
 */
export class PostgresStorageDriver implements StorageDriver {
  readonly driverVersion = 1 as const;
  readonly location: string;
  readonly replicaId: string;
  private readonly tables: PostgresTables;
  private readonly connectionString?: string;
  private readonly ownsPool: boolean;
  private readonly connectTimeoutMs: number;
  private readonly poolSize: number;
  private readonly logger = new Logger(DRIVER);
  private pool?: Pool;
  private listener?: PostgresListener;
  private state: 'new' | 'open' | 'closed' = 'new';
  private readonly listeners = new Set<(event: DriverWatchEvent) => void>();

  constructor(options: PostgresStorageDriverOptions) {
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
      throw invalid(
        'connectTimeoutMs',
        connectTimeoutMs,
        'Give a positive integer (milliseconds).',
      );
    }
    if (poolSize !== undefined && (!isPositiveInteger(poolSize) || poolSize < 2)) {
      throw invalid('poolSize', poolSize, 'Give an integer of at least 2 (connections).');
    }
    this.tables = new PostgresTables(table ?? DEFAULT_TABLE);
    this.connectionString = connectionString;
    this.pool = pool;
    this.ownsPool = pool === undefined;
    this.replicaId = replicaId ?? randomUUID();
    this.connectTimeoutMs = connectTimeoutMs ?? 2000;
    this.poolSize = poolSize ?? 4;
    const server =
      connectionString !== undefined ? publicServer(connectionString) : poolServer(pool!);
    this.location = `${server} (table "${this.tables.table}")`;
  }

  /**
   * Connects, and creates or migrates the tables. Rejects with `PERSISTENCE_STORAGE_UNAVAILABLE`
   * (retryable) when the server does not answer, with `PERSISTENCE_OPTIONAL_DEPENDENCY_MISSING` when
   * pg is not installed, with `PERSISTENCE_STORAGE_REFUSED` when the server says no (credentials,
   * permissions, tables of a newer release).
   */
  async open(): Promise<void> {
    if (this.state === 'open') return;
    if (this.state === 'closed') throw this.notOpen();
    let pool = this.pool;
    try {
      if (pool === undefined) {
        const PoolClass = await loadPgModule();
        pool = new PoolClass({
          connectionString: this.connectionString,
          max: this.poolSize,
          connectionTimeoutMillis: this.connectTimeoutMs,
          keepAlive: true,
          application_name: `nestjs-persistence:${this.replicaId}`.slice(0, 63),
        });
        // An idle connection that the server drops emits this; the next query reconnects.
        pool.on('error', () => undefined);
      }
      await migrate(pool, this.tables, this.location);
    } catch (error) {
      if (this.ownsPool) await pool?.end().catch(() => undefined);
      throw toPersistenceError(error, this.location, 'open');
    }
    this.pool = pool;
    this.state = 'open';
  }

  /** Stops watching and, when the driver created it, ends its pool. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.listeners.clear();
    this.listener?.stop();
    this.listener = undefined;
    if (wasOpen && this.ownsPool && this.pool !== undefined) {
      await this.pool.end().catch(() => undefined);
    }
  }

  async loadAll(collections: readonly string[]): Promise<LoadResult> {
    const pool = this.openPool();
    try {
      // One statement reads from one snapshot: the state after some whole commit.
      const { rows } = await pool.query<Row>(
        `SELECT collection, id, data, revision::text AS revision FROM ${this.tables.items}
          WHERE collection = ANY($1::text[])`,
        [[...collections]],
      );
      return await this.judge(pool, rows);
    } catch (error) {
      throw toPersistenceError(error, this.location, 'loadAll');
    }
  }

  async read(collection: string, ids: readonly string[]): Promise<LoadResult> {
    const pool = this.openPool();
    if (ids.length === 0) return { records: [], problems: [] };
    try {
      const { rows } = await pool.query<Row>(
        `SELECT collection, id, data, revision::text AS revision FROM ${this.tables.items}
          WHERE collection = $1 AND id = ANY($2::text[])`,
        [collection, [...ids]],
      );
      return await this.judge(pool, rows);
    } catch (error) {
      throw toPersistenceError(error, this.location, 'read');
    }
  }

  async commit(changes: readonly DriverChange[], options: CommitOptions): Promise<CommitResult> {
    const pool = this.openPool();
    const policy = options?.conflicts;
    if (policy !== 'last-write-wins' && policy !== 'reject') {
      throw invalid('conflicts', policy, "Give 'last-write-wins' or 'reject'.");
    }
    checkDriverChanges(DRIVER, changes);
    if (changes.length === 0) return { applied: [], conflicts: [], blocked: [] };
    let outcome: Awaited<ReturnType<typeof commitInTransaction>>;
    try {
      outcome = await inTransaction(pool, 'BEGIN', (client) =>
        commitInTransaction(client, this.tables, this.location, this.replicaId, changes, policy),
      );
    } catch (error) {
      throw toPersistenceError(error, this.location, 'commit');
    }
    const { revision, apply, conflicts, bad } = outcome;
    const applied: AppliedChange[] = [];
    changes.forEach((change, i) => {
      if (apply[i] && revision !== undefined) {
        applied.push({
          collection: change.collection,
          id: change.id,
          revision,
          deleted: change.data === null,
        });
      }
    });
    const blocked: StoredProblem[] = [];
    for (const { index, revision: stored } of bad) {
      const { collection, id } = changes[index];
      blocked.push(await this.problem(pool, collection, id, revisionProblem(stored)));
    }
    return { revision, applied, conflicts, blocked };
  }

  watch(listener: (event: DriverWatchEvent) => void): () => void {
    const pool = this.openPool();
    this.listeners.add(listener);
    if (this.listener === undefined) {
      this.listener = new PostgresListener(
        pool,
        this.tables,
        this.logger,
        (event) => {
          if (event.kind === 'resync') return this.emit(event);
          if (event.origin === this.replicaId) return;
          if (event.changes === undefined) return this.emit({ kind: 'resync' });
          this.emit({
            kind: 'changes',
            origin: event.origin,
            revision: event.revision,
            changes: event.changes,
          });
        },
        `nestjs-persistence:${this.replicaId}:listen`.slice(0, 63),
      );
      this.listener.start();
    }
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Resolves once the LISTEN started by {@link watch} is active, so that a load that follows misses
   * no commit. Rejects with `PERSISTENCE_STORAGE_UNAVAILABLE` after `connectTimeoutMs`.
   */
  async watchReady(): Promise<void> {
    if (this.listener === undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            toPersistenceError(
              new Error(`not listening within ${this.connectTimeoutMs} ms`),
              this.location,
              'watch',
            ),
          ),
        this.connectTimeoutMs,
      );
    });
    try {
      await Promise.race([this.listener.ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async acquireLease(name: string, ttlMs: number): Promise<Lease | undefined> {
    const pool = this.openPool();
    if (typeof name !== 'string' || name.length === 0) {
      throw invalid('lease name', name, "Give a non-empty string, e.g. 'backup'.");
    }
    if (!isPositiveInteger(ttlMs)) {
      throw invalid('lease ttlMs', ttlMs, 'Give a positive integer (milliseconds).');
    }
    const holder = `${this.replicaId}/${randomUUID()}`;
    let token: number | undefined;
    try {
      token = await acquireLeaseRow(pool, this.tables, name, holder, ttlMs);
    } catch (error) {
      throw toPersistenceError(error, this.location, 'acquireLease');
    }
    if (token === undefined) return undefined;
    const held = token;
    const run = async <T>(operation: string, work: (pool: Pool) => Promise<T>): Promise<T> => {
      try {
        return await work(this.openPool());
      } catch (error) {
        throw toPersistenceError(error, this.location, `lease ${operation}`);
      }
    };
    return {
      name,
      token: held,
      renew: () => run('renew', (p) => renewLeaseRow(p, this.tables, name, holder, held, ttlMs)),
      release: () => run('release', (p) => releaseLeaseRow(p, this.tables, name, holder, held)),
    };
  }

  private openPool(): Pool {
    if (this.state !== 'open' || this.pool === undefined) throw this.notOpen();
    return this.pool;
  }

  private notOpen(): PersistenceError {
    return new PersistenceError(
      PersistenceErrorCode.StoreClosed,
      driverNotOpen(this.location, this.state === 'closed' ? 'closed' : 'not open'),
      { path: this.location },
    );
  }

  /** Splits what was read into records and problems (copying the bad rows aside). */
  private async judge(pool: Pool, rows: readonly Row[]): Promise<LoadResult> {
    const records: StoredRecord[] = [];
    const problems: StoredProblem[] = [];
    for (const row of rows) {
      const revision = parseRevision(row.revision);
      if (revision !== undefined && Buffer.isBuffer(row.data)) {
        records.push({ collection: row.collection, id: row.id, data: row.data, revision });
      } else {
        const problem = Buffer.isBuffer(row.data)
          ? revisionProblem(row.revision)
          : 'has data that pg did not return as bytes (a custom type parser for bytea?)';
        problems.push(await this.problem(pool, row.collection, row.id, problem));
      }
    }
    return { records, problems };
  }

  /** A bad row: copied to the quarantine table (never moved or deleted), reported with a typed error. */
  private async problem(
    pool: Pool,
    collection: string,
    id: string,
    problem: string,
  ): Promise<StoredProblem> {
    let quarantinedAs: string | undefined;
    try {
      const { rows } = await pool.query<{ digest: string }>(
        `WITH bad AS (
           SELECT collection, id, md5(data || convert_to(revision::text, 'UTF8')) AS digest,
                  data, revision::text AS revision, written_by
             FROM ${this.tables.items} WHERE collection = $1 AND id = $2),
         copied AS (
           INSERT INTO ${this.tables.quarantine}
                  (collection, id, digest, data, revision, written_by, problem)
           SELECT collection, id, digest, data, revision, written_by, $3 FROM bad
           ON CONFLICT DO NOTHING)
         SELECT digest FROM bad`,
        [collection, id, problem],
      );
      if (rows.length > 0) {
        quarantinedAs = `${this.tables.quarantine} (collection, id, digest '${rows[0].digest}')`;
      }
    } catch (error) {
      this.logger.warn(`Could not copy a bad row aside: ${(error as Error).message}`);
    }
    const key = `${this.tables.items} row (collection ${JSON.stringify(collection)}, id ${JSON.stringify(id)})`;
    const error = new PersistenceError(
      PersistenceErrorCode.BadStoredData,
      badStoredData(
        this.location,
        key,
        problem,
        quarantinedAs,
        postgresBadRowFix(this.tables.table),
      ),
      { operation: 'load', adapter: collection, itemId: id, path: key },
    );
    return { collection, id, error, quarantinedAs };
  }

  private emit(event: DriverWatchEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.logger.error(`A watch listener threw: ${(error as Error).message}`);
      }
    }
  }
}

/** One row as read. */
interface Row {
  collection: string;
  id: string;
  data: Buffer;
  revision: string;
}

const revisionProblem = (revision: string): string =>
  `has revision ${revision}, not a positive integer below 2^53`;

/** Where a pool of the application's own connects, as far as its options say. */
function poolServer(pool: Pool): string {
  const options = (pool as { options?: { host?: string; port?: number; database?: string } })
    .options;
  if (options === undefined) return 'postgres';
  const connectionString = (options as { connectionString?: string }).connectionString;
  if (typeof connectionString === 'string') return publicServer(connectionString);
  return `postgres://${options.host ?? 'localhost'}:${options.port ?? 5432}/${options.database ?? ''}`;
}
