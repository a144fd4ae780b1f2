import { execFileSync } from 'node:child_process';
import { Pool } from 'pg';
import { PersistenceError, PersistenceErrorCode } from 'nestjs-persistence';
import type { DriverWatchEvent, StoredRecord } from '../lib/interfaces/storage-driver.interface';
import { PostgresStorageDriver } from 'nestjs-persistence/postgres';
import { loadPgModule } from '../lib/storage/postgres/postgres.client';
import { encodeNotice, NoticeAssembler } from '../lib/storage/postgres/postgres.notices';
import { childCommand } from './fixtures/child-process';
import { dropTables, POSTGRES_URL, postgresProblem, sql, uniqueTable } from './fixtures/postgres';
import { itOrSkip } from './fixtures/preconditions';
import { until } from './fixtures/redis';

/*
 * The PostgreSQL storage driver against the shared server (POSTGRES_URL; skipped, with the reason,
 * when none answers). Each test has its own table, dropped afterwards.
 */

const problem = postgresProblem();
const itPg = itOrSkip(problem);

const bytes = (value: string): Buffer => Buffer.from(value, 'utf8');
const byId = (records: StoredRecord[]): Record<string, string> =>
  Object.fromEntries(records.map((r) => [`${r.collection}/${r.id}`, r.data.toString('utf8')]));

async function rejection(promise: Promise<unknown>): Promise<PersistenceError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(PersistenceError);
    return error as PersistenceError;
  }
  throw new Error('expected a rejection');
}

function thrown(fn: () => unknown): PersistenceError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(PersistenceError);
    return error as PersistenceError;
  }
  throw new Error('expected a throw');
}

describe('PostgresStorageDriver: options and loading', () => {
  it('rejects bad options with typed errors that say how to fix them', () => {
    const none = thrown(() => new PostgresStorageDriver({}));
    expect(none.code).toBe(PersistenceErrorCode.InvalidOptions);
    expect(none.message).toContain('Pass connectionString');
    const both = thrown(
      () => new PostgresStorageDriver({ connectionString: POSTGRES_URL, pool: {} as never }),
    );
    expect(both.message).toContain('either connectionString or pool');
    const badUrl = thrown(() => new PostgresStorageDriver({ connectionString: 'mysql://x' }));
    expect(badUrl.message).toContain('postgres:// URL');
    const badPool = thrown(() => new PostgresStorageDriver({ pool: {} as never }));
    expect(badPool.message).toContain('"pool"');
    const single = new Pool({ max: 1 });
    const tooSmall = thrown(() => new PostgresStorageDriver({ pool: single }));
    expect(tooSmall.message).toContain('at least 2 connections');
    void single.end();
    for (const table of ['Items', 'a-b', '1x', 'x'.repeat(49), 'a"; DROP TABLE x; --']) {
      const badTable = thrown(
        () => new PostgresStorageDriver({ connectionString: POSTGRES_URL, table }),
      );
      expect(badTable.message).toContain('"table"');
    }
    const badReplica = thrown(
      () => new PostgresStorageDriver({ connectionString: POSTGRES_URL, replicaId: '' }),
    );
    expect(badReplica.message).toContain('"replicaId"');
  });

  it('hides credentials in its location and names its table', () => {
    const driver = new PostgresStorageDriver({
      connectionString: 'postgres://u:secret@db.example:6543/app?sslmode=require',
    });
    expect(driver.location).toBe('postgres://db.example:6543/app (table "nestjs_persistence")');
  });

  it('says "npm install <package>" when the PostgreSQL client package is missing', async () => {
    const error = await rejection(loadPgModule('pg-that-is-not-installed'));
    expect(error.code).toBe(PersistenceErrorCode.OptionalDependencyMissing);
    expect(error.message).toContain('npm install pg-that-is-not-installed');
  });

  it('does not load pg until a driver opens', () => {
    const [node, ...args] = childCommand('test/fixtures/driver-lazy.main.ts');
    const output = execFileSync(node, args, {
      encoding: 'utf8',
      env: { ...process.env, DRIVER: 'postgres' },
    });
    expect(output).toContain('LOADED false function postgres://127.0.0.1/lazy');
  });

  it('rejects calls before open() and after close()', async () => {
    const driver = new PostgresStorageDriver({ connectionString: POSTGRES_URL });
    expect(thrown(() => driver.watch(() => undefined)).code).toBe(PersistenceErrorCode.StoreClosed);
    await driver.close();
    const error = await rejection(driver.loadAll(['a']));
    expect(error.code).toBe(PersistenceErrorCode.StoreClosed);
    expect(error.message).toContain('closed');
  });

  it('splits the notice of a large commit into payloads under the NOTIFY limit', () => {
    const changes = Array.from({ length: 3000 }, (_, i) => ({
      collection: 'sessions',
      id: `id-${i}-${'x'.repeat(i % 50)}`,
      deleted: i % 7 === 0,
    }));
    const payloads = encodeNotice('replica-a', 42, changes);
    expect(payloads.length).toBeGreaterThan(10);
    for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThan(8000);
    const assembler = new NoticeAssembler();
    const results = [...payloads].reverse().map((payload) => assembler.add(payload));
    expect(results.slice(0, -1).every((r) => r.kind === 'pending')).toBe(true);
    expect(results.at(-1)).toEqual({
      kind: 'complete',
      origin: 'replica-a',
      revision: 42,
      changes,
    });
    // An entry larger than any payload cannot be sent: the notice says it is incomplete.
    const huge = encodeNotice('a', 1, [{ collection: 'c', id: 'y'.repeat(9000), deleted: false }]);
    expect(new NoticeAssembler().add(huge[0])).toEqual({
      kind: 'incomplete',
      origin: 'a',
      revision: 1,
    });
  });
});

