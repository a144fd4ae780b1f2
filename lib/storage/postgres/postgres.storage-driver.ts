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
} from '../../interfaces/storage-driver.interface';
import { driverNotOpen } from '../../persistence.messages';
import { checkDriverCommit, checkLeaseArguments, readyWithin } from '../driver-changes.util';
import { inTransaction, loadPgModule, toPersistenceError } from './postgres.client';
import { checkPostgresKeys, commitInTransaction } from './postgres.commit';
import { acquireLeaseRow, releaseLeaseRow, renewLeaseRow } from './postgres.leases';
import { PostgresListener } from './postgres.listener';
import { DRIVER, type PostgresStorageDriverOptions, resolveOptions } from './postgres.options';
import { badRow, judgeRows, revisionProblem, type Row, type RowPlace } from './postgres.quarantine';
import { migrate, PostgresTables } from './postgres.schema';

export type { PostgresStorageDriverOptions } from './postgres.options';

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
    const resolved = resolveOptions(options);
    this.tables = new PostgresTables(resolved.table);
    this.connectionString = resolved.connectionString;
    this.pool = resolved.pool;
    this.ownsPool = resolved.pool === undefined;
    this.replicaId = resolved.replicaId ?? randomUUID();
    this.connectTimeoutMs = resolved.connectTimeoutMs;
    this.poolSize = resolved.poolSize;
    this.location = `${resolved.server} (table "${this.tables.table}")`;
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
          // A peer that vanished without a reset (a cut network) is noticed, not waited on forever.
          keepAlive: true,
          keepAliveInitialDelayMillis: 10_000,
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
      return await judgeRows(this.place(pool), rows);
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
      return await judgeRows(this.place(pool), rows);
    } catch (error) {
      throw toPersistenceError(error, this.location, 'read');
    }
  }

  async commit(changes: readonly DriverChange[], options: CommitOptions): Promise<CommitResult> {
    const pool = this.openPool();
    const policy = checkDriverCommit(DRIVER, changes, options);
    checkPostgresKeys(changes);
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
      blocked.push(await badRow(this.place(pool), collection, id, revisionProblem(stored)));
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
    await readyWithin(this.listener.ready, this.connectTimeoutMs, () =>
      toPersistenceError(
        new Error(`not listening within ${this.connectTimeoutMs} ms`),
        this.location,
        'watch',
      ),
    );
  }

  async acquireLease(name: string, ttlMs: number): Promise<Lease | undefined> {
    const pool = this.openPool();
    checkLeaseArguments(DRIVER, name, ttlMs);
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

  private place(pool: Pool): RowPlace {
    return { pool, tables: this.tables, location: this.location, logger: this.logger };
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
