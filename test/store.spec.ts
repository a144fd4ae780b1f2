import { INestApplication, Injectable } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FocusManager,
  LoadMetadata,
  MemoryManager,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceEvents,
  PersistenceStore,
  SaveMetadata,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { EventLog } from './fixtures/event-log';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { dumpState, seedState } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/** Files a person sees in a folder (the journal and the lock are hidden). */
const visible = async (path: string): Promise<string[]> =>
  (await readdir(path)).filter((name) => !name.startsWith('.')).sort();

describe('PersistenceStore', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  const open = async (
    options: Parameters<typeof createApp>[0] = {},
    extra: Parameters<typeof createApp>[1] = {},
  ): Promise<INestApplication> => {
    const app = await createApp({ path: dir, ...options }, extra);
    apps.push(app);
    return app;
  };

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(dir);
  });

  describe('save and load', () => {
    it('writes one file per item under <path>/<adapter>/ and reads back the same state', async () => {
      const first = await open();
      seedState(first);
      const meta = await first.get(PersistenceStore).saveAll();
      await first.get(PersistenceStore).checkpoint();
      expect(meta).toMatchObject({
        path: dir,
        format: 'json',
        items: 4,
        adapters: { sessions: 2, conversations: 1, focus: 1 },
      });
      expect(meta.timestamp).toBeInstanceOf(Date);
      expect(meta.durationMs).toBeGreaterThanOrEqual(0);
      expect(await readdir(join(dir, 'sessions'))).toEqual(
        expect.arrayContaining(['sess-1.json', 'sess-2.json']),
      );
      expect(await readdir(join(dir, 'conversations'))).toEqual(['conv-1.json']);
      expect(await readdir(join(dir, 'focus'))).toEqual(['chain-1.json']);
      const sizes = await Promise.all(
        [
          'sessions/sess-1.json',
          'sessions/sess-2.json',
          'conversations/conv-1.json',
          'focus/chain-1.json',
        ].map(async (f) => (await stat(join(dir, f))).size),
      );
      expect(meta.size).toBe(sizes.reduce((a, b) => a + b, 0));
      const expected = dumpState(first);
      await first.close();
      apps.length = 0;

      const second = await open();
      expect(dumpState(second)).toEqual(expected);
      const conversation = second.get(MemoryManager).get('conv-1');
      expect(conversation?.messages.map((m) => m.role)).toEqual([
        'system',
        'user',
        'assistant',
        'tool',
      ]);
      expect(conversation?.createdAt).toBeInstanceOf(Date);
      expect(second.get(FocusManager).currentFocus('chain-1')?.target).toBe('bootstrap');
    });

    it('stores readable JSON with the id, a version and the data', async () => {
      const app = await open();
      app.get(SessionManager).create({ id: 'abc', metadata: { n: 1 } });
      await app.get(PersistenceStore).saveAll();
      await app.get(PersistenceStore).checkpoint();
      const file = JSON.parse(await readFile(join(dir, 'sessions', 'abc.json'), 'utf8'));
      expect(file).toMatchObject({
        id: 'abc',
        v: 1,
        data: { id: 'abc', status: 'active', metadata: { n: 1 } },
      });
      expect(typeof file.data.createdAt).toBe('string');
    });

    it('removes the file of an item deleted in memory at the next save', async () => {
      const app = await open();
      seedState(app);
      const store = app.get(PersistenceStore);
      await store.saveAll();
      app.get(SessionManager).delete('sess-2');
      app.get(MemoryManager).delete('conv-1');
      const meta = await store.saveAll();
      await store.checkpoint();
      expect(meta.deleted).toBe(2);
      expect(await readdir(join(dir, 'sessions'))).toEqual(['sess-1.json']);
      expect(await readdir(join(dir, 'conversations'))).toEqual([]);
    });

    it('saves an empty state and loads it as empty', async () => {
      const app = await open();
      const meta = await app.get(PersistenceStore).saveAll();
      expect(meta.items).toBe(0);
      expect(meta.size).toBe(0);
      const load = await app.get(PersistenceStore).loadAll();
      expect(load.items).toBe(0);
    });

    it('loads from a folder that does not exist yet without error', async () => {
      const app = await open({ path: join(dir, 'not', 'yet') });
      const load = await app.get(PersistenceStore).loadAll();
      expect(load).toMatchObject({ items: 0, skipped: 0 });
    });

    it('loadAll() replaces the in-memory state with the saved state', async () => {
      const app = await open();
      seedState(app);
      const store = app.get(PersistenceStore);
      await store.saveAll();
      const saved = dumpState(app);
      app.get(SessionManager).create({ id: 'unsaved' });
      app.get(SessionManager).update('sess-1', { status: 'failed' });
      const meta = await store.loadAll();
      expect(meta.items).toBe(4);
      expect(dumpState(app)).toEqual(saved);
    });

    it('getLastSaveTime() is null before the first save, then the start of the last save', async () => {
      const app = await open();
      const store = app.get(PersistenceStore);
      expect(store.getLastSaveTime()).toBeNull();
      const meta = await store.saveAll();
      expect(store.getLastSaveTime()).toEqual(meta.timestamp);
    });
  });

  describe('clear', () => {
    it('removes every saved item but keeps the in-memory state', async () => {
      const app = await open();
      seedState(app);
      const store = app.get(PersistenceStore);
      await store.saveAll();
      await store.clear();
      expect(await visible(join(dir, 'sessions'))).toEqual([]);
      expect(await visible(join(dir, 'conversations'))).toEqual([]);
      expect(app.get(SessionManager).list()).toHaveLength(2);
      expect((await store.loadAll()).items).toBe(0);
      expect(app.get(SessionManager).list()).toHaveLength(0);
    });

    it('clears an empty store without error', async () => {
      const app = await open();
      await expect(app.get(PersistenceStore).clear()).resolves.toBeUndefined();
    });
  });

  describe('callbacks and events', () => {
    it('calls onSave/onLoad with metadata and emits persistence.saved/loaded to @OnEvent listeners', async () => {
      const app = await open({}, { providers: [EventLog] });
      const store = app.get(PersistenceStore);
      const log = app.get(EventLog);
      expect(log.loaded).toHaveLength(1); // the load at boot
      const saves: SaveMetadata[] = [];
      const loads: LoadMetadata[] = [];
      store.onSave((m) => saves.push(m));
      store.onLoad((m) => loads.push(m));
      seedState(app);
      const meta = await store.saveAll();
      await store.loadAll();
      expect(saves).toEqual([meta]);
      expect(log.saved).toEqual([meta]);
      expect(loads).toHaveLength(1);
      expect(loads[0]).toMatchObject({ path: dir, format: 'json', items: 4, skipped: 0 });
      expect(log.loaded[1]).toBe(loads[0]);
    });

    it('stops calling a callback after its unsubscribe function is called', async () => {
      const app = await open();
      const store = app.get(PersistenceStore);
      const saves: SaveMetadata[] = [];
      const unsubscribe = store.onSave((m) => saves.push(m));
      await store.saveAll();
      unsubscribe();
      await store.saveAll();
      expect(saves).toHaveLength(1);
    });

    it('a callback or listener that throws does not break the save', async () => {
      @Injectable()
      class ThrowingListener {
        @OnEvent(PersistenceEvents.Saved)
        onSaved(): void {
          throw new Error('listener bug');
        }
      }
      const app = await open({}, { providers: [ThrowingListener] });
      const store = app.get(PersistenceStore);
      const after: SaveMetadata[] = [];
      store.onSave(() => {
        throw new Error('callback bug');
      });
      store.onSave(async () => {
        await Promise.resolve();
        throw new Error('async callback bug');
      });
      store.onSave((m) => after.push(m));
      seedState(app);
      const meta = await store.saveAll();
      expect(after).toEqual([meta]);
      await expect(store.saveAll()).resolves.toMatchObject({ items: 4 });
    });

    it('calls onError and emits persistence.error with operation, adapter, item id and path', async () => {
      const app = await open({}, { providers: [EventLog] });
      const store = app.get(PersistenceStore);
      const errors: PersistenceErrorEvent[] = [];
      store.onError((e) => errors.push(e));
      await mkdir(join(dir, 'sessions'), { recursive: true });
      await writeFile(join(dir, 'sessions', 'broken.json'), '{ not json');
      await store.loadAll();
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({
        operation: 'load',
        adapter: 'sessions',
        itemId: 'broken',
        path: join(dir, 'sessions', 'broken.json'),
      });
      expect(errors[0].error.code).toBe(PersistenceErrorCode.CorruptFile);
      expect(app.get(EventLog).errors).toEqual(errors);
    });

    it('works without EventEmitterModule: callbacks still fire', async () => {
      const app = await open({}, { events: false });
      const saves: SaveMetadata[] = [];
      app.get(PersistenceStore).onSave((m) => saves.push(m));
      await app.get(PersistenceStore).saveAll();
      expect(saves).toHaveLength(1);
    });
  });

  describe('custom adapters', () => {
    it('persists a provider class from the user module beside the built-in adapters', async () => {
      const first = await open({ adapters: [CartAdapter] }, { imports: [CartModule] });
      first.get(CartService).set('cart-1', { items: ['apple', 'pear'], total: 7 });
      const meta = await first.get(PersistenceStore).saveAll();
      await first.get(PersistenceStore).checkpoint();
      expect(meta.adapters).toMatchObject({ carts: 1, sessions: 0 });
      expect(await readdir(join(dir, 'carts'))).toEqual(['cart-1.json']);
      await first.close();
      apps.length = 0;
      const second = await open({ adapters: [CartAdapter] }, { imports: [CartModule] });
      expect(second.get(CartService).get('cart-1')).toEqual({ items: ['apple', 'pear'], total: 7 });
    });

    it('persists an adapter instance', async () => {
      const state = new Map<string, { n: number }>();
      const adapter = {
        name: 'counters',
        snapshot: () => new Map(state),
        restore: (items: ReadonlyMap<string, unknown>) => {
          state.clear();
          for (const [id, v] of items) state.set(id, v as { n: number });
        },
      };
      const app = await open({ adapters: [adapter], builtInAdapters: false });
      const store = app.get(PersistenceStore);
      state.set('x', { n: 1 });
      await store.saveAll();
      expect(await visible(dir)).toEqual(['counters']);
      state.set('x', { n: 99 });
      await store.loadAll();
      expect(state.get('x')).toEqual({ n: 1 });
    });

    it('fails init with a clear error for duplicate or unsafe adapter names', async () => {
      const adapter = (name: string) => ({
        name,
        snapshot: () => new Map(),
        restore: () => undefined,
      });
      await expect(open({ adapters: [adapter('sessions')] })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringContaining('Two persistence adapters are named "sessions"'),
      });
      await expect(open({ adapters: [adapter('../etc')] })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringContaining('folder name'),
      });
      await expect(open({ adapters: [{ name: 'x' } as never] })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringContaining('snapshot() and restore()'),
      });
    });

    it('fails init with a clear error when an adapter class cannot be created', async () => {
      await expect(open({ adapters: [CartAdapter] })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringContaining('Register it as a provider'),
      });
    });

    it('a failing snapshot() keeps that adapter as saved, reports it, and commits the other adapters', async () => {
      let fail = false;
      const adapter = {
        name: 'flaky',
        snapshot: () => {
          if (fail) throw new Error('boom');
          return new Map([['a', { v: 1 }]]);
        },
        restore: () => undefined,
      };
      const app = await open({ adapters: [adapter] });
      const store = app.get(PersistenceStore);
      seedState(app);
      await store.saveAll();
      await store.checkpoint();
      const before = await readFile(join(dir, 'flaky', 'a.json'));
      const errors: PersistenceErrorEvent[] = [];
      store.onError((e) => errors.push(e));
      fail = true;
      app.get(SessionManager).delete('sess-1');
      await expect(store.saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ operation: 'save', adapter: 'flaky' });
      expect(errors[0].error.code).toBe(PersistenceErrorCode.AdapterFailed);
      await store.checkpoint();
      // Nothing of "flaky" was removed or changed: its snapshot failed, its saved state stands.
      expect(await readFile(join(dir, 'flaky', 'a.json'))).toEqual(before);
      // The other adapters' changes were committed.
      expect(await readdir(join(dir, 'sessions'))).not.toContain('sess-1.json');
    });
  });

  describe('items that cannot be saved', () => {
    it('skips an unserializable item, keeps its previous file, writes the rest, and rejects', async () => {
      // The built-in managers refuse a BigInt at the call, so a custom adapter supplies one.
      const app = await open({ adapters: [CartAdapter] }, { imports: [CartModule] });
      const store = app.get(PersistenceStore);
      const carts = app.get(CartService);
      carts.set('good', { items: [], total: 0 });
      carts.set('bad', { items: ['n'], total: 1 });
      await store.saveAll();
      await store.checkpoint();
      const previous = await readFile(join(dir, 'carts', 'bad.json'), 'utf8');
      carts.set('bad', { items: [], total: 10n as never });
      carts.set('good', { items: ['x'], total: 2 });
      const errors: PersistenceErrorEvent[] = [];
      store.onError((e) => errors.push(e));
      await expect(store.saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ adapter: 'carts', itemId: 'bad', operation: 'save' });
      expect(errors[0].error.code).toBe(PersistenceErrorCode.SerializeFailed);
      await store.checkpoint();
      expect(await readFile(join(dir, 'carts', 'bad.json'), 'utf8')).toBe(previous);
      const good = JSON.parse(await readFile(join(dir, 'carts', 'good.json'), 'utf8'));
      expect(good.data.total).toBe(2);
      expect(store.getLastSaveTime()).not.toBeNull();
    });
  });

  describe('misuse', () => {
    it('refuses to save after the application has closed', async () => {
      const app = await open();
      const store = app.get(PersistenceStore);
      await app.close();
      apps.length = 0;
      // Refusals are rejections, so a caller's .catch() sees them.
      for (const call of [
        () => store.saveAll(),
        () => store.loadAll(),
        () => store.clear(),
        () => store.checkpoint(),
        () => store.backup(join(dir, '..', 'b')),
        () => store.restore(join(dir, '..', 'b')),
      ]) {
        let result: Promise<unknown> | undefined;
        expect(() => (result = call())).not.toThrow();
        await expect(result).rejects.toMatchObject({ code: PersistenceErrorCode.StoreClosed });
      }
      expect(() => store.setSerializer('json-compact')).toThrow(
        expect.objectContaining({ code: PersistenceErrorCode.StoreClosed }),
      );
    });
  });
});