describe('PostgresStorageDriver against PostgreSQL', () => {
  let table: string;
  const tables: string[] = [];
  const drivers: PostgresStorageDriver[] = [];

  async function driver(replicaId?: string, name = table): Promise<PostgresStorageDriver> {
    const created = new PostgresStorageDriver({
      connectionString: POSTGRES_URL,
      table: name,
      replicaId,
    });
    drivers.push(created);
    await created.open();
    return created;
  }

  beforeEach(() => {
    table = uniqueTable('driver');
    tables.push(table);
  });
  afterEach(async () => {
    for (const created of drivers.splice(0)) await created.close();
    if (problem === undefined) await dropTables(POSTGRES_URL, tables.splice(0));
  });

  itPg('commits bytes and loads them back exactly, with the commit revision', async () => {
    const a = await driver('a');
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const first = await a.commit(
      [
        { collection: 'sessions', id: 's:1', data: all, expectedRevision: null },
        { collection: 'sessions', id: 'ü/2\'"', data: bytes('two'), expectedRevision: 0 },
        { collection: 'a:b', id: 'x', data: Buffer.alloc(0), expectedRevision: null },
      ],
      { conflicts: 'reject' },
    );
    expect(first.revision).toBe(1);
    expect(first.applied.map((c) => [c.id, c.revision, c.deleted])).toEqual([
      ['s:1', 1, false],
      ['ü/2\'"', 1, false],
      ['x', 1, false],
    ]);
    const loaded = await a.loadAll(['sessions', 'a:b', 'empty']);
    expect(loaded.problems).toEqual([]);
    expect(loaded.records.find((r) => r.id === 's:1')?.data.equals(all)).toBe(true);
    expect(loaded.records.find((r) => r.id === 'x')?.data.length).toBe(0);
    expect(loaded.records).toHaveLength(3);
    const rows = await sql<{
      collection: string;
      id: string;
      revision: string;
      written_by: string;
    }>(
      POSTGRES_URL,
      `SELECT collection, id, revision::text, written_by FROM "${table}" ORDER BY collection, id`,
    );
    expect(rows).toEqual([
      { collection: 'a:b', id: 'x', revision: '1', written_by: 'a' },
      { collection: 'sessions', id: 's:1', revision: '1', written_by: 'a' },
      { collection: 'sessions', id: 'ü/2\'"', revision: '1', written_by: 'a' },
    ]);

    const second = await a.commit(
      [{ collection: 'sessions', id: 'ü/2\'"', data: bytes('2'), expectedRevision: 1 }],
      { conflicts: 'reject' },
    );
    expect(second.revision).toBe(2);
    const read = await a.read('sessions', ['ü/2\'"', 'missing']);
    expect(read.records).toEqual([
      { collection: 'sessions', id: 'ü/2\'"', data: bytes('2'), revision: 2 },
    ]);
  });

  itPg('removes deleted items; a removal of an absent item is no conflict', async () => {
    const a = await driver();
    const put = await a.commit(
      ['1', '2', '3'].map((id) => ({ collection: 'c', id, data: bytes(id), expectedRevision: 0 })),
      { conflicts: 'reject' },
    );
    const removed = await a.commit(
      [
        { collection: 'c', id: '2', data: null, expectedRevision: put.revision! },
        { collection: 'c', id: 'never-there', data: null, expectedRevision: 0 },
      ],
      { conflicts: 'reject' },
    );
    expect(removed.applied.map((c) => [c.id, c.deleted])).toEqual([
      ['2', true],
      ['never-there', true],
    ]);
    expect(removed.conflicts).toEqual([]);
    expect(byId((await a.loadAll(['c'])).records)).toEqual({ 'c/1': '1', 'c/3': '3' });
    expect((await a.read('c', ['2'])).records).toEqual([]);
  });

  itPg('rejects a conflicting change under "reject" and keeps the remote version', async () => {
    const a = await driver('a');
    const b = await driver('b');
    const base = await a.commit(
      [
        { collection: 'c', id: 'x', data: bytes('base'), expectedRevision: null },
        { collection: 'c', id: 'y', data: bytes('y0'), expectedRevision: null },
      ],
      { conflicts: 'reject' },
    );
    const fromA = await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('from a'), expectedRevision: base.revision! }],
      { conflicts: 'reject' },
    );
    const fromB = await b.commit(
      [
        { collection: 'c', id: 'x', data: bytes('from b'), expectedRevision: base.revision! },
        { collection: 'c', id: 'y', data: bytes('y1'), expectedRevision: base.revision! },
        { collection: 'c', id: 'y-new', data: bytes('new'), expectedRevision: null },
      ],
      { conflicts: 'reject' },
    );
    expect(fromB.conflicts).toEqual([
      {
        collection: 'c',
        id: 'x',
        expectedRevision: base.revision,
        local: bytes('from b'),
        remote: { data: bytes('from a'), revision: fromA.revision },
        applied: false,
      },
    ]);
    expect(fromB.applied.map((c) => c.id)).toEqual(['y', 'y-new']);
    expect(byId((await b.loadAll(['c'])).records)).toEqual({
      'c/x': 'from a',
      'c/y': 'y1',
      'c/y-new': 'new',
    });
    const create = await a.commit(
      [
        { collection: 'c', id: 'y-new', data: bytes('mine'), expectedRevision: null },
        { collection: 'c', id: 'y', data: null, expectedRevision: base.revision! },
      ],
      { conflicts: 'reject' },
    );
    expect(create.revision).toBeUndefined();
    expect(create.applied).toEqual([]);
    expect(create.conflicts.map((c) => [c.id, c.remote.data?.toString(), c.applied])).toEqual([
      ['y-new', 'new', false],
      ['y', 'y1', false],
    ]);
    // Nothing applied: the counter did not move.
    const after = await a.commit(
      [{ collection: 'c', id: 'z', data: bytes('z'), expectedRevision: 0 }],
      { conflicts: 'reject' },
    );
    expect(after.revision).toBe(fromB.revision! + 1);
  });

  itPg('applies a conflicting change under "last-write-wins" and still reports it', async () => {
    const a = await driver('a');
    const b = await driver('b');
    const base = await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('base'), expectedRevision: null }],
      { conflicts: 'last-write-wins' },
    );
    const fromA = await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('from a'), expectedRevision: base.revision! }],
      { conflicts: 'last-write-wins' },
    );
    const fromB = await b.commit(
      [
        { collection: 'c', id: 'x', data: bytes('from b'), expectedRevision: base.revision! },
        { collection: 'c', id: 'gone', data: bytes('g'), expectedRevision: 7 },
      ],
      { conflicts: 'last-write-wins' },
    );
    expect(fromB.applied.map((c) => c.id)).toEqual(['x', 'gone']);
    expect(fromB.conflicts).toEqual([
      expect.objectContaining({
        id: 'x',
        local: bytes('from b'),
        remote: { data: bytes('from a'), revision: fromA.revision },
        applied: true,
      }),
      expect.objectContaining({ id: 'gone', remote: { data: null, revision: 0 }, applied: true }),
    ]);
    const record = (await a.loadAll(['c'])).records.find((r) => r.id === 'x')!;
    expect([record.data.toString(), record.revision]).toEqual(['from b', fromB.revision]);
  });

  itPg('does not count its own earlier commit as a conflict (a lost answer)', async () => {
    const a = await driver('a');
    const base = await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('v1'), expectedRevision: null }],
      { conflicts: 'reject' },
    );
    await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('v2'), expectedRevision: base.revision! }],
      { conflicts: 'reject' },
    );
    const retry = await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('v2'), expectedRevision: base.revision! }],
      { conflicts: 'reject' },
    );
    expect(retry.conflicts).toEqual([]);
    expect(retry.applied.map((c) => c.id)).toEqual(['x']);
    const b = await driver('b');
    const other = await b.commit(
      [{ collection: 'c', id: 'x', data: bytes('b'), expectedRevision: base.revision! }],
      { conflicts: 'reject' },
    );
    expect(other.conflicts.map((c) => c.id)).toEqual(['x']);
  });

  itPg('refuses a commit naming an item twice, and commits nothing for none', async () => {
    const a = await driver();
    const change = { collection: 'c', id: 'x', data: bytes('1'), expectedRevision: null };
    const error = await rejection(a.commit([change, change], { conflicts: 'reject' }));
    expect(error.code).toBe(PersistenceErrorCode.InvalidInput);
    expect(await a.commit([], { conflicts: 'reject' })).toEqual({
      applied: [],
      conflicts: [],
      blocked: [],
    });
    const policy = await rejection(a.commit([change], { conflicts: 'first' as never }));
    expect(policy.code).toBe(PersistenceErrorCode.InvalidOptions);
    expect(await sql(POSTGRES_URL, `SELECT 1 FROM "${table}"`)).toEqual([]);
  });

  itPg('refuses keys PostgreSQL cannot keep exactly, before sending anything', async () => {
    const a = await driver('a');
    const long = 'l'.repeat(2000);
    const ok = await a.commit(
      [{ collection: 'c', id: long, data: bytes('long'), expectedRevision: 0 }],
      { conflicts: 'reject' },
    );
    expect(ok.applied).toHaveLength(1);
    for (const [collection, id] of [
      ['c', 'nul\u0000byte'],
      ['c\u0000', 'x'],
      ['c', 'lone \ud800 surrogate'],
      ['c', 'k'.repeat(2100)],
    ]) {
      const error = await rejection(
        a.commit(
          [
            { collection: 'c', id: 'fine', data: bytes('f'), expectedRevision: 0 },
            { collection, id, data: bytes('x'), expectedRevision: 0 },
          ],
          { conflicts: 'reject' },
        ),
      );
      expect(error.code).toBe(PersistenceErrorCode.InvalidOptions);
    }
    expect(byId((await a.loadAll(['c'])).records)).toEqual({ [`c/${long}`]: 'long' });
  });

  itPg('refuses a commit on a missing revision counter, writing nothing', async () => {
    const a = await driver('a');
    await sql(POSTGRES_URL, `DELETE FROM "${table}_meta" WHERE key = 'revision'`);
    const error = await rejection(
      a.commit(
        [
          { collection: 'c', id: 'x', data: bytes('x'), expectedRevision: null },
          { collection: 'c', id: 'y', data: bytes('y'), expectedRevision: null },
        ],
        { conflicts: 'reject' },
      ),
    );
    expect(error.code).toBe(PersistenceErrorCode.StorageRefused);
    expect(error.message).toContain('revision counter');
    expect(error.message).toContain('is missing');
    expect(await sql(POSTGRES_URL, `SELECT 1 FROM "${table}"`)).toEqual([]);
  });

  itPg('rolls back a commit that fails half-way: nothing of it is visible', async () => {
    const a = await driver('a');
    await a.commit([{ collection: 'c', id: 'keep', data: bytes('v1'), expectedRevision: 0 }], {
      conflicts: 'reject',
    });
    // A trigger that refuses one row of the batch, after others were written in the transaction.
    await sql(
      POSTGRES_URL,
      `CREATE FUNCTION "${table}_refuse"() RETURNS trigger AS $$ BEGIN
         IF NEW.id = 'poison' THEN RAISE EXCEPTION 'refused by trigger'; END IF; RETURN NEW;
       END $$ LANGUAGE plpgsql`,
    );
    await sql(
      POSTGRES_URL,
      `CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON "${table}"
         FOR EACH ROW EXECUTE FUNCTION "${table}_refuse"()`,
    );
    try {
      const error = await rejection(
        a.commit(
          [
            { collection: 'c', id: 'keep', data: bytes('v2'), expectedRevision: 1 },
            { collection: 'c', id: 'new', data: bytes('n'), expectedRevision: 0 },
            { collection: 'c', id: 'poison', data: bytes('p'), expectedRevision: 0 },
          ],
          { conflicts: 'reject' },
        ),
      );
      expect(error.code).toBe(PersistenceErrorCode.StorageRefused);
      expect(error.message).toContain('refused by trigger');
      expect(byId((await a.loadAll(['c'])).records)).toEqual({ 'c/keep': 'v1' });
      const [counter] = await sql<{ value: string }>(
        POSTGRES_URL,
        `SELECT value::text FROM "${table}_meta" WHERE key = 'revision'`,
      );
      expect(counter.value).toBe('1');
    } finally {
      await sql(POSTGRES_URL, `DROP FUNCTION "${table}_refuse"() CASCADE`);
    }
  });

  itPg('shows a concurrent reader every commit whole or not at all', async () => {
    const writer = await driver('writer');
    const reader = await driver('reader');
    const ids = Array.from({ length: 40 }, (_, i) => `item-${i}`);
    const revisions = new Map<string, number>();
    const commits = 40;
    const observed: string[] = [];
    let writing = true;
    const write = (async () => {
      for (let generation = 1; generation <= commits; generation++) {
        const changes = ids.map((id, i) => ({
          collection: i % 2 === 0 ? 'even' : 'odd',
          id,
          data: generation % 2 === 1 && i % 3 === 0 ? null : bytes(`g${generation}`),
          expectedRevision: revisions.get(id) ?? null,
        }));
        const result = await writer.commit(changes, { conflicts: 'reject' });
        expect(result.conflicts).toEqual([]);
        for (const c of result.applied) revisions.set(c.id, c.deleted ? 0 : c.revision);
      }
      writing = false;
    })();
    const read = (async () => {
      while (writing) {
        const { records, problems } = await reader.loadAll(['even', 'odd']);
        expect(problems).toEqual([]);
        if (records.length === 0) continue;
        const generations = new Set(records.map((r) => r.data.toString()));
        expect(generations.size).toBe(1);
        expect(new Set(records.map((r) => r.revision)).size).toBe(1);
        const generation = Number([...generations][0].slice(1));
        expect(records).toHaveLength(generation % 2 === 1 ? ids.length - 14 : ids.length);
        observed.push([...generations][0]);
      }
    })();
    await Promise.all([write, read]);
    expect(observed.length).toBeGreaterThan(0);
  });

  itPg(
    'serializes concurrent commits of overlapping items: every change applied or a conflict',
    async () => {
      const replicas = await Promise.all(['p', 'q', 'r'].map((id) => driver(id)));
      const ids = Array.from({ length: 8 }, (_, i) => `shared-${i}`);
      const applied = new Map<string, string[]>();
      let conflicts = 0;
      await Promise.all(
        replicas.map(async (replica, k) => {
          const known = new Map<string, number>();
          for (let round = 0; round < 25; round++) {
            // Each replica touches the items in its own order: no deadlock may follow.
            const order = k === 1 ? [...ids].reverse() : ids;
            const result = await replica.commit(
              order.map((id) => ({
                collection: 'c',
                id,
                data: bytes(`${replica.replicaId}:${round}`),
                expectedRevision: known.get(id) ?? 0,
              })),
              { conflicts: 'reject' },
            );
            conflicts += result.conflicts.length;
            for (const c of result.conflicts) known.set(c.id, c.remote.revision);
            for (const c of result.applied) {
              known.set(c.id, c.revision);
              applied.set(c.id, [...(applied.get(c.id) ?? []), `${replica.replicaId}:${round}`]);
            }
          }
        }),
      );
      expect(conflicts).toBeGreaterThan(0);
      const stored = (await replicas[0].loadAll(['c'])).records;
      expect(stored).toHaveLength(ids.length);
      for (const record of stored) {
        // The stored version is the last change applied to it; nothing else got in.
        expect(applied.get(record.id)?.at(-1)).toBe(record.data.toString());
      }
    },
  );

  itPg('tells other replicas of a commit through LISTEN/NOTIFY, never the committer', async () => {
    const a = await driver('replica-a');
    const b = await driver('replica-b');
    const seenByA: DriverWatchEvent[] = [];
    const seenByB: DriverWatchEvent[] = [];
    a.watch((event) => seenByA.push(event));
    const stopB = b.watch((event) => seenByB.push(event));
    await Promise.all([a.watchReady(), b.watchReady()]);
    const put = await a.commit(
      [
        { collection: 'c', id: 'x', data: bytes('1'), expectedRevision: 0 },
        { collection: 'c', id: 'y', data: null, expectedRevision: 0 },
      ],
      { conflicts: 'reject' },
    );
    await until(() => seenByB.length > 0, 'the notice of the commit');
    expect(seenByB).toEqual([
      {
        kind: 'changes',
        origin: 'replica-a',
        revision: put.revision,
        changes: [
          { collection: 'c', id: 'x', deleted: false },
          { collection: 'c', id: 'y', deleted: true },
        ],
      },
    ]);
    // A large commit: its notice comes in parts, and arrives whole.
    const many = Array.from({ length: 2000 }, (_, i) => ({
      collection: 'big',
      id: `item-${i}-${'z'.repeat(30)}`,
      data: bytes(String(i)),
      expectedRevision: 0,
    }));
    const fromB = await b.commit(many, { conflicts: 'reject' });
    await until(() => seenByA.length > 0, "A's notice of B's commit");
    expect(seenByA).toEqual([
      {
        kind: 'changes',
        origin: 'replica-b',
        revision: fromB.revision,
        changes: many.map(({ collection, id }) => ({ collection, id, deleted: false })),
      },
    ]);
    stopB();
    seenByB.length = 0;
    seenByA.length = 0;
    await a.commit([{ collection: 'c', id: 'w', data: bytes('w'), expectedRevision: 0 }], {
      conflicts: 'reject',
    });
    await b.commit([{ collection: 'c', id: 'v', data: bytes('v'), expectedRevision: 0 }], {
      conflicts: 'reject',
    });
    await until(() => seenByA.length > 0, "A's notice of B's second commit");
    expect(seenByB).toEqual([]);
  });

  itPg(
    'asks for a resync after its LISTEN connection was cut, only when it missed a commit',
    async () => {
      const a = await driver('cut-a');
      const b = await driver('cut-b');
      const seen: DriverWatchEvent[] = [];
      b.watch((event) => seen.push(event));
      await b.watchReady();
      const listening = async (): Promise<number[]> =>
        (
          await sql<{ pid: number }>(
            POSTGRES_URL,
            `SELECT pid FROM pg_stat_activity
              WHERE application_name = 'nestjs-persistence:cut-b:listen'`,
          )
        ).map((row) => row.pid);
      const cut = async (): Promise<void> => {
        const [pid] = await listening();
        expect(pid).toBeDefined();
        await sql(POSTGRES_URL, 'SELECT pg_terminate_backend($1)', [pid]);
        await until(async () => !(await listening()).includes(pid), 'the backend to go');
      };
      // Cut with nothing committed meanwhile: it reconnects, and nothing was missed.
      await cut();
      await until(async () => (await listening()).length === 1, 'B to listen again');
      await a.commit([{ collection: 'c', id: 'x', data: bytes('1'), expectedRevision: 0 }], {
        conflicts: 'reject',
      });
      await until(() => seen.length > 0, 'the notice after the reconnect');
      expect(seen.map((e) => e.kind)).toEqual(['changes']);
      // Cut, and commit while it is away: the catch-up read finds the gap.
      seen.length = 0;
      const [pid] = await listening();
      await sql(POSTGRES_URL, 'SELECT pg_terminate_backend($1)', [pid]);
      await a.commit([{ collection: 'c', id: 'y', data: bytes('2'), expectedRevision: 0 }], {
        conflicts: 'reject',
      });
      await until(() => seen.some((e) => e.kind === 'resync'), 'a resync');
    },
  );

  itPg('grants a lease to one replica at a time, with increasing fencing tokens', async () => {
    const a = await driver('a');
    const b = await driver('b');
    const held = await a.acquireLease('backup', 60_000);
    expect(held).toBeDefined();
    expect(await b.acquireLease('backup', 60_000)).toBeUndefined();
    expect(await held!.renew()).toBe(true);
    await held!.release();
    const next = await b.acquireLease('backup', 60_000);
    expect(next!.token).toBeGreaterThan(held!.token);
    await held!.release();
    expect(await held!.renew()).toBe(false);
    expect(await a.acquireLease('backup', 60_000)).toBeUndefined();
    await next!.release();

    const short = await a.acquireLease('compaction', 30);
    let taken: Awaited<ReturnType<typeof b.acquireLease>>;
    await until(
      async () => (taken = await b.acquireLease('compaction', 60_000)) !== undefined,
      'expiry',
    );
    expect(taken!.token).toBeGreaterThan(short!.token);
    expect(await short!.renew()).toBe(false);
    // Many replicas at once: exactly one gets it.
    const contenders = await Promise.all(Array.from({ length: 6 }, (_, i) => driver(`c${i}`)));
    const grants = await Promise.all(contenders.map((c) => c.acquireLease('once', 60_000)));
    expect(grants.filter((g) => g !== undefined)).toHaveLength(1);
  });

  itPg('reports bad rows, copies them aside and never overwrites them', async () => {
    const a = await driver('a');
    await a.commit(
      ['good', 'zero', 'huge'].map((id) => ({
        collection: 'c',
        id,
        data: bytes(`ok ${id}`),
        expectedRevision: 0,
      })),
      { conflicts: 'reject' },
    );
    await sql(POSTGRES_URL, `UPDATE "${table}" SET revision = 0 WHERE id = 'zero'`);
    await sql(POSTGRES_URL, `UPDATE "${table}" SET revision = 9007199254740993 WHERE id = 'huge'`);
    const loaded = await a.loadAll(['c']);
    expect(byId(loaded.records)).toEqual({ 'c/good': 'ok good' });
    const problems = Object.fromEntries(loaded.problems.map((p) => [p.id, p]));
    expect(Object.keys(problems).sort()).toEqual(['huge', 'zero']);
    for (const p of loaded.problems) {
      expect(p.error.code).toBe(PersistenceErrorCode.BadStoredData);
      expect(p.error.message).toContain('never overwritten or removed');
      expect(p.quarantinedAs).toContain(`"${table}_quarantine"`);
    }
    expect(problems.zero.error.message).toContain('has revision 0, not a positive integer');
    const copies = await sql<{ id: string; data: Buffer; revision: string }>(
      POSTGRES_URL,
      `SELECT id, data, revision FROM "${table}_quarantine" ORDER BY id`,
    );
    expect(copies.map((c) => [c.id, c.data.toString(), c.revision])).toEqual([
      ['huge', 'ok huge', '9007199254740993'],
      ['zero', 'ok zero', '0'],
    ]);
    // Loading again makes no second copy of the same row; read() judges the same way.
    expect((await a.read('c', ['zero', 'good'])).problems.map((p) => p.id)).toEqual(['zero']);
    expect(await sql(POSTGRES_URL, `SELECT 1 FROM "${table}_quarantine"`)).toHaveLength(2);

    const result = await a.commit(
      [
        { collection: 'c', id: 'zero', data: bytes('new'), expectedRevision: 0 },
        { collection: 'c', id: 'huge', data: null, expectedRevision: 0 },
        { collection: 'c', id: 'fresh', data: bytes('fresh'), expectedRevision: 0 },
      ],
      { conflicts: 'last-write-wins' },
    );
    expect(result.applied.map((c) => c.id)).toEqual(['fresh']);
    expect(result.blocked.map((p) => [p.id, p.error.code])).toEqual([
      ['zero', PersistenceErrorCode.BadStoredData],
      ['huge', PersistenceErrorCode.BadStoredData],
    ]);
    const rows = await sql<{ id: string; data: Buffer }>(
      POSTGRES_URL,
      `SELECT id, data FROM "${table}" WHERE id IN ('zero', 'huge') ORDER BY id`,
    );
    expect(rows.map((r) => [r.id, r.data.toString()])).toEqual([
      ['huge', 'ok huge'],
      ['zero', 'ok zero'],
    ]);
  });

  itPg('stores on different tables share one database without meeting', async () => {
    const other = uniqueTable('other');
    tables.push(other);
    const a = await driver('same-replica');
    const b = await driver('same-replica', other);
    const heard: DriverWatchEvent[] = [];
    b.watch((event) => heard.push(event));
    await b.watchReady();
    await a.commit([{ collection: 'c', id: 'x', data: bytes('in a'), expectedRevision: 0 }], {
      conflicts: 'reject',
    });
    const onB = await b.commit(
      [{ collection: 'c', id: 'x', data: bytes('in b'), expectedRevision: 0 }],
      { conflicts: 'reject' },
    );
    expect(onB.conflicts).toEqual([]);
    expect(onB.revision).toBe(1); // its own counter
    expect(byId((await a.loadAll(['c'])).records)).toEqual({ 'c/x': 'in a' });
    expect(byId((await b.loadAll(['c'])).records)).toEqual({ 'c/x': 'in b' });
    const c = await driver('third', other);
    const seenByC: DriverWatchEvent[] = [];
    c.watch((event) => seenByC.push(event));
    await c.watchReady();
    await a.commit([{ collection: 'c', id: 'y', data: bytes('a'), expectedRevision: 0 }], {
      conflicts: 'reject',
    });
    await b.commit([{ collection: 'c', id: 'y', data: bytes('b'), expectedRevision: 0 }], {
      conflicts: 'reject',
    });
    await until(() => seenByC.length > 0, "C's notice of B's commit");
    expect(seenByC).toEqual([
      {
        kind: 'changes',
        origin: 'same-replica',
        revision: 2,
        changes: [{ collection: 'c', id: 'y', deleted: false }],
      },
    ]);
    expect(heard).toEqual([]); // B never hears A's table, nor its own commits
  });

  itPg('stores of one table name in two schemas do not hear each other', async () => {
    const schemas = [uniqueTable('schema_a'), uniqueTable('schema_b')];
    for (const schema of schemas) await sql(POSTGRES_URL, `CREATE SCHEMA "${schema}"`);
    try {
      const [a, b] = schemas.map((schema) => {
        const created = new PostgresStorageDriver({
          connectionString: `${POSTGRES_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`,
          table,
          replicaId: schema,
        });
        drivers.push(created);
        return created;
      });
      await a.open();
      await b.open();
      const heardByB: DriverWatchEvent[] = [];
      b.watch((event) => heardByB.push(event));
      await b.watchReady();
      await a.commit([{ collection: 'c', id: 'x', data: bytes('a'), expectedRevision: 0 }], {
        conflicts: 'reject',
      });
      await b.commit([{ collection: 'c', id: 'y', data: bytes('b'), expectedRevision: 0 }], {
        conflicts: 'reject',
      });
      expect(byId((await a.loadAll(['c'])).records)).toEqual({ 'c/x': 'a' });
      expect(byId((await b.loadAll(['c'])).records)).toEqual({ 'c/y': 'b' });
      // A commit on a third driver of B's schema is heard: the watch works; A's was not heard.
      const b2 = new PostgresStorageDriver({
        connectionString: `${POSTGRES_URL}?options=${encodeURIComponent(`-c search_path=${schemas[1]}`)}`,
        table,
        replicaId: 'b2',
      });
      drivers.push(b2);
      await b2.open();
      await b2.commit([{ collection: 'c', id: 'z', data: bytes('b2'), expectedRevision: 0 }], {
        conflicts: 'reject',
      });
      await until(() => heardByB.length > 0, "B's notice of B2's commit");
      expect(heardByB).toEqual([
        expect.objectContaining({ kind: 'changes', origin: 'b2', revision: 2 }),
      ]);
    } finally {
      for (const created of drivers.splice(0)) await created.close();
      for (const schema of schemas) await sql(POSTGRES_URL, `DROP SCHEMA "${schema}" CASCADE`);
    }
  });

  itPg('creates its tables once when several replicas boot at once', async () => {
    const booted = await Promise.all(
      Array.from({ length: 8 }, (_, i) => driver(`boot-${i}`).then(() => i)),
    );
    expect(booted).toHaveLength(8);
    const meta = await sql<{ key: string; value: string }>(
      POSTGRES_URL,
      `SELECT key, value::text FROM "${table}_meta" ORDER BY key`,
    );
    expect(meta).toEqual([
      { key: 'revision', value: '0' },
      { key: 'schema', value: '1' },
    ]);
  });

  itPg('refuses tables of a newer layout, changing nothing', async () => {
    await (
      await driver('first')
    ).commit([{ collection: 'c', id: 'x', data: bytes('x'), expectedRevision: 0 }], {
      conflicts: 'reject',
    });
    await sql(POSTGRES_URL, `UPDATE "${table}_meta" SET value = 99 WHERE key = 'schema'`);
    const late = new PostgresStorageDriver({ connectionString: POSTGRES_URL, table });
    drivers.push(late);
    const error = await rejection(late.open());
    expect(error.code).toBe(PersistenceErrorCode.StorageRefused);
    expect(error.message).toContain('layout version 99');
    expect(await sql(POSTGRES_URL, `SELECT id FROM "${table}"`)).toEqual([{ id: 'x' }]);
  });

  itPg("uses the application's pool and never ends it", async () => {
    const pool = new Pool({ connectionString: POSTGRES_URL, max: 3 });
    try {
      const onPool = new PostgresStorageDriver({ pool, table, replicaId: 'pooled' });
      expect(onPool.location).toBe(`postgres://127.0.0.1:5432/test (table "${table}")`);
      await onPool.open();
      onPool.watch(() => undefined);
      await onPool.watchReady();
      await onPool.commit([{ collection: 'c', id: 'x', data: bytes('x'), expectedRevision: 0 }], {
        conflicts: 'reject',
      });
      await onPool.close();
      expect((await pool.query('SELECT count(*)::int AS n FROM ' + `"${table}"`)).rows).toEqual([
        { n: 1 },
      ]);
    } finally {
      await pool.end();
    }
  });

  itPg('rejects with a retryable error when the server does not answer', async () => {
    const unreachable = new PostgresStorageDriver({
      connectionString: 'postgres://postgres@127.0.0.1:1/test',
      connectTimeoutMs: 500,
    });
    const error = await rejection(unreachable.open());
    expect(error.code).toBe(PersistenceErrorCode.StorageUnavailable);
    const refused = new PostgresStorageDriver({
      connectionString: `${POSTGRES_URL.replace(/\/[^/]*$/, '')}/no_such_database_here`,
    });
    const no = await rejection(refused.open());
    expect(no.code).toBe(PersistenceErrorCode.StorageRefused);
    expect(no.message).toContain('no_such_database_here');
  });
});
