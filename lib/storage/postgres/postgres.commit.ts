import type { PoolClient } from 'pg';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import type {
  ConflictPolicy,
  DriverChange,
  DriverConflict,
} from '../../interfaces/storage-driver.interface';
import { postgresCounterDamaged, storageRefused } from '../../persistence.messages';
import { Refusal } from './postgres.client';
import { invalid } from './postgres.options';
import { encodeNotice } from './postgres.notices';
import type { PostgresTables } from './postgres.schema';

/*
 * One commit, inside one transaction (postgres.client.ts inTransaction): everything below becomes
 * visible at COMMIT, or nothing does. The revision counter row is locked first, so commits of every
 * replica run one after the other (no deadlock between commits that touch the same items in another
 * order, and revisions in commit order without gaps); each item's row is then locked and compared.
 */

/** Rows per INSERT: 3 parameters each, well under PostgreSQL's 65,535 per statement. */
const INSERT_ROWS = 1000;

/** A stored revision as this driver writes it: a positive integer that JavaScript holds exactly. */
export const parseRevision = (value: string | null): number | undefined =>
  value !== null && /^[1-9]\d{0,15}$/.test(value) && Number.isSafeInteger(Number(value))
    ? Number(value)
    : undefined;

/** Bytes of collection + id together: a primary-key entry must stay under btree's limit (~2.7 KB). */
export const MAX_KEY_BYTES = 2048;

/**
 * Refuses, before anything is sent, a change whose collection or id PostgreSQL cannot keep exactly:
 * a NUL (text cannot hold it), a lone surrogate (no UTF-8 form: it would come back changed), or a
 * key too long for the primary-key index.
 */
export function checkPostgresKeys(changes: readonly DriverChange[]): void {
  for (const { collection, id } of changes) {
    for (const [option, value] of [
      ['change.collection', collection],
      ['change.id', id],
    ] as const) {
      if (value.includes('\u0000') || !value.isWellFormed()) {
        throw invalid(
          option,
          value,
          'PostgreSQL text holds no NUL and no lone UTF-16 surrogate: remove them (the store never ' +
            'sends them: it keys items by file-name stems).',
        );
      }
    }
    if (Buffer.byteLength(collection) + Buffer.byteLength(id) > MAX_KEY_BYTES) {
      throw invalid(
        'change.id',
        id,
        `Give a collection and id of at most ${MAX_KEY_BYTES} bytes of UTF-8 together (the ` +
          "primary-key index's limit).",
      );
    }
  }
}

/** What one commit did: indexes into the changes. */
export interface CommitOutcome {
  revision?: number;
  apply: boolean[];
  conflicts: DriverConflict[];
  /** Changes whose stored row is bad data (the stored revision, as text). */
  bad: Array<{ index: number; revision: string }>;
}

