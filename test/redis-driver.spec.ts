import { execFileSync } from 'node:child_process';
import Redis from 'ioredis';
import { PersistenceError, PersistenceErrorCode } from 'nestjs-persistence';
import type { DriverWatchEvent, StoredRecord } from '../lib/interfaces/storage-driver.interface';
import { RedisStorageDriver } from '../lib/storage/redis';
import { loadRedisModule } from '../lib/storage/redis/redis.client';
import { childCommand } from './fixtures/child-process';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix, until } from './fixtures/redis';

/*
 * The Redis storage driver against the real server at 127.0.0.1:6379 (skipped, with the reason, when
 * none answers). Each test has its own key prefix, removed afterwards.
 */

const problem = redisProblem();
const itRedis = itOrSkip(problem);
const URL = 'redis://127.0.0.1:6379';

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

describe('RedisStorageDriver: options and loading', () => {
  it('rejects bad options with typed errors that say how to fix them', () => {
    const noPrefix = thrown(() => new RedisStorageDriver({} as never));
    expect(noPrefix.code).toBe(PersistenceErrorCode.InvalidOptions);
    expect(noPrefix.message).toContain('"keyPrefix"');
    expect(noPrefix.message).toContain("e.g. 'myapp:state:'");
    const both = thrown(
      () => new RedisStorageDriver({ keyPrefix: 'a:', url: URL, client: {} as never }),
    );
    expect(both.message).toContain('either url or client');
    const badUrl = thrown(() => new RedisStorageDriver({ keyPrefix: 'a:', url: 'http://x' }));
    expect(badUrl.message).toContain('redis:// or rediss://');
    const badReplica = thrown(() => new RedisStorageDriver({ keyPrefix: 'a:', replicaId: '' }));
    expect(badReplica.message).toContain('"replicaId"');
    for (const keyPrefix of ['a}b:', '{a:', '{}a:']) {
      const braces = thrown(() => new RedisStorageDriver({ keyPrefix }));
      expect(braces.code).toBe(PersistenceErrorCode.InvalidOptions);
      expect(braces.message).toContain('hash tag');
    }
  });

  it('hides credentials in its location', () => {
    const driver = new RedisStorageDriver({ keyPrefix: 'a:', url: 'redis://u:secret@h:1/2' });
    expect(driver.location).toBe('redis://h:1/2 (prefix "a:")');
  });

  it('says "npm install <package>" when the Redis client package is missing', async () => {
    const error = await rejection(loadRedisModule('ioredis-that-is-not-installed'));
    expect(error.code).toBe(PersistenceErrorCode.OptionalDependencyMissing);
    expect(error.message).toContain('npm install ioredis-that-is-not-installed');
  });

  it('does not load ioredis until a driver opens', () => {
    const [node, ...args] = childCommand('test/fixtures/driver-lazy.main.ts');
    const output = execFileSync(node, args, {
      encoding: 'utf8',
      env: { ...process.env, DRIVER: 'redis' },
    });
    expect(output).toContain('LOADED false function');
  });

  it('a missing ioredis fails app.init() saying what to install (the store never opens without it)', () => {
    const [node, ...args] = childCommand('test/fixtures/redis-missing.main.ts');
    const output = execFileSync(node, args, { encoding: 'utf8', timeout: 20_000 });
    expect(output).toContain(`INIT-FAILED ${PersistenceErrorCode.OptionalDependencyMissing}`);
    expect(output).toContain('npm install ioredis');
  });

  it('rejects calls before open() and after close()', async () => {
    const driver = new RedisStorageDriver({ keyPrefix: uniquePrefix('closed') });
    expect(thrown(() => driver.watch(() => undefined)).code).toBe(PersistenceErrorCode.StoreClosed);
    await driver.close();
    const error = await rejection(driver.loadAll(['a']));
    expect(error.code).toBe(PersistenceErrorCode.StoreClosed);
    expect(error.message).toContain('closed');
  });
});

