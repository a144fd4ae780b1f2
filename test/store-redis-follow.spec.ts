import { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import {
  PersistenceAdapter,
  PersistenceConflictEvent,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { Cart, CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { createApp } from './fixtures/app.factory';
import { GatedSerializer } from './fixtures/gated-serializer';
import { Gate, HeldDriver } from './fixtures/held-driver';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix, until } from './fixtures/redis';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Replicas following each other on a real Redis (127.0.0.1:6379; skipped with the reason when none
 * answers), each test on its own key prefix, with real writers (other stores on the same prefix).
 * The interleavings are fixed with gates, not timing: a format whose decoding the test holds (a
 * replica is in the middle of applying another's commit) and a driver that holds the boot load
 * after it read (writers commit meanwhile).
 *  - Following another replica changes only the items its commit names, and never a change this
 *    replica made meanwhile.
 *  - A replica that finishes loading has everything committed before, or catches up at once.
 */

const itRedis = itOrSkip(redisProblem());

/** A custom adapter whose snapshot() is asynchronous, with applyRemote(). */
class NotesAdapter implements PersistenceAdapter<{ text: string }> {
  readonly name = 'notes';
  notes = new Map<string, { text: string }>();
  restores = 0;

  async snapshot(): Promise<ReadonlyMap<string, { text: string }>> {
    await new Promise((resolve) => setImmediate(resolve));
    return new Map(this.notes);
  }

  restore(items: ReadonlyMap<string, { text: string }>): void {
    this.restores++;
    this.notes = new Map(items);
  }

  applyRemote(items: ReadonlyMap<string, { text: string }>, deleted: readonly string[]): void {
    for (const [id, note] of items) this.notes.set(id, note);
    for (const id of deleted) this.notes.delete(id);
  }
}
const URL = 'redis://127.0.0.1:6379';

describe('replicas following each other (Redis)', () => {
  const apps: INestApplication[] = [];
  const prefixes: string[] = [];
  let dir: string;

  beforeEach(async () => {
    dir = await makeTempDir();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close().catch(() => undefined);
    if (prefixes.length > 0 && !redisProblem()) {
      const client = new Redis(URL);
      for (const prefix of prefixes.splice(0)) await removeKeys(client, prefix);
      client.disconnect();
    }
    await removeDir(dir);
  });

  function prefix(name: string): string {
    const p = uniquePrefix(name);
    prefixes.push(p);
    return p;
  }

  async function open(
    keyPrefix: string,
    replicaId: string,
    options: PersistenceModuleOptions = {},
  ): Promise<INestApplication> {
    const app = await createApp(
      {
        path: dir,
        storage: new RedisStorageDriver({ url: URL, keyPrefix, replicaId }),
        builtInAdapters: false,
        adapters: [CartAdapter],
        saveOnShutdown: false,
        ...options,
      },
      { imports: [CartModule] },
    );
    apps.push(app);
    return app;
  }

  const carts = (app: INestApplication): CartService => app.get(CartService);
  const store = (app: INestApplication): PersistenceStore => app.get(PersistenceStore);
  const sorted = (entries: ReadonlyMap<string, Cart>): Array<[string, Cart]> =>
    [...entries].sort(([a], [b]) => a.localeCompare(b));

  /** What the storage holds now, read by a store of its own. */
  async function stored(keyPrefix: string): Promise<Array<[string, Cart]>> {
    const reader = await open(keyPrefix, 'reader');
    const state = sorted(carts(reader).entries());
    apps.splice(apps.indexOf(reader), 1);
    await reader.close();
    return state;
  }

  describe('following another replica changes only the items it names', () => {
    itRedis('a change made while the remote items decode is kept (restore() adapter)', async () => {
      const keyPrefix = prefix('follow-other');
      const formatB = new GatedSerializer();
      const a = await open(keyPrefix, 'a', { format: new GatedSerializer() });
      const b = await open(keyPrefix, 'b', { format: formatB });
      carts(a).set('x', { items: ['a0'], total: 0 });
      carts(a).set('y', { items: ['a0'], total: 0 });
      await store(a).saveAll();
      await until(() => carts(b).get('y') !== undefined, 'b to follow a');

      const decoding = formatB.holdNext();
      carts(a).set('x', { items: ['a1'], total: 1 });
      await store(a).saveAll();
      await decoding.reached; // b is applying a's commit of x
      carts(b).set('y', { items: ['b-local'], total: 7 });
      carts(b).set('z', { items: ['b-new'], total: 8 });
      decoding.open();
      await store(b).saveAll(); // queued behind the merge

      expect(carts(b).get('x')).toEqual({ items: ['a1'], total: 1 });
      expect(carts(b).get('y')).toEqual({ items: ['b-local'], total: 7 });
      expect(carts(b).get('z')).toEqual({ items: ['b-new'], total: 8 });
      expect(await stored(keyPrefix)).toEqual([
        ['x', { items: ['a1'], total: 1 }],
        ['y', { items: ['b-local'], total: 7 }],
        ['z', { items: ['b-new'], total: 8 }],
      ]);
    });

    itRedis(
      'a change made meanwhile to the named item itself is kept, then conflicts',
      async () => {
        const keyPrefix = prefix('follow-same');
        const formatB = new GatedSerializer();
        const a = await open(keyPrefix, 'a', { format: new GatedSerializer() });
        const b = await open(keyPrefix, 'b', { format: formatB });
        const conflicts: PersistenceConflictEvent[] = [];
        store(b).onConflict((event) => conflicts.push(event));
        carts(a).set('x', { items: ['a0'], total: 0 });
        await store(a).saveAll();
        await until(() => carts(b).get('x') !== undefined, 'b to follow a');

        const decoding = formatB.holdNext();
        carts(a).set('x', { items: ['a1'], total: 1 });
        await store(a).saveAll();
        await decoding.reached;
        carts(b).set('x', { items: ['b-local'], total: 2 });
        decoding.open();
        await store(b).saveAll();

        expect(carts(b).get('x')).toEqual({ items: ['b-local'], total: 2 });
        expect(await stored(keyPrefix)).toEqual([['x', { items: ['b-local'], total: 2 }]]);
        // The save met a's version: reported (last write wins: b's applied).
        expect(conflicts.map((c) => [c.id, c.remote.value, c.applied])).toEqual([
          ['x', { items: ['a1'], total: 1 }, true],
        ]);
      },
    );

    itRedis('an adapter with an asynchronous snapshot() and applyRemote()', async () => {
      const keyPrefix = prefix('follow-async');
      const formatB = new GatedSerializer();
      const notesA = new NotesAdapter();
      const notesB = new NotesAdapter();
      const a = await open(keyPrefix, 'a', { format: new GatedSerializer(), adapters: [notesA] });
      const b = await open(keyPrefix, 'b', { format: formatB, adapters: [notesB] });
      notesA.notes.set('x', { text: 'a0' }).set('y', { text: 'a0' });
      await store(a).saveAll();
      await until(() => notesB.notes.has('y'), 'b to follow a');

      const decoding = formatB.holdNext();
      notesA.notes.set('x', { text: 'a1' }).set('w', { text: 'a1' });
      await store(a).saveAll();
      await decoding.reached;
      notesB.notes.set('y', { text: 'b-local' }).set('w', { text: 'b-w' });
      decoding.open();
      await store(b).saveAll();
      expect([...notesB.notes].sort()).toEqual([
        ['w', { text: 'b-w' }],
        ['x', { text: 'a1' }],
        ['y', { text: 'b-local' }],
      ]);
      expect(notesB.restores).toBe(1); // the boot load only: following used applyRemote()
    });

    itRedis('an applyRemote() that returns a Promise is refused with a typed error', async () => {
      const keyPrefix = prefix('follow-bad-apply');
      const notesA = new NotesAdapter();
      const notesB = new NotesAdapter();
      notesB.applyRemote = () => Promise.resolve() as unknown as void;
      const a = await open(keyPrefix, 'a', { adapters: [notesA] });
      const b = await open(keyPrefix, 'b', { adapters: [notesB] });
      const errors: PersistenceErrorEvent[] = [];
      store(b).onError((event) => errors.push(event));
      notesA.notes.set('x', { text: 'a0' });
      await store(a).saveAll();
      await until(() => errors.length > 0, 'the error');
      expect(errors[0].error.code).toBe(PersistenceErrorCode.AdapterFailed);
      expect(errors[0].error.message).toContain('applyRemote');
      expect(errors[0].error.message).toContain('synchronous');
      expect(
        store(b)
          .listUnloaded()
          .map((u) => u.id),
      ).toEqual(['x']);
    });

    itRedis("'reject': a change made while the rejected save commits is kept", async () => {
      const keyPrefix = prefix('follow-reject');
      const a = await open(keyPrefix, 'a', { conflicts: 'reject' });
      const driver = new HeldDriver(
        new RedisStorageDriver({ url: URL, keyPrefix, replicaId: 'b' }),
      );
      const b = await open(keyPrefix, 'b', { conflicts: 'reject', storage: driver });
      const conflicts: PersistenceConflictEvent[] = [];
      store(b).onConflict((event) => conflicts.push(event));
      carts(a).set('x', { items: ['a0'], total: 0 });
      await store(a).saveAll();
      await until(() => carts(b).get('x') !== undefined, 'b to follow a');
      driver.holdNotices(); // b hears a's next commit only after its own save
      carts(a).set('x', { items: ['a1'], total: 1 });
      await store(a).saveAll();

      carts(b).set('x', { items: ['b1'], total: 2 });
      const committing = new Gate();
      driver.commitGate = committing;
      const saving = store(b).saveAll();
      await committing.reached; // b's save was rejected by the storage; b has not heard yet
      carts(b).set('x', { items: ['b2'], total: 3 });
      committing.open();
      await saving;
      // The rejected version gave way to a's; the change made after the save's snapshot did not.
      expect(carts(b).get('x')).toEqual({ items: ['b2'], total: 3 });
      expect(conflicts.map((c) => [c.id, c.local.value, c.applied])).toEqual([
        ['x', { items: ['b1'], total: 2 }, false],
      ]);
      driver.releaseNotices(); // a's commit, heard late: b's unsaved change stays
      // Its own save meets the policy in turn: rejected, and then a's version is loaded.
      await store(b).saveAll();
      expect(conflicts).toHaveLength(2);
      expect(carts(b).get('x')).toEqual({ items: ['a1'], total: 1 });
      expect(await stored(keyPrefix)).toEqual([['x', { items: ['a1'], total: 1 }]]);
    });

    itRedis('an item left out for a change here is followed once that change saved', async () => {
      const keyPrefix = prefix('follow-skipped');
      const options = { builtInAdapters: true, adapters: [CartAdapter] };
      const a = await open(keyPrefix, 'a', options);
      const driver = new HeldDriver(
        new RedisStorageDriver({ url: URL, keyPrefix, replicaId: 'b' }),
      );
      const b = await open(keyPrefix, 'b', { ...options, storage: driver });
      // b creates x (custom adapter) and s (built-in sessions) without saving; a commits its own.
      carts(b).set('x', { items: ['b'], total: 1 });
      b.get(SessionManager).create({ id: 's', metadata: { by: 'b' } });
      carts(a).set('x', { items: ['a'], total: 2 });
      a.get(SessionManager).create({ id: 's', metadata: { by: 'a' } });
      await store(a).saveAll();
      await until(() => driver.notices >= 1, "b to hear a's commit");
      await store(b).backup(`${dir}/queued`); // queued behind the merge, which left both out
      expect(carts(b).get('x')).toEqual({ items: ['b'], total: 1 });
      // b removes them again: its save writes nothing, and it then holds what is stored.
      carts(b).replaceAll(new Map());
      b.get(SessionManager).delete('s');
      await store(b).saveAll();
      expect(carts(b).get('x')).toEqual({ items: ['a'], total: 2 });
      expect(b.get(SessionManager).get('s')?.metadata).toEqual({ by: 'a' });
      expect(await stored(keyPrefix)).toEqual([['x', { items: ['a'], total: 2 }]]);
    });

    itRedis('built-in managers: 20 commits followed, none rolls back a local counter', async () => {
      const keyPrefix = prefix('follow-sessions');
      const formatB = new GatedSerializer();
      const options = { builtInAdapters: true, adapters: [] };
      const a = await open(keyPrefix, 'a', { ...options, format: new GatedSerializer() });
      const b = await open(keyPrefix, 'b', { ...options, format: formatB });
      const sessionsA = a.get(SessionManager);
      const sessionsB = b.get(SessionManager);
      sessionsA.create({ id: 'remote', metadata: { n: 0 } });
      await store(a).saveAll();
      sessionsB.create({ id: 'counter', metadata: { count: 0 } });
      await store(b).saveAll();
      await until(() => sessionsB.get('remote') !== undefined, 'b to follow a');
      await until(() => sessionsA.get('counter') !== undefined, 'a to follow b');

      let rolledBack = 0;
      for (let i = 1; i <= 20; i++) {
        const decoding = formatB.holdNext();
        sessionsA.update('remote', { metadata: { n: i } });
        await store(a).saveAll();
        await decoding.reached;
        sessionsB.update('counter', { metadata: { count: i } });
        decoding.open();
        await store(b).saveAll();
        if (sessionsB.get('counter')?.metadata.count !== i) rolledBack++;
        expect(sessionsB.get('remote')?.metadata).toEqual({ n: i });
      }
      expect(rolledBack).toBe(0);
      expect(sessionsB.get('counter')?.metadata).toEqual({ count: 20 });
      await until(
        () => sessionsA.get('counter')?.metadata.count === 20,
        'a to follow b to the last count',
      );
    });
  });

  itRedis(
    'json-gzip, a writer committing while the follower counts: no count rolled back',
    async () => {
      const keyPrefix = prefix('follow-gzip');
      const options = { builtInAdapters: true, adapters: [], format: 'json-gzip' as const };
      const a = await open(keyPrefix, 'a', options);
      const b = await open(keyPrefix, 'b', options);
      const sessionsA = a.get(SessionManager);
      const sessionsB = b.get(SessionManager);
      sessionsA.create({ id: 'remote', metadata: { n: 0, text: 'x'.repeat(20_000) } });
      await store(a).saveAll();
      sessionsB.create({ id: 'counter', metadata: { count: 0 } });
      await store(b).saveAll();
      await until(() => sessionsB.get('remote') !== undefined, 'b to follow a');

      // b counts on every turn of the event loop while a commits 60 times; b follows each commit.
      let count = 0;
      let rolledBack = 0;
      let counting = true;
      const counter = (async () => {
        while (counting) {
          if (sessionsB.get('counter')?.metadata.count !== count) rolledBack++;
          sessionsB.update('counter', { metadata: { count: ++count } });
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      for (let i = 1; i <= 60; i++) {
        sessionsA.update('remote', { metadata: { n: i, text: 'x'.repeat(20_000) } });
        await store(a).saveAll();
      }
      await until(() => sessionsB.get('remote')?.metadata.n === 60, 'b to follow the 60 commits');
      counting = false;
      await counter;
      await store(b).saveAll();

      expect(rolledBack).toBe(0);
      expect(sessionsB.get('counter')?.metadata).toEqual({ count });
      await until(() => sessionsA.get('counter')?.metadata.count === count, 'a to follow b');
    },
  );

  describe('a booting replica misses no commit', () => {
    async function boot(keyPrefix: string, driver: HeldDriver): Promise<INestApplication> {
      const app = await createApp(
        {
          path: dir,
          storage: driver,
          builtInAdapters: false,
          adapters: [CartAdapter],
          saveOnShutdown: false,
        },
        { imports: [CartModule] },
      );
      apps.push(app);
      return app;
    }

    /** A writer commits `count` new items, one commit each, and the booting driver hears of each. */
    async function write(
      writer: INestApplication,
      driver: HeldDriver,
      from: number,
      count: number,
    ): Promise<void> {
      const before = driver.notices;
      for (let i = from; i < from + count; i++) {
        carts(writer).set(`n-${i}`, { items: [`w${i}`], total: i });
        await store(writer).saveAll();
      }
      await until(
        () => driver.notices >= before + count,
        'the notices to reach the booting replica',
      );
    }

    itRedis('commits made while the boot load decodes are applied right after it', async () => {
      const keyPrefix = prefix('boot-writers');
      const writer = await open(keyPrefix, 'writer');
      for (let i = 0; i < 10; i++) carts(writer).set(`old-${i}`, { items: ['o'], total: i });
      await store(writer).saveAll();

      const driver = new HeldDriver(
        new RedisStorageDriver({ url: URL, keyPrefix, replicaId: 'booting' }),
      );
      const gate = new Gate();
      driver.loadGate = gate;
      const booting = boot(keyPrefix, driver);
      await gate.reached; // the load has read; now writers go on
      await write(writer, driver, 0, 30);
      gate.open();
      const app = await booting; // loaded: with what was committed while it loaded

      expect(carts(app).entries().size).toBe(40);
      expect(sorted(carts(app).entries())).toEqual(sorted(carts(writer).entries()));
    });

    itRedis('the same after "Redis down at boot": the retry load misses nothing', async () => {
      const keyPrefix = prefix('boot-retry');
      const writer = await open(keyPrefix, 'writer');
      for (let i = 0; i < 10; i++) carts(writer).set(`old-${i}`, { items: ['o'], total: i });
      await store(writer).saveAll();

      const driver = new HeldDriver(
        new RedisStorageDriver({ url: URL, keyPrefix, replicaId: 'booting' }),
      );
      driver.failOpens = 1;
      const gate = new Gate();
      driver.loadGate = gate;
      const app = await boot(keyPrefix, driver); // starts without the storage
      expect((await store(app).getStatus()).writable).toBe(false);
      carts(app).set('mine', { items: ['local'], total: 99 });
      await gate.reached; // the retry (after 0.5 s) opened, subscribed and read
      await write(writer, driver, 0, 30);
      gate.open();
      await until(async () => (await store(app).getStatus()).writable, 'the retry load');
      await store(app).saveAll();

      expect(carts(app).entries().size).toBe(41);
      expect(carts(app).get('mine')).toEqual({ items: ['local'], total: 99 });
      for (let i = 0; i < 30; i++) expect(carts(app).get(`n-${i}`)?.total).toBe(i);
      expect(await stored(keyPrefix)).toEqual(sorted(carts(app).entries()));
    });
  });
});