export async function commitInTransaction(
  client: PoolClient,
  t: PostgresTables,
  location: string,
  origin: string,
  changes: readonly DriverChange[],
  policy: ConflictPolicy,
): Promise<CommitOutcome> {
  const counter = await client.query<{ value: string }>(
    `SELECT value::text AS value FROM ${t.meta} WHERE key = 'revision' FOR UPDATE`,
  );
  const last = counter.rows.length === 0 ? undefined : counter.rows[0].value;
  if (last === undefined || !/^(0|[1-9]\d{0,15})$/.test(last)) {
    throw new Refusal(
      new PersistenceError(
        PersistenceErrorCode.StorageRefused,
        storageRefused(
          location,
          'commit',
          postgresCounterDamaged(location, t.table, last === undefined ? 'missing' : last),
        ),
        { operation: 'save', path: location },
      ),
    );
  }
  const collections = changes.map((c) => c.collection);
  const ids = changes.map((c) => c.id);
  const { rows } = await client.query<{ i: string; revision: string; written_by: string }>(
    `SELECT k.i::text AS i, s.revision::text AS revision, s.written_by
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(collection, id, i)
       JOIN ${t.items} s ON s.collection = k.collection AND s.id = k.id
     FOR UPDATE OF s`,
    [collections, ids],
  );
  const stored = new Map(rows.map((row) => [Number(row.i) - 1, row]));
  const apply: boolean[] = [];
  const bad: CommitOutcome['bad'] = [];
  const conflicting: number[] = [];
  changes.forEach((change, index) => {
    const row = stored.get(index);
    const revision = row === undefined ? 0 : parseRevision(row.revision);
    if (revision === undefined) {
      bad.push({ index, revision: row!.revision });
      apply.push(false);
      return;
    }
    const expected = change.expectedRevision ?? 0;
    const conflict =
      revision !== expected &&
      row?.written_by !== origin &&
      !(change.data === null && row === undefined);
    if (conflict) conflicting.push(index);
    apply.push(!conflict || policy === 'last-write-wins');
  });
  const conflicts = await remoteVersions(client, t, changes, conflicting, stored, policy);
  if (!apply.includes(true)) return { apply, conflicts, bad };

  const revision = Number(last) + 1;
  const sets = changes.filter((c, i) => apply[i] && c.data !== null);
  for (let start = 0; start < sets.length; start += INSERT_ROWS) {
    const chunk = sets.slice(start, start + INSERT_ROWS);
    const values = chunk.map((_, k) => `($${3 * k + 3}, $${3 * k + 4}, $${3 * k + 5}, $1, $2)`);
    await client.query(
      `INSERT INTO ${t.items} (collection, id, data, revision, written_by)
       VALUES ${values.join(', ')}
       ON CONFLICT (collection, id) DO UPDATE
         SET data = excluded.data, revision = excluded.revision, written_by = excluded.written_by`,
      [revision, origin, ...chunk.flatMap((c) => [c.collection, c.id, c.data])],
    );
  }
  const removals = changes.filter((c, i) => apply[i] && c.data === null);
  if (removals.length > 0) {
    await client.query(
      `DELETE FROM ${t.items}
        WHERE (collection, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [removals.map((c) => c.collection), removals.map((c) => c.id)],
    );
  }
  await client.query(`UPDATE ${t.meta} SET value = $1 WHERE key = 'revision'`, [revision]);
  const payloads = encodeNotice(
    origin,
    revision,
    changes
      .filter((_, i) => apply[i])
      .map((c) => ({ collection: c.collection, id: c.id, deleted: c.data === null })),
  );
  await client.query(
    `SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS n(p, i) ORDER BY i`,
    [t.channel, payloads],
  );
  return { revision, apply, conflicts, bad };
}

/** The stored bytes of the conflicting items (their rows are locked: they stay as read). */
async function remoteVersions(
  client: PoolClient,
  t: PostgresTables,
  changes: readonly DriverChange[],
  conflicting: readonly number[],
  stored: ReadonlyMap<number, { revision: string }>,
  policy: ConflictPolicy,
): Promise<DriverConflict[]> {
  if (conflicting.length === 0) return [];
  const present = conflicting.filter((i) => stored.has(i));
  const data = new Map<number, Buffer>();
  if (present.length > 0) {
    const { rows } = await client.query<{ i: string; data: Buffer }>(
      `SELECT k.i::text AS i, s.data
         FROM unnest($1::int[], $2::text[], $3::text[]) AS k(i, collection, id)
         JOIN ${t.items} s ON s.collection = k.collection AND s.id = k.id`,
      [present, present.map((i) => changes[i].collection), present.map((i) => changes[i].id)],
    );
    for (const row of rows) data.set(Number(row.i), row.data);
  }
  return conflicting.map((i) => {
    const change = changes[i];
    const row = stored.get(i);
    return {
      collection: change.collection,
      id: change.id,
      expectedRevision: change.expectedRevision ?? 0,
      local: change.data,
      remote: {
        data: data.get(i) ?? null,
        revision: row === undefined ? 0 : Number(row.revision),
      },
      applied: policy === 'last-write-wins',
    };
  });
}
