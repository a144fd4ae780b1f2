import { INestApplication } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { HealthIndicatorService } from '@nestjs/terminus';
import Redis from 'ioredis';
import {
  BuiltInFormat,
  MemoryManager,
  PersistenceAdapter,
  PersistenceError,
  PersistenceErrorCode,
  PersistenceModuleOptions,
  PersistenceStore,
  SaveMetadata,
  SessionManager,
} from 'nestjs-persistence';
import { PostgresStorageDriver } from 'nestjs-persistence/postgres';
import { PersistenceHealthIndicator } from 'nestjs-persistence/health';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { InMemoryStorage, InMemoryStorageDriver } from 'nestjs-persistence/testing';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { EventLog } from './fixtures/event-log';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { dropTables, POSTGRES_URL, postgresProblem, uniqueTable } from './fixtures/postgres';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix } from './fixtures/redis';
import { dumpState, seedState } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The store's behaviour that does not depend on where the bytes go, run on each storage: the local
 * file system (the default), the Redis driver (the server at 127.0.0.1:6379), the PostgreSQL
 * driver (the server of test/fixtures/postgres.ts; each skipped with the reason when its server does
 * not answer) and the in-memory driver of nestjs-persistence/testing. The same test code for
 * each: what an application relies on must not change with `storage`. File-specific behaviour (files, journal, lock, crash points) has its own
 * suites; so has Redis-specific behaviour (replicas, conflicts, faults).
 */

const URL = 'redis://127.0.0.1:6379';
const KEY = 'b'.repeat(64);

interface Storage {
  name: string;
  /** Why this storage cannot be tested here, if it cannot. */
  problem: string | undefined;
  /**
   * Where one test's store lives (a folder, a key prefix): a function giving the options for each
   * application opened on it (a driver instance serves one application).
   */
  place(dir: string): () => PersistenceModuleOptions;
  /**
   * What a store started with `loadOnBoot: false` does before `loadAll()`: on files it knows which
   * items are stored (listed as unloaded) and saves and clears everything else; a driver replica
   * neither saves nor clears (`STORAGE_UNAVAILABLE`): it does not know what other replicas wrote.
   */
  beforeLoad: 'unloaded items' | 'refused';
  /**
   * What `restore()` does with a stored item this store cannot read when the backup holds one of
   * its id: on files the stored file is set aside in `.quarantine/` and the backup's written; a
   * driver has nowhere to set it aside, so it keeps it and reports the backup's as unloaded.
   */
  restoreOverUnreadable: 'set aside' | 'kept';
}

const prefixes: string[] = [];
const tables: string[] = [];

const STORAGES: Storage[] = [
  {
    name: 'the file system',
    problem: undefined,
    place: (dir) => () => ({ path: dir }),
    beforeLoad: 'unloaded items',
    restoreOverUnreadable: 'set aside',
  },
  {
    name: 'the Redis driver',
    problem: redisProblem(),
    place: (dir) => {
      const keyPrefix = uniquePrefix(dir.replace(/[^a-z0-9]/gi, '').slice(-12));
      prefixes.push(keyPrefix);
      return () => ({ path: dir, storage: new RedisStorageDriver({ url: URL, keyPrefix }) });
    },
    beforeLoad: 'refused',
    restoreOverUnreadable: 'kept',
  },
  {
    name: 'the PostgreSQL driver',
    problem: postgresProblem(),
    place: (dir) => {
      const table = uniqueTable('store');
      tables.push(table);
      return () => ({
        path: dir,
        storage: new PostgresStorageDriver({ connectionString: POSTGRES_URL, table }),
      });
    },
    beforeLoad: 'refused',
    restoreOverUnreadable: 'kept',
  },
  {
    name: 'the in-memory driver',
    problem: undefined,
    place: (dir) => {
      const storage = new InMemoryStorage(); // one "server" for every application of the test
      return () => ({ path: dir, storage: new InMemoryStorageDriver({ storage }) });
    },
    beforeLoad: 'refused',
    restoreOverUnreadable: 'kept',
  },
];

