import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import { postgresSchemaTooNew } from '../../persistence.messages';
import { inTransaction, Refusal, sqlState } from './postgres.client';

/*
 * The driver's tables, in one place (docs/storage-drivers.md). Every name derives from the `table`
 * option, so stores with different tables share one database without meeting:
 *
 *   <table>             (collection, id) primary key, data bytea, revision bigint, written_by text
 *   <table>_meta        key/value: 'schema' (the layout version), 'revision' (the last commit's)
 *   <table>_leases      name primary key, holder, token (fencing, never decreases), expires_at
 *   <table>_quarantine  copies of bad rows: collection, id, digest, data, revision, problem, copied_at
 *   channel <table>     LISTEN/NOTIFY: the notices of commits; `<table>@<8 hex of md5(schema)>`
 *                       when the tables are not in `public` (channels are per database, not
 *                       per schema: two schemas' stores of one name must not hear each other)
 */

/** The layout version this code writes; a table at a higher version was made by a newer release. */
export const SCHEMA_VERSION = 1;

/** A name of at most 48 characters: room for the suffixes within PostgreSQL's 63. */
export const TABLE_NAME = /^[a-z_][a-z0-9_]{0,47}$/;

/** The quoted names of one driver's tables. */
export class PostgresTables {
  readonly items: string;
  readonly meta: string;
  readonly leases: string;
  readonly quarantine: string;
  /** The LISTEN/NOTIFY channel (as a string argument of pg_notify); see {@link inSchema}. */
  channel: string;

  constructor(readonly table: string) {
    this.items = `"${table}"`;
    this.meta = `"${table}_meta"`;
    this.leases = `"${table}_leases"`;
    this.quarantine = `"${table}_quarantine"`;
    this.channel = table;
  }

  /** Names the channel after the schema the tables are in (`current_schema()` at open). */
  inSchema(schema: string): void {
    this.channel =
      schema === 'public'
        ? this.table
        : `${this.table}@${createHash('md5').update(schema).digest('hex').slice(0, 8)}`;
  }
}

/** Each migration brings the layout from the version before it to its index + 1. */
const migrations = (t: PostgresTables): string[][] => [
  [
    `CREATE TABLE IF NOT EXISTS ${t.items} (
       collection text NOT NULL,
       id text NOT NULL,
       data bytea NOT NULL,
       revision bigint NOT NULL,
       written_by text NOT NULL,
       PRIMARY KEY (collection, id))`,
    `CREATE TABLE IF NOT EXISTS ${t.leases} (
       name text PRIMARY KEY,
       holder text NOT NULL,
       token bigint NOT NULL,
       expires_at timestamptz NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS ${t.quarantine} (
       collection text NOT NULL,
       id text NOT NULL,
       digest text NOT NULL,
       data bytea,
       revision text,
       written_by text,
       problem text NOT NULL,
       copied_at timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (collection, id, digest))`,
    `INSERT INTO ${t.meta} (key, value) VALUES ('revision', 0) ON CONFLICT (key) DO NOTHING`,
  ],
];

async function schemaVersion(client: Pool | PoolClient, t: PostgresTables): Promise<number> {
  const { rows } = await client.query<{ value: string }>(
    `SELECT value::text AS value FROM ${t.meta} WHERE key = 'schema'`,
  );
  return rows.length === 0 ? 0 : Number(rows[0].value);
}

function tooNew(t: PostgresTables, location: string, found: number): PersistenceError {
  return new PersistenceError(
    PersistenceErrorCode.StorageRefused,
    postgresSchemaTooNew(location, t.table, found, SCHEMA_VERSION),
    { operation: 'init', path: location },
  );
}

/**
 * Creates the tables, or migrates them to {@link SCHEMA_VERSION}, under a transaction-scoped
 * advisory lock on the table's name: replicas booting at once run it one after the other, and each
 * after the first finds the work done. Layout and version change in one transaction (DDL is
 * transactional in PostgreSQL), so a crash half-way leaves the old layout whole.
 */
export async function migrate(pool: Pool, t: PostgresTables, location: string): Promise<void> {
  const { rows } = await pool.query<{ schema: string | null }>('SELECT current_schema() AS schema');
  t.inSchema(rows[0]?.schema ?? 'public');
  try {
    const current = await schemaVersion(pool, t);
    if (current === SCHEMA_VERSION) return;
    if (current > SCHEMA_VERSION) throw tooNew(t, location, current);
  } catch (error) {
    if (error instanceof PersistenceError) throw error;
    if (sqlState(error) !== '42P01') throw error; // 42P01: no such table yet
  }
  await inTransaction(pool, 'BEGIN', async (client) => {
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
      `nestjs-persistence:${t.table}`,
    ]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${t.meta} (key text PRIMARY KEY, value bigint NOT NULL)`,
    );
    const current = await schemaVersion(client, t);
    if (current > SCHEMA_VERSION) throw new Refusal(tooNew(t, location, current));
    const steps = migrations(t);
    for (let version = current + 1; version <= SCHEMA_VERSION; version++) {
      for (const statement of steps[version - 1]) await client.query(statement);
    }
    await client.query(
      `INSERT INTO ${t.meta} (key, value) VALUES ('schema', $1)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      [SCHEMA_VERSION],
    );
  });
}