describe('RedisStorageDriver against Redis', () => {
  let admin: Redis;
  let prefix: string;
  const drivers: RedisStorageDriver[] = [];

  async function driver(
    replicaId?: string,
    extra: { readChunkSize?: number; optimisticReads?: number } = {},
  ) {
    const created = new RedisStorageDriver({ url: URL, keyPrefix: prefix, replicaId, ...extra });
    drivers.push(created);
    await created.open();
    return created;
  }

  beforeAll(() => {
    if (problem === undefined) admin = new Redis(URL);
  });
  afterAll(async () => {
    await admin?.quit();
  });
  beforeEach(() => {
    prefix = uniquePrefix('redis-driver');
  });
  afterEach(async () => {
    for (const created of drivers.splice(0)) await created.close();
    if (problem === undefined) await removeKeys(admin, prefix);
  });

  itRedis('commits bytes and loads them back exactly, with the commit revision', async () => {
    const a = await driver('a');
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const first = await a.commit(
      [
        { collection: 'sessions', id: 's:1', data: all, expectedRevision: null },
        { collection: 'sessions', id: 'ü/2', data: bytes('two'), expectedRevision: 0 },
        { collection: 'a:b', id: 'x', data: Buffer.alloc(0), expectedRevision: null },
      ],
      { conflicts: 'reject' },
    );
    expect(first.revision).toBeGreaterThan(0);
    expect(first.applied.map((c) => [c.id, c.revision, c.deleted])).toEqual([
      ['s:1', first.revision, false],
      ['ü/2', first.revision, false],
      ['x', first.revision, false],
    ]);
    expect(first.conflicts).toEqual([]);
    const loaded = await a.loadAll(['sessions', 'a:b', 'empty']);
    expect(loaded.problems).toEqual([]);
    const one = loaded.records.find((r) => r.id === 's:1');
    expect(one?.data.equals(all)).toBe(true);
    expect(one?.revision).toBe(first.revision);
    expect(loaded.records.find((r) => r.id === 'x')?.data.length).toBe(0);
    expect(loaded.records).toHaveLength(3);
    expect((await admin.smembers(`${prefix}index:sessions`)).sort()).toEqual(['s:1', 'ü/2']);
    expect(await admin.exists(`${prefix}index:a%3Ab`)).toBe(1);

    const second = await a.commit(
      [{ collection: 'sessions', id: 'ü/2', data: bytes('2'), expectedRevision: first.revision! }],
      { conflicts: 'reject' },
    );
    expect(second.revision).toBeGreaterThan(first.revision!);
    const read = await a.read('sessions', ['ü/2', 'missing']);
    expect(read.records).toEqual([
      { collection: 'sessions', id: 'ü/2', data: bytes('2'), revision: second.revision },
    ]);
  });

  itRedis(
    'puts a prefix without a hash tag into one, so every key of a store is in one slot',
    async () => {
      const plain = prefix.replace(/[{}]/g, ''); // the test's prefix without its own tag
      const created = new RedisStorageDriver({ url: URL, keyPrefix: plain, replicaId: 'p' });
      drivers.push(created);
      await created.open();
      await created.commit(
        [{ collection: 'c', id: 'x', data: bytes('1'), expectedRevision: null }],
        { conflicts: 'reject' },
      );
      try {
        expect(await admin.exists(`{${plain}}item:c:x`, `{${plain}}index:c`)).toBe(2);
        expect(await admin.keys(`${plain}*`)).toEqual([]);
      } finally {
        await removeKeys(admin, `{${plain}}`);
      }
    },
  );

  itRedis('removes deleted items from the store and from the index', async () => {
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
    expect((await admin.smembers(`${prefix}index:c`)).sort()).toEqual(['1', '3']);
    expect(await admin.exists(`${prefix}item:c:2`)).toBe(0);
    expect((await a.read('c', ['2'])).records).toEqual([]);
  });

  itRedis('rejects a conflicting change under "reject" and keeps the remote version', async () => {
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

    // A new item that another replica created meanwhile is a conflict too; so is a removal.
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
    expect(byId((await a.loadAll(['c'])).records)['c/y']).toBe('y1');
  });

  itRedis('applies a conflicting change under "last-write-wins" and still reports it', async () => {
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
      [{ collection: 'c', id: 'x', data: bytes('from b'), expectedRevision: base.revision! }],
      { conflicts: 'last-write-wins' },
    );
    expect(fromB.applied.map((c) => c.id)).toEqual(['x']);
    expect(fromB.conflicts).toEqual([
      expect.objectContaining({
        id: 'x',
        local: bytes('from b'),
        remote: { data: bytes('from a'), revision: fromA.revision },
        applied: true,
      }),
    ]);
    const [record] = (await a.loadAll(['c'])).records;
    expect([record.data.toString(), record.revision]).toEqual(['from b', fromB.revision]);
  });

  itRedis('does not count its own earlier commit as a conflict (a lost answer)', async () => {
    const a = await driver('a');
    const base = await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('v1'), expectedRevision: null }],
      { conflicts: 'reject' },
    );
    await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('v2'), expectedRevision: base.revision! }],
      { conflicts: 'reject' },
    );
    // As if the answer of the commit above had been lost: the replica retries from base.revision.
    const retry = await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('v2'), expectedRevision: base.revision! }],
      { conflicts: 'reject' },
    );
    expect(retry.conflicts).toEqual([]);
    expect(retry.applied.map((c) => c.id)).toEqual(['x']);
    // The same stale expectation from another replica is a conflict.
    const b = await driver('b');
    const other = await b.commit(
      [{ collection: 'c', id: 'x', data: bytes('b'), expectedRevision: base.revision! }],
      { conflicts: 'reject' },
    );
    expect(other.conflicts.map((c) => c.id)).toEqual(['x']);
  });

  itRedis('refuses a commit naming an item twice, and commits nothing for none', async () => {
    const a = await driver();
    const change = { collection: 'c', id: 'x', data: bytes('1'), expectedRevision: null };
    const error = await rejection(a.commit([change, change], { conflicts: 'reject' }));
    expect(error.code).toBe(PersistenceErrorCode.InvalidInput);
    expect(error.message).toContain('twice');
    expect(await a.commit([], { conflicts: 'reject' })).toEqual({
      applied: [],
      conflicts: [],
      blocked: [],
    });
    const policy = await rejection(a.commit([change], { conflicts: 'first' as never }));
    expect(policy.code).toBe(PersistenceErrorCode.InvalidOptions);
    expect(await admin.exists(`${prefix}revision`)).toBe(0);
  });

  itRedis('refuses a commit on a damaged revision counter, writing nothing', async () => {
    const a = await driver('a');
    await admin.set(`${prefix}revision`, 'not a number');
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
    expect(error.message).toContain('not an integer');
    expect(await admin.exists(`${prefix}item:c:x`, `${prefix}index:c`)).toBe(0);
  });

  itRedis('shows a concurrent reader every commit whole or not at all', async () => {
    const writer = await driver('writer');
    // Small chunks, so that the reader's chunked reads interleave with the commits.
    const chunked = await driver('chunked', { readChunkSize: 3 });
    // And one that always reads through the snapshot script (the fallback when commits race).
    const scripted = await driver('scripted', { optimisticReads: 0 });
    const ids = Array.from({ length: 40 }, (_, i) => `item-${i}`);
    const revisions = new Map<string, number>();
    const commits = 60;
    const observed: string[] = [];
    let writing = true;
    const write = (async () => {
      for (let generation = 1; generation <= commits; generation++) {
        // Odd generations remove every third item, even ones write them all back.
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
    const read = async (reader: RedisStorageDriver) => {
      while (writing) {
        const { records, problems } = await reader.loadAll(['even', 'odd']);
        expect(problems).toEqual([]);
        if (records.length === 0) continue;
        const generations = new Set(records.map((r) => r.data.toString()));
        const revisionsSeen = new Set(records.map((r) => r.revision));
        expect(generations.size).toBe(1);
        expect(revisionsSeen.size).toBe(1);
        const generation = Number([...generations][0].slice(1));
        expect(records).toHaveLength(generation % 2 === 1 ? ids.length - 14 : ids.length);
        observed.push([...generations][0]);
      }
    };
    await Promise.all([write, read(chunked), read(scripted)]);
    expect(observed.length).toBeGreaterThan(0);
    const final = await chunked.loadAll(['even', 'odd']);
    expect(new Set(final.records.map((r) => r.data.toString()))).toEqual(new Set([`g${commits}`]));
  });

  itRedis('tells other replicas of a commit through pub/sub, never the committer', async () => {
    const a = await driver('replica-a');
    const b = await driver('replica-b');
    const seenByA: DriverWatchEvent[] = [];
    const seenByB: DriverWatchEvent[] = [];
    a.watch((event) => seenByA.push(event));
    const stopB = b.watch((event) => seenByB.push(event));
    // The subscription is asynchronous: commit until B has heard one.
    let probe: number | undefined;
    await until(async () => {
      const sent = await a.commit(
        [{ collection: 'probe', id: 'p', data: bytes('p'), expectedRevision: probe ?? 0 }],
        { conflicts: 'reject' },
      );
      probe = sent.revision;
      return seenByB.length > 0;
    }, 'the first notice');
    await until(
      () => seenByB.some((event) => event.kind === 'changes' && event.revision === probe),
      'the notice of the last probe',
    );
    seenByB.length = 0;
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
    const fromB = await b.commit(
      [{ collection: 'c', id: 'z', data: bytes('z'), expectedRevision: 0 }],
      { conflicts: 'reject' },
    );
    await until(() => seenByA.length > 0, "A's notice of B's commit");
    expect(seenByA).toEqual([
      {
        kind: 'changes',
        origin: 'replica-b',
        revision: fromB.revision,
        changes: [{ collection: 'c', id: 'z', deleted: false }],
      },
    ]);
    // After unsubscribing, B hears nothing more.
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

  itRedis('grants a lease to one replica at a time, with increasing fencing tokens', async () => {
    const a = await driver('a');
    const b = await driver('b');
    const held = await a.acquireLease('backup', 60_000);
    expect(held).toBeDefined();
    expect(await b.acquireLease('backup', 60_000)).toBeUndefined();
    expect(await held!.renew()).toBe(true);
    await held!.release();
    const next = await b.acquireLease('backup', 60_000);
    expect(next!.token).toBeGreaterThan(held!.token);
    // A release or renewal by the former holder does nothing to the new one.
    await held!.release();
    expect(await held!.renew()).toBe(false);
    expect(await a.acquireLease('backup', 60_000)).toBeUndefined();
    await next!.release();

    // Expiry lets another replica take it, with a higher token; the late holder cannot renew.
    const short = await a.acquireLease('compaction', 30);
    let taken: Awaited<ReturnType<typeof b.acquireLease>>;
    await until(
      async () => (taken = await b.acquireLease('compaction', 60_000)) !== undefined,
      'expiry',
    );
    expect(taken!.token).toBeGreaterThan(short!.token);
    expect(await short!.renew()).toBe(false);
    await short!.release();
    expect(await admin.exists(`${prefix}lease:compaction`)).toBe(1);
  });

  itRedis('reports bad data per item, copies it aside and never overwrites it', async () => {
    const a = await driver('a');
    await a.commit(
      [
        { collection: 'c', id: 'good', data: bytes('ok'), expectedRevision: 0 },
        { collection: 'c', id: 'string', data: bytes('ok'), expectedRevision: 0 },
        { collection: 'c', id: 'nodata', data: bytes('ok'), expectedRevision: 0 },
        { collection: 'c', id: 'badrev', data: bytes('ok'), expectedRevision: 0 },
      ],
      { conflicts: 'reject' },
    );
    await admin.del(`${prefix}item:c:string`);
    await admin.set(`${prefix}item:c:string`, 'a plain string');
    await admin.hdel(`${prefix}item:c:nodata`, 'data');
    await admin.hset(`${prefix}item:c:badrev`, 'rev', 'abc');
    await admin.sadd(`${prefix}index:c`, 'ghost');
    await admin.set(`${prefix}index:broken`, 'not a set');

    const loaded = await a.loadAll(['c', 'broken']);
    expect(byId(loaded.records)).toEqual({ 'c/good': 'ok' });
    const scripted = await (await driver('s', { optimisticReads: 0 })).loadAll(['c', 'broken']);
    expect(scripted.records).toEqual(loaded.records);
    expect(scripted.problems.map((p) => p.error.message).sort()).toEqual(
      loaded.problems.map((p) => p.error.message).sort(),
    );
    const problems = Object.fromEntries(
      loaded.problems.map((p) => [`${p.collection}/${p.id ?? '(index)'}`, p]),
    );
    expect(Object.keys(problems).sort()).toEqual(
      ['broken/(index)', 'c/badrev', 'c/ghost', 'c/nodata', 'c/string'].sort(),
    );
    for (const p of loaded.problems) {
      expect(p.error.code).toBe(PersistenceErrorCode.BadStoredData);
      expect(p.error.message).toContain('never overwritten or removed');
    }
    expect(problems['c/string'].error.message).toContain('is a string, not a hash');
    expect(problems['c/nodata'].error.message).toContain('no "data" field');
    expect(problems['c/badrev'].error.message).toContain('"abc", not a positive integer');
    expect(problems['broken/(index)'].error.message).toContain('not a set');
    expect(problems['c/ghost'].quarantinedAs).toBeUndefined();
    const copy = problems['c/string'].quarantinedAs!;
    expect(copy.startsWith(`${prefix}quarantine:`)).toBe(true);
    expect(await admin.get(copy)).toBe('a plain string');
    expect(await admin.get(problems['broken/(index)'].quarantinedAs!)).toBe('not a set');
    expect(await admin.sismember(`${prefix}quarantine`, copy)).toBe(1);
    // Loading again makes no second copy of the same bytes.
    await a.loadAll(['c', 'broken']);
    expect(await admin.scard(`${prefix}quarantine`)).toBe(4);

    // A commit leaves bad items as they are and applies the rest.
    const result = await a.commit(
      [
        { collection: 'c', id: 'string', data: bytes('new'), expectedRevision: 0 },
        { collection: 'c', id: 'badrev', data: null, expectedRevision: 0 },
        { collection: 'broken', id: 'x', data: bytes('x'), expectedRevision: 0 },
        { collection: 'c', id: 'fresh', data: bytes('fresh'), expectedRevision: 0 },
      ],
      { conflicts: 'last-write-wins' },
    );
    expect(result.applied.map((c) => c.id)).toEqual(['fresh']);
    expect(result.blocked.map((p) => [p.id, p.error.code])).toEqual([
      ['string', PersistenceErrorCode.BadStoredData],
      ['badrev', PersistenceErrorCode.BadStoredData],
      ['x', PersistenceErrorCode.BadStoredData],
    ]);
    expect(await admin.get(`${prefix}item:c:string`)).toBe('a plain string');
    expect(await admin.hget(`${prefix}item:c:badrev`, 'rev')).toBe('abc');
    expect(await admin.get(`${prefix}index:broken`)).toBe('not a set');
  });
});