describe.each(STORAGES)('PersistenceStore on $name', (storage) => {
  const test = itOrSkip(storage.problem);
  const apps: INestApplication[] = [];
  let dir: string;
  let place: () => PersistenceModuleOptions;

  beforeEach(async () => {
    dir = await makeTempDir();
    place = storage.problem ? () => ({}) : storage.place(dir);
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close().catch(() => undefined);
    if (prefixes.length > 0) {
      const client = new Redis(URL);
      for (const prefix of prefixes.splice(0)) await removeKeys(client, prefix);
      client.disconnect();
    }
    await dropTables(POSTGRES_URL, tables.splice(0));
    await removeDir(dir);
  });

  /** An application on this test's store (same folder or key prefix every time). */
  const open = async (options: PersistenceModuleOptions = {}): Promise<INestApplication> => {
    const app = await createApp(
      { ...place(), adapters: [CartAdapter], ...options },
      { imports: [CartModule], providers: [EventLog] },
    );
    apps.push(app);
    return app;
  };
  const restart = async (
    app: INestApplication,
    options: PersistenceModuleOptions = {},
  ): Promise<INestApplication> => {
    apps.splice(apps.indexOf(app), 1);
    await app.close();
    return open(options);
  };
  const unloaded = (app: INestApplication): string[] =>
    app
      .get(PersistenceStore)
      .listUnloaded()
      .map((item) => `${item.adapter}/${item.id}`)
      .sort();
  /** The health indicator's verdict (any free space will do). */
  const health = async (
    app: INestApplication,
  ): Promise<{ status: string; problems?: string[] }> => {
    const indicator = new PersistenceHealthIndicator(
      app.get(PersistenceStore),
      new HealthIndicatorService(),
    );
    const result = await indicator.isHealthy('persistence', { minFreeBytes: 0 });
    const details = result.persistence as { status: string; problems?: string[] };
    return details;
  };
  const state = (app: INestApplication): unknown => ({
    ...(dumpState(app) as object),
    carts: [...app.get(CartService).entries()].sort(([a], [b]) => a.localeCompare(b)),
  });

  test('a save comes back from a restart exactly: built-in managers and a custom adapter', async () => {
    let app = await open();
    seedState(app);
    app.get(CartService).set('cart-1', { items: ['apple', 'pear'], total: 5 });
    const meta = await app.get(PersistenceStore).saveAll();
    expect(meta).toMatchObject({
      items: 5,
      adapters: { sessions: 2, conversations: 1, focus: 1, carts: 1 },
    });
    const before = state(app);
    app = await restart(app);
    expect(state(app)).toEqual(before);
    const conversation = app.get(MemoryManager).get('conv-1');
    expect(conversation?.createdAt).toBeInstanceOf(Date);
    expect(app.get(EventLog).loaded.at(-1)).toMatchObject({
      items: 5,
      adapters: { sessions: 2, conversations: 1, focus: 1, carts: 1 },
      skipped: 0,
    });
  });

  test('changes and deletions are saved; a save with nothing changed changes nothing', async () => {
    let app = await open();
    seedState(app);
    await app.get(PersistenceStore).saveAll();
    app.get(SessionManager).update('sess-1', { status: 'completed' });
    app.get(SessionManager).delete('sess-2');
    app.get(MemoryManager).delete('conv-1');
    const meta = await app.get(PersistenceStore).saveAll();
    expect(meta).toMatchObject({ changed: 1, deleted: 2 });
    expect(await app.get(PersistenceStore).saveAll()).toMatchObject({
      changed: 0,
      deleted: 0,
      size: 0,
    });
    const before = state(app);
    app = await restart(app);
    expect(state(app)).toEqual(before);
    expect(app.get(SessionManager).get('sess-1')?.status).toBe('completed');
    expect(app.get(SessionManager).get('sess-2')).toBeUndefined();
  });

  test('clear() deletes every saved item and keeps the state in memory', async () => {
    let app = await open({ saveOnShutdown: false });
    seedState(app);
    await app.get(PersistenceStore).saveAll();
    await app.get(PersistenceStore).clear();
    expect(app.get(SessionManager).list()).toHaveLength(2);
    app = await restart(app, { saveOnShutdown: false });
    expect(app.get(SessionManager).list()).toHaveLength(0);
    expect(app.get(MemoryManager).list()).toHaveLength(0);
  });

  describe('clear() removes what this store loaded; what it did not load stays protected', () => {
    /** A save of `id` refused because the stored item was not loaded: nothing is written over it. */
    const expectUnloadedRefusal = async (app: INestApplication, id: string): Promise<void> => {
      const log = app.get(EventLog);
      const before = log.errors.length;
      await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect(log.errors.slice(before).map((e) => [e.error.code, e.itemId])).toEqual([
        [PersistenceErrorCode.UnloadedItem, id],
      ]);
    };

    test('an item encrypted with another key survives clear() and a save of its id; its key reads it', async () => {
      const right = { encryption: { key: randomBytes(32) } };
      const wrong = { encryption: { key: randomBytes(32) }, onUnreadable: 'start' as const }; // starts anyway
      let app = await open(right);
      app.get(CartService).set('secret', { items: ['original'], total: 1 });
      app = await restart(app, { ...wrong, saveOnShutdown: false }); // memory is kept by clear()
      expect(app.get(CartService).get('secret')).toBeUndefined();
      expect(unloaded(app)).toEqual(['carts/secret']);
      app.get(CartService).set('mine', { items: ['loaded'], total: 2 });
      await app.get(PersistenceStore).saveAll();
      await app.get(PersistenceStore).clear();
      expect(unloaded(app)).toEqual(['carts/secret']);
      // Memory now holds only a new item of the unloaded one's id (a save after clear() writes
      // what memory holds: the cleared item must not come back through it).
      app.get(CartService).replaceAll(new Map([['secret', { items: ['recreated'], total: 3 }]]));
      await expectUnloadedRefusal(app, 'secret');
      app = await restart(app, { ...right, saveOnShutdown: false });
      expect(app.get(CartService).get('secret')).toEqual({ items: ['original'], total: 1 });
      expect(app.get(CartService).get('mine')).toBeUndefined(); // cleared, so not an unloaded item
      expect(unloaded(app)).toEqual([]);
    });

    test('an item of a newer schema version survives clear() and a save of its id; a roll-forward reads it', async () => {
      const notes = (version: number): PersistenceAdapter & { items: Map<string, unknown> } => {
        const adapter = {
          name: 'notes',
          version,
          // Each version's migration keeps the item as it is: only the version matters here.
          migrations: Object.fromEntries(
            [2, 3].filter((v) => v <= version).map((v) => [v, (item: unknown) => item]),
          ),
          items: new Map<string, unknown>(),
          snapshot: () => new Map(adapter.items),
          restore: (items: ReadonlyMap<string, unknown>) => {
            adapter.items = new Map(items);
          },
        };
        return adapter;
      };
      const newer = notes(3);
      let app = await open({ adapters: [CartAdapter, newer] });
      newer.items.set('n', { title: 'from v3' });
      const older = notes(2);
      app = await restart(app, { adapters: [CartAdapter, older], saveOnShutdown: false });
      expect(older.items.size).toBe(0);
      expect(app.get(EventLog).errors.map((e) => e.error.code)).toEqual([
        PersistenceErrorCode.ItemFromNewerVersion,
      ]);
      older.items.set('v2-item', { title: 'loaded' });
      await app.get(PersistenceStore).saveAll();
      await app.get(PersistenceStore).clear();
      expect(unloaded(app)).toEqual(['notes/n']);
      older.items = new Map([['n', { title: 'from v2' }]]);
      await expectUnloadedRefusal(app, 'n');
      const forward = notes(3);
      app = await restart(app, { adapters: [CartAdapter, forward], saveOnShutdown: false });
      expect(Object.fromEntries(forward.items)).toEqual({ n: { title: 'from v3' } });
    });

    test('an item left alone by loadOnBoot: false survives clear() and a save of its id until loadAll()', async () => {
      let app = await open();
      app.get(CartService).set('stored', { items: ['on storage'], total: 1 });
      app = await restart(app, { loadOnBoot: false, saveOnShutdown: false });
      const store = app.get(PersistenceStore);
      app.get(CartService).set('stored', { items: ['in memory'], total: 2 });
      if (storage.beforeLoad === 'unloaded items') {
        await store.clear();
        expect(unloaded(app)).toEqual(['carts/stored']);
        await expectUnloadedRefusal(app, 'stored');
      } else {
        for (const call of [() => store.clear(), () => store.saveAll()]) {
          await expect(call()).rejects.toMatchObject({
            code: PersistenceErrorCode.StorageUnavailable,
            message: expect.stringContaining('loadOnBoot: false') as unknown,
          });
        }
      }
      await store.loadAll();
      expect(app.get(CartService).get('stored')).toEqual({ items: ['on storage'], total: 1 });
      // Loaded now: clear() removes it.
      await store.clear();
      app = await restart(app, { saveOnShutdown: false });
      expect(app.get(CartService).get('stored')).toBeUndefined();
    });
  });

  test('restore() replaces the state but never deletes an item this store could not read', async () => {
    const right = { encryption: { key: randomBytes(32) } };
    const wrong = { encryption: { key: randomBytes(32) }, onUnreadable: 'start' as const }; // starts anyway
    let app = await open(right);
    app.get(CartService).set('a', { items: ['a, right key'], total: 1 });
    app.get(CartService).set('b', { items: ['b, right key'], total: 2 });
    // A backup, made with the other key, that holds `a` (not `b`) and `c`.
    const source = await makeTempDir();
    const backup = join(await makeTempDir(), 'backup');
    const other = await createApp(
      { path: source, adapters: [CartAdapter], ...wrong },
      { imports: [CartModule] },
    );
    other.get(CartService).set('a', { items: ['a, backup'], total: 3 });
    other.get(CartService).set('c', { items: ['c, backup'], total: 4 });
    await other.get(PersistenceStore).saveAll();
    await other.get(PersistenceStore).backup(backup);
    await other.close();
    await removeDir(source);

    app = await restart(app, { ...wrong, saveOnShutdown: false });
    expect(unloaded(app)).toEqual(['carts/a', 'carts/b']);
    const before = app.get(EventLog).errors.length;
    await app.get(PersistenceStore).restore(backup);
    // The load that follows reports again what it cannot read.
    const reported = app
      .get(EventLog)
      .errors.slice(before)
      .map((e) => `${e.error.code} ${e.itemId}`)
      .sort();
    expect(app.get(CartService).get('c')).toEqual({ items: ['c, backup'], total: 4 });
    if (storage.restoreOverUnreadable === 'set aside') {
      expect(reported).toEqual([`${PersistenceErrorCode.DecryptionFailed} b`]);
      expect(app.get(CartService).get('a')).toEqual({ items: ['a, backup'], total: 3 });
      expect(unloaded(app)).toEqual(['carts/b']);
    } else {
      expect(reported).toEqual([
        `${PersistenceErrorCode.DecryptionFailed} a`,
        `${PersistenceErrorCode.DecryptionFailed} b`,
        `${PersistenceErrorCode.UnloadedItem} a`,
      ]);
      expect(app.get(CartService).get('a')).toBeUndefined();
      expect(unloaded(app)).toEqual(['carts/a', 'carts/b']);
    }
    await removeDir(join(backup, '..'));

    // The owner of the right key finds `b` where it was, and `a` too (on files: in quarantine);
    // the backup's items of the other key are unreadable to it, so it starts anyway.
    app = await restart(app, { ...right, saveOnShutdown: false, onUnreadable: 'start' });
    expect(app.get(CartService).get('b')).toEqual({ items: ['b, right key'], total: 2 });
    if (storage.restoreOverUnreadable === 'set aside') {
      const quarantined = await readdir(join(dir, '.quarantine', 'carts'));
      expect(quarantined).toEqual([expect.stringMatching(/-a\.json\.enc$/)]);
      expect(app.get(CartService).get('a')).toBeUndefined(); // the backup's, of the other key
    } else {
      expect(app.get(CartService).get('a')).toEqual({ items: ['a, right key'], total: 1 });
    }
  });

  test('saved and loaded reach @OnEvent and the callbacks, with their metadata', async () => {
    const app = await open();
    const store = app.get(PersistenceStore);
    const seen: SaveMetadata[] = [];
    const stop = store.onSave((meta) => seen.push(meta));
    app.get(SessionManager).create({ id: 's' });
    await store.saveAll();
    stop();
    await store.saveAll();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ changed: 1, items: 1 });
    expect(app.get(EventLog).saved).toHaveLength(2);
    await store.loadAll();
    expect(app.get(EventLog).loaded.at(-1)).toMatchObject({ items: 1 });
  });

  test('an item that cannot be saved is reported and keeps its last version; the rest is saved', async () => {
    const values = new Map<string, unknown>();
    const adapter: PersistenceAdapter = {
      name: 'things',
      snapshot: () => new Map(values),
      restore: (items) => {
        values.clear();
        for (const [id, value] of items) values.set(id, value);
      },
    };
    let app = await open({ adapters: [CartAdapter, adapter] }); // its load empties `values`
    values.set('good', { n: 1 });
    values.set('bad', { n: 1 });
    await app.get(PersistenceStore).saveAll();
    values.set('good', { n: 2 });
    values.set('bad', { n: new Map([['x', 1]]) }); // not JSON data: refused
    const failed = app.get(PersistenceStore).saveAll();
    await expect(failed).rejects.toMatchObject({ code: PersistenceErrorCode.SaveIncomplete });
    expect(app.get(EventLog).errors.map((e) => [e.error.code, e.itemId])).toContainEqual([
      PersistenceErrorCode.SerializeFailed,
      'bad',
    ]);
    // Down until a save writes everything, not just until the next save.
    const incomplete = await health(app);
    expect(incomplete.status).toBe('down');
    expect(incomplete.problems).toContainEqual(
      expect.stringContaining('the last save was incomplete: Save finished with 1 of'),
    );
    await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.SaveIncomplete,
    });
    expect((await health(app)).status).toBe('down');
    values.set('bad', { n: 3 });
    await app.get(PersistenceStore).saveAll();
    expect(await app.get(PersistenceStore).getStatus()).toMatchObject({ lastSaveIncomplete: null });
    expect((await health(app)).status).toBe('up');
    values.set('bad', { n: new Map([['x', 1]]) });
    apps.splice(apps.indexOf(app), 1);
    await app.close().catch(() => undefined);
    values.clear();
    app = await open({ adapters: [CartAdapter, adapter], saveOnShutdown: false });
    expect(Object.fromEntries(values)).toEqual({ good: { n: 2 }, bad: { n: 3 } });
  });

  describe('items the boot load cannot use (onUnreadable)', () => {
    const openLogged = async (
      options: PersistenceModuleOptions,
      logger?: RecordingLogger,
    ): Promise<INestApplication> => {
      const app = await createApp(
        { ...place(), adapters: [CartAdapter], ...options },
        { imports: [CartModule], providers: [EventLog], logger },
      );
      apps.push(app);
      return app;
    };
    const close = async (app: INestApplication): Promise<void> => {
      apps.splice(apps.indexOf(app), 1);
      await app.close();
    };
    /** A custom adapter of schema `version`, whose migration to 2 throws while `broken.now`. */
    const things = (
      values: Map<string, unknown>,
      version?: number,
      broken = { now: false },
    ): PersistenceAdapter => ({
      name: 'things',
      ...(version === undefined
        ? {}
        : {
            version,
            migrations: {
              2: (data: unknown) => {
                if (broken.now) throw new Error('the migration is not deployed yet');
                return data;
              },
            },
          }),
      snapshot: () => new Map(values),
      restore: (items) => {
        values.clear();
        for (const [id, value] of items) values.set(id, value);
      },
    });

    test('a wrong key: app.init() rejects with one summary (count per collection, the fix) in one log line; the right key loads everything', async () => {
      const first = await openLogged({ encryption: { key: KEY } });
      for (let i = 0; i < 50; i++) first.get(MemoryManager).create({ id: `c-${i}` });
      first.get(SessionManager).create({ id: 's-1' });
      await first.get(PersistenceStore).saveAll();
      await close(first);

      const logger = new RecordingLogger();
      const refused = await openLogged({ encryption: { key: 'c'.repeat(64) } }, logger).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(PersistenceError);
      expect(refused).toMatchObject({ code: PersistenceErrorCode.UnreadableItems });
      const message = (refused as Error).message;
      expect(message).toContain('did not start: 51 stored item(s) could not be used');
      expect(message).toMatch(
        /51 item\(s\) could not be decrypted .*\(conversations: 50, sessions: 1; e\.g\. "c-0", "c-1", "c-10", …\)/,
      );
      expect(message).toContain('encryption.keys');
      expect(message).toContain("onUnreadable: 'start'");
      expect(logger.lines.filter((line) => /^(error|warn)/.test(line))).toEqual([
        `error ${message}`,
      ]);

      const right = await openLogged({ encryption: { key: KEY } });
      expect(right.get(MemoryManager).list()).toHaveLength(50);
      expect(right.get(SessionManager).get('s-1')).toBeDefined();
    });

    test("onUnreadable 'start': boots with what could be read, down while the items are unresolved (even after a save), up once a loadAll() reads them", async () => {
      const values = new Map<string, unknown>();
      const first = await openLogged({ adapters: [CartAdapter, things(values)] });
      values.set('t-1', { n: 1 });
      values.set('t-2', { n: 2 });
      await first.get(PersistenceStore).saveAll();
      await close(first);

      const broken = { now: true };
      const adapters = [CartAdapter, things(values, 2, broken)];
      await expect(openLogged({ adapters })).rejects.toMatchObject({
        code: PersistenceErrorCode.UnreadableItems,
        message: expect.stringMatching(/2 item\(s\) failed their schema migration \(things: 2;/),
      });
      const logger = new RecordingLogger();
      const app = await openLogged({ adapters, onUnreadable: 'start' }, logger);
      const store = app.get(PersistenceStore);
      expect(values.size).toBe(0);
      // One line for the kind, with the count and the ids; not one per item.
      const lines = logger.lines.filter((line) => /^(error|warn)/.test(line));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/2 item\(s\) failed their schema migration \(things: 2; e\.g\. "t-/);
      await store.saveAll();
      expect((await store.getStatus()).unresolved).toEqual({
        items: 2,
        kinds: { 'migration-failed': 2 },
      });
      const down = await health(app);
      expect(down.status).toBe('down');
      expect(down.problems).toContainEqual(
        expect.stringContaining('2 stored item(s) could not be loaded and are unresolved'),
      );

      broken.now = false; // the fixed migration
      await store.loadAll();
      expect(Object.fromEntries(values)).toEqual({ 't-1': { n: 1 }, 't-2': { n: 2 } });
      expect((await store.getStatus()).unresolved).toEqual({ items: 0, kinds: {} });
      await store.saveAll();
      expect((await health(app)).status).toBe('up');
    });

    test('items of a newer schema version (a rollback) neither fail the start nor the health check, until a save cannot write one', async () => {
      const values = new Map<string, unknown>();
      const newer = await openLogged({ adapters: [CartAdapter, things(values, 2)] });
      values.set('t-1', { n: 1 });
      await newer.get(PersistenceStore).saveAll();
      await close(newer);

      const app = await openLogged({ adapters: [CartAdapter, things(values)] });
      const store = app.get(PersistenceStore);
      expect(values.size).toBe(0);
      expect(store.listUnloaded()).toMatchObject([
        { adapter: 'things', id: 't-1', kind: 'newer-schema' },
      ]);
      await store.saveAll();
      expect((await health(app)).status).toBe('up');

      values.set('t-1', { n: 'rolled back' }); // its stored copy is never overwritten
      await expect(store.saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect((await health(app)).status).toBe('down');
    });
  });

  describe.each<[BuiltInFormat, boolean]>([
    ['json', false],
    ['json-compact', true],
    ['json-gzip', true],
    ['msgpack', true],
    ['auto', false],
  ])('format %s (encrypted: %s)', (format, encrypted) => {
    test('round-trips', async () => {
      const options: PersistenceModuleOptions = {
        format,
        ...(encrypted ? { encryption: { key: KEY } } : {}),
      };
      let app = await open(options);
      seedState(app);
      app.get(CartService).set('cart-1', { items: ['x'.repeat(6000)], total: 1 }); // gzip with auto
      await app.get(PersistenceStore).saveAll();
      const before = state(app);
      app = await restart(app, options);
      expect(state(app)).toEqual(before);
      expect(app.get(EventLog).loaded.at(-1)).toMatchObject({ items: 5, skipped: 0 });
    });
  });

  test('after close, every operation is refused with STORE_CLOSED', async () => {
    const app = await open();
    const store = app.get(PersistenceStore);
    apps.splice(apps.indexOf(app), 1);
    await app.close();
    for (const call of [() => store.saveAll(), () => store.loadAll(), () => store.clear()]) {
      await expect(call()).rejects.toMatchObject({ code: PersistenceErrorCode.StoreClosed });
    }
  });
});
