import { INestApplication } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import Redis from 'ioredis';
import {
  BuiltInFormat,
  PersistenceAdapter,
  PersistenceConflictEvent,
  PersistenceError,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PERSISTENCE_BACKUP_CRON,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { createApp } from './fixtures/app.factory';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix, until } from './fixtures/redis';
import { dumpState, seedState } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The store on the Redis storage driver, through real Nest applications, against the server at
 * 127.0.0.1:6379 (skipped with the reason when none answers). Each test has its own key prefix.
 */

const itRedis = itOrSkip(redisProblem());
const URL = 'redis://127.0.0.1:6379';
const KEY = 'a'.repeat(64);

async function rejection(promise: Promise<unknown>): Promise<PersistenceError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(PersistenceError);
    return error as PersistenceError;
  }
  throw new Error('expected a rejection');
}

/**
 * An adapter whose snapshot can be made to wait: a save held in it keeps the store's operation
 * queue busy, so an operation queued behind it runs only after what the test does meanwhile (another
 * replica's commit, whose notice is queued after it).
 */
class QueueGate implements PersistenceAdapter {
  readonly name = 'gate';
  private held?: Promise<void>;
  release: () => void = () => undefined;

  async snapshot(): Promise<ReadonlyMap<string, unknown>> {
    await this.held;
    return new Map();
  }

  restore(): void {}

  /** Holds `store`'s queue with a save, queues `operation` behind it, and returns its promise. */
  holding<T>(
    store: PersistenceStore,
    operation: (store: PersistenceStore) => Promise<T>,
  ): Promise<T> {
    this.held = new Promise((resolve) => (this.release = resolve));
    const saving = store.saveAll();
    const queued = operation(store);
    return saving.then(() => queued);
  }
}

describe('PersistenceStore on the Redis driver', () => {
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
    options: PersistenceModuleOptions = {},
    replicaId?: string,
  ): Promise<INestApplication> {
    const app = await createApp(
      {
        path: dir,
        storage: new RedisStorageDriver({ url: URL, keyPrefix, replicaId }),
        adapters: [CartAdapter],
        ...options,
      },
      { imports: [CartModule] },
    );
    apps.push(app);
    return app;
  }

  async function close(app: INestApplication): Promise<void> {
    apps.splice(apps.indexOf(app), 1);
    await app.close();
  }

  it('refuses a storage that is not a driver of contract 1, and bad conflict policies', async () => {
    for (const [options, text] of [
      [{ storage: {} }, 'driverVersion: 1'],
      [{ storage: { driverVersion: 2 } }, 'StorageDriver of contract version 1'],
      [{ conflicts: 'first-wins' }, "'last-write-wins' or 'reject'"],
    ] as const) {
      const error = await rejection(createApp({ path: dir, ...(options as object) }));
      expect(error.code).toBe(PersistenceErrorCode.InvalidOptions);
      expect(error.message).toContain(text);
    }
  });

  itRedis('saves, loads and restarts: built-in managers and a custom adapter', async () => {
    const keyPrefix = prefix('store');
    const app = await open(keyPrefix);
    seedState(app);
    app.get(CartService).set('c1', { items: ['apple'], total: 1 });
    const meta = await app.get(PersistenceStore).saveAll();
    expect(meta.changed).toBe(5);
    expect(meta.path).toContain(keyPrefix);
    const before = dumpState(app);
    await close(app);
    // Nothing in the folder: no lock, no journal, no item files.
    expect(await readdir(dir)).toEqual([]);
    const again = await open(keyPrefix);
    expect(dumpState(again)).toEqual(before);
    expect(again.get(CartService).get('c1')).toEqual({ items: ['apple'], total: 1 });
    // Deletes, and an unchanged save writes nothing.
    again.get(SessionManager).delete('sess-2');
    const second = await again.get(PersistenceStore).saveAll();
    expect(second.deleted).toBe(1);
    expect(second.changed).toBe(0);
    expect((await again.get(PersistenceStore).saveAll()).deleted).toBe(0);
    await close(again);
    const third = await open(keyPrefix, { saveOnShutdown: false });
    expect(third.get(SessionManager).get('sess-2')).toBeUndefined();
    expect(third.get(SessionManager).get('sess-1')).toBeDefined();
    // clear() removes every stored item.
    await third.get(PersistenceStore).clear();
    await close(third);
    const empty = await open(keyPrefix, { saveOnShutdown: false });
    expect(empty.get(SessionManager).list()).toEqual([]);
  });

  for (const format of ['json', 'json-compact', 'json-gzip'] as BuiltInFormat[]) {
    for (const encrypted of [false, true]) {
      itRedis(`round-trips in ${format}${encrypted ? ', encrypted' : ''}`, async () => {
        const keyPrefix = prefix(`fmt-${format}`);
        const options = { format, ...(encrypted ? { encryption: { key: KEY } } : {}) };
        const app = await open(keyPrefix, options);
        seedState(app);
        await app.get(PersistenceStore).saveAll();
        const before = dumpState(app);
        await close(app);
        const client = new Redis(URL);
        const raw = await client.hgetBuffer(`${keyPrefix}item:sessions:sess-1`, 'data');
        client.disconnect();
        expect(raw).not.toBeNull();
        if (encrypted) expect(raw!.toString('latin1')).not.toContain('ann');
        if (format === 'json-gzip' && !encrypted) expect(raw![0]).toBe(0x1f);
        // Read back in another format: every built-in format is detected from the bytes.
        const again = await open(keyPrefix, { ...options, format: 'json' });
        expect(dumpState(again)).toEqual(before);
      });
    }
  }

  itRedis('backs up to a folder of item files and restores it, on Redis or on files', async () => {
    const keyPrefix = prefix('backup');
    const app = await open(keyPrefix, { saveOnShutdown: false });
    const store = app.get(PersistenceStore);
    seedState(app);
    app.get(CartService).set('c1', { items: ['apple'], total: 1 });
    await store.saveAll();
    const before = dumpState(app);
    const folder = join(dir, 'backup');
    const meta = await store.backup(folder);
    expect(meta.files).toBe(5);
    expect((await readdir(join(folder, 'sessions'))).sort()).toEqual([
      'sess-1.json',
      'sess-2.json',
    ]);
    // Changed and saved after the backup; restore brings the backup's state back, in one commit.
    app.get(SessionManager).delete('sess-1');
    app.get(SessionManager).create({ id: 'later' });
    await store.saveAll();
    const restored = await store.restore(folder);
    expect(restored.files).toBe(5);
    expect(dumpState(app)).toEqual(before);
    await close(app);
    const again = await open(keyPrefix, { saveOnShutdown: false });
    expect(dumpState(again)).toEqual(before);
    expect(again.get(SessionManager).get('later')).toBeUndefined();
    // The same folder restores into a store on the file system.
    const files = await createApp(
      { path: join(dir, 'files'), adapters: [CartAdapter] },
      { imports: [CartModule] },
    );
    apps.push(files);
    await files.get(PersistenceStore).restore(folder);
    expect(dumpState(files)).toEqual(before);
    expect(files.get(CartService).get('c1')).toEqual({ items: ['apple'], total: 1 });
    // What a driver store still refuses, with a typed error.
    const error = await rejection(again.get(PersistenceStore).discardUnloaded('carts', 'c1'));
    expect(error.code).toBe(PersistenceErrorCode.NotSupportedByStorage);
    await expect(again.get(PersistenceStore).checkpoint()).resolves.toBeUndefined();
  });

  itRedis('a scheduled backup runs on one replica per tick (a lease)', async () => {
    const keyPrefix = prefix('lease');
    const backups = { directory: join(dir, 'backups'), cron: '0 3 * * *' };
    const a = await open(keyPrefix, { backups }, 'a');
    const b = await open(keyPrefix, { backups }, 'b');
    a.get(SessionManager).create({ id: 's1' });
    await a.get(PersistenceStore).saveAll();
    const ticks = [a, b].map((app) =>
      app.get(SchedulerRegistry).getCronJob(PERSISTENCE_BACKUP_CRON).fireOnTick(),
    );
    await Promise.all(ticks);
    await until(
      async () => (await a.get(PersistenceStore).listBackups()).length > 0,
      'the scheduled backup',
    );
    // Both queues idle: whichever replica lost the lease skipped its tick.
    await a.get(PersistenceStore).saveAll();
    await b.get(PersistenceStore).saveAll();
    const list = await b.get(PersistenceStore).listBackups();
    expect(list).toHaveLength(1);
    expect(list[0].files).toBe(1);
    const client = new Redis(URL);
    const lease = await client.get(`${keyPrefix}lease:backup`);
    client.disconnect();
    expect(lease).not.toBeNull(); // left to expire, so a lagging replica does not run the tick again
  });

  itRedis('loads the commits of another replica as they happen', async () => {
    const keyPrefix = prefix('watch');
    const a = await open(keyPrefix, {}, 'a');
    const b = await open(keyPrefix, {}, 'b');
    const loaded: string[] = [];
    b.get(PersistenceStore).onLoad((meta) => loaded.push(JSON.stringify(meta.adapters)));
    a.get(SessionManager).create({ id: 's1', metadata: { v: 1 } });
    a.get(CartService).set('c1', { items: ['x'], total: 1 });
    await a.get(PersistenceStore).saveAll();
    await until(() => b.get(SessionManager).get('s1') !== undefined, 'b to load s1');
    await until(() => b.get(CartService).get('c1') !== undefined, 'b to load c1');
    expect(b.get(SessionManager).get('s1')!.metadata).toEqual({ v: 1 });
    expect(loaded.length).toBeGreaterThan(0);
    // A removal, and an item b changed locally and did not save yet is kept.
    b.get(SessionManager).create({ id: 'mine' });
    a.get(SessionManager).delete('s1');
    await a.get(PersistenceStore).saveAll();
    await until(() => b.get(SessionManager).get('s1') === undefined, 'b to remove s1');
    expect(b.get(SessionManager).get('mine')).toBeDefined();
    await b.get(PersistenceStore).saveAll();
    await until(() => a.get(SessionManager).get('mine') !== undefined, 'a to load mine');
  });

  for (const policy of ['last-write-wins', 'reject'] as const) {
    itRedis(`reports a conflict with ${policy}`, async () => {
      const keyPrefix = prefix(`conflict-${policy}`);
      const a = await open(keyPrefix, { conflicts: policy }, 'a');
      a.get(CartService).set('c1', { items: ['base'], total: 0 });
      await a.get(PersistenceStore).saveAll();
      const b = await open(keyPrefix, { conflicts: policy }, 'b');
      // b changes c1 before it hears of a's commit: it keeps its unsaved version, saves on top.
      a.get(CartService).set('c1', { items: ['from-a'], total: 1 });
      b.get(CartService).set('c1', { items: ['from-b'], total: 2 });
      await a.get(PersistenceStore).saveAll();
      const conflicts: PersistenceConflictEvent[] = [];
      b.get(PersistenceStore).onConflict((event) => conflicts.push(event));
      await b.get(PersistenceStore).saveAll();
      expect(conflicts).toEqual([
        {
          adapter: 'carts',
          id: 'c1',
          local: { value: { items: ['from-b'], total: 2 }, deleted: false },
          remote: { value: { items: ['from-a'], total: 1 }, deleted: false, revision: 2 },
          applied: policy === 'last-write-wins',
        },
      ]);
      const winner = policy === 'reject' ? 'from-a' : 'from-b';
      expect(b.get(CartService).get('c1')!.items).toEqual([winner]);
      await until(() => a.get(CartService).get('c1')!.items[0] === winner, 'a to converge');
      // Resolved: the next saves are not conflicts.
      await b.get(PersistenceStore).saveAll();
      expect(conflicts).toHaveLength(1);
      await close(b);
      await close(a);
      const c = await open(keyPrefix, {}, 'c');
      expect(c.get(CartService).get('c1')!.items).toEqual([winner]);
    });
  }

  for (const policy of ['last-write-wins', 'reject'] as const) {
    itRedis(
      `clear() meets another replica's newer version: a conflict under ${policy}`,
      async () => {
        const keyPrefix = prefix(`clear-conflict-${policy}`);
        const a = await open(keyPrefix, { conflicts: policy, saveOnShutdown: false }, 'a');
        a.get(CartService).set('shared', { items: ['base'], total: 0 });
        a.get(CartService).set('untouched', { items: ['x'], total: 0 });
        await a.get(PersistenceStore).saveAll();
        // b's clear() runs before b hears of a's next commit: it removes `shared` expecting the
        // revision it loaded.
        const gate = new QueueGate();
        const b = await open(
          keyPrefix,
          { conflicts: policy, saveOnShutdown: false, adapters: [CartAdapter, gate] },
          'b',
        );
        expect(b.get(CartService).get('shared')?.items).toEqual(['base']);
        const conflicts: PersistenceConflictEvent[] = [];
        b.get(PersistenceStore).onConflict((event) => conflicts.push(event));
        const clearing = gate.holding(b.get(PersistenceStore), (store) => store.clear());
        a.get(CartService).set('shared', { items: ['from-a'], total: 1 });
        await a.get(PersistenceStore).saveAll();
        gate.release();
        await clearing;
        expect(conflicts).toEqual([
          {
            adapter: 'carts',
            id: 'shared',
            local: { value: undefined, deleted: true },
            remote: { value: { items: ['from-a'], total: 1 }, deleted: false, revision: 2 },
            applied: policy === 'last-write-wins',
          },
        ]);
        // 'reject' keeps the remote version and loads it; last write wins removes it.
        const kept = policy === 'reject' ? { items: ['from-a'], total: 1 } : undefined;
        if (kept) expect(b.get(CartService).get('shared')).toEqual(kept);
        await close(b);
        await close(a);
        const c = await open(keyPrefix, { saveOnShutdown: false }, 'c');
        expect(c.get(CartService).get('shared')).toEqual(kept);
        expect(c.get(CartService).get('untouched')).toBeUndefined(); // no conflict: removed
      },
    );
  }

  itRedis(
    "restore() over another replica's newer version is reported as a conflict (last write wins)",
    async () => {
      const keyPrefix = prefix('restore-conflict');
      const a = await open(keyPrefix, { conflicts: 'reject', saveOnShutdown: false }, 'a');
      a.get(CartService).set('shared', { items: ['backed up'], total: 0 });
      await a.get(PersistenceStore).saveAll();
      const folder = join(dir, 'backup');
      await a.get(PersistenceStore).backup(folder);
      const gate = new QueueGate();
      const b = await open(
        keyPrefix,
        { conflicts: 'reject', saveOnShutdown: false, adapters: [CartAdapter, gate] },
        'b',
      );
      const conflicts: PersistenceConflictEvent[] = [];
      b.get(PersistenceStore).onConflict((event) => conflicts.push(event));
      const restoring = gate.holding(b.get(PersistenceStore), (store) => store.restore(folder));
      a.get(CartService).set('shared', { items: ['newer'], total: 1 });
      await a.get(PersistenceStore).saveAll();
      gate.release();
      await restoring;
      expect(conflicts).toEqual([
        {
          adapter: 'carts',
          id: 'shared',
          local: { value: { items: ['backed up'], total: 0 }, deleted: false },
          remote: { value: { items: ['newer'], total: 1 }, deleted: false, revision: 2 },
          applied: true,
        },
      ]);
      expect(b.get(CartService).get('shared')).toEqual({ items: ['backed up'], total: 0 });
    },
  );

  itRedis('reports bad data in Redis like a corrupt file and never overwrites it', async () => {
    const keyPrefix = prefix('bad');
    const client = new Redis(URL);
    try {
      await client.hset(`${keyPrefix}item:carts:c1`, { data: 'not json', rev: '1', by: 'x' });
      await client.sadd(`${keyPrefix}index:carts`, 'c1');
      await client.set(`${keyPrefix}revision`, '1');
      // By default the start is refused: a driver cannot set the value aside for the app.
      await expect(open(keyPrefix)).rejects.toMatchObject({
        code: PersistenceErrorCode.UnreadableItems,
        message: expect.stringContaining('1 item(s) are not valid items (corrupt), left in place'),
      });
      const errors: PersistenceErrorEvent[] = [];
      const app = await open(keyPrefix, { onUnreadable: 'start' });
      app.get(PersistenceStore).onError((event) => errors.push(event));
      const boot = app.get(PersistenceStore).getLastError();
      expect(boot?.code).toBe(PersistenceErrorCode.CorruptFile);
      expect(boot?.message).toContain('carts/c1');
      expect(app.get(PersistenceStore).listUnloaded()).toHaveLength(1);
      app.get(CartService).set('c1', { items: ['new'], total: 1 });
      await rejection(app.get(PersistenceStore).saveAll());
      expect(errors.map((e) => e.error.code)).toContain(PersistenceErrorCode.UnloadedItem);
      expect(await client.hget(`${keyPrefix}item:carts:c1`, 'data')).toBe('not json');
    } finally {
      client.disconnect();
    }
  });
});
