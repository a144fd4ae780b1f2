import { INestApplication } from '@nestjs/common';
import {
  PersistenceError,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceStore,
} from 'nestjs-persistence';
import type {
  CommitResult,
  DriverChange,
  LoadResult,
  StorageDriver,
  StoredRecord,
} from '../lib/interfaces/storage-driver.interface';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The store's boot policy on a storage driver that does not answer, with fake timers: the
 * application starts, the error is reported, opening is retried after 0.5 s, 1 s, 2 s … and the
 * stored state is loaded once it answers; the retry timer is cleared at shutdown. The driver is an
 * in-memory one of the test's own (the contract, not Redis).
 */

class MemoryDriver implements StorageDriver {
  readonly driverVersion = 1 as const;
  readonly location = 'memory://test';
  opens = 0;
  private revision = 0;
  readonly items = new Map<string, StoredRecord>();

  constructor(private failures: number) {}

  open(): Promise<void> {
    this.opens++;
    if (this.failures-- > 0) {
      return Promise.reject(
        new PersistenceError(PersistenceErrorCode.StorageUnavailable, 'memory://test is down'),
      );
    }
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  loadAll(collections: readonly string[]): Promise<LoadResult> {
    const records = [...this.items.values()].filter((r) => collections.includes(r.collection));
    return Promise.resolve({ records, problems: [] });
  }
  read(collection: string, ids: readonly string[]): Promise<LoadResult> {
    const records = ids.flatMap((id) => this.items.get(`${collection}/${id}`) ?? []);
    return Promise.resolve({ records, problems: [] });
  }
  commit(changes: readonly DriverChange[]): Promise<CommitResult> {
    const revision = ++this.revision;
    for (const { collection, id, data } of changes) {
      if (data) this.items.set(`${collection}/${id}`, { collection, id, data, revision });
      else this.items.delete(`${collection}/${id}`);
    }
    const applied = changes.map((c) => ({ ...c, revision, deleted: c.data === null }));
    return Promise.resolve({ revision, applied, conflicts: [], blocked: [] });
  }
  watch(): () => void {
    return () => undefined;
  }
  acquireLease(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
}

const cart = (id: string, total: number): StoredRecord => ({
  collection: 'carts',
  id,
  data: Buffer.from(JSON.stringify({ id, v: 1, data: { items: ['x'], total } })),
  revision: 1,
});

describe('boot on a storage driver that does not answer (fake timers)', () => {
  let dir: string;
  const apps: INestApplication[] = [];

  beforeEach(async () => {
    dir = await makeTempDir();
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    jest.useRealTimers();
    await removeDir(dir);
  });

  async function open(
    driver: MemoryDriver,
    logger?: RecordingLogger,
  ): Promise<{ app: INestApplication; errors: string[] }> {
    const app = await createApp(
      { path: dir, storage: driver, builtInAdapters: false, adapters: [CartAdapter], logger },
      { imports: [CartModule] },
    );
    apps.push(app);
    const errors: string[] = [];
    const last = app.get(PersistenceStore).getLastError();
    if (last) errors.push(last.code);
    app
      .get(PersistenceStore)
      .onError((event: PersistenceErrorEvent) => errors.push(event.error.code));
    return { app, errors };
  }

  it('starts, retries with a doubling delay, and loads once the storage answers', async () => {
    const driver = new MemoryDriver(2);
    driver.items.set('carts/c1', cart('c1', 1));
    const { app, errors } = await open(driver);
    const store = app.get(PersistenceStore);
    expect(errors).toEqual([PersistenceErrorCode.StorageUnavailable]);
    expect(app.get(CartService).get('c1')).toBeUndefined();
    expect((await store.getStatus()).writable).toBe(false);
    app.get(CartService).set('mine', { items: ['local'], total: 2 });

    await jest.advanceTimersByTimeAsync(499);
    expect(driver.opens).toBe(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(driver.opens).toBe(2); // failed again: next in 1 s
    expect(errors).toHaveLength(2);
    await jest.advanceTimersByTimeAsync(999);
    expect(driver.opens).toBe(2);
    await jest.advanceTimersByTimeAsync(1);
    expect(driver.opens).toBe(3);
    await store.saveAll(); // queued after the load
    // The stored item loaded, the one made meanwhile kept and now saved.
    expect(app.get(CartService).get('c1')).toEqual({ items: ['x'], total: 1 });
    expect(app.get(CartService).get('mine')).toEqual({ items: ['local'], total: 2 });
    expect(driver.items.has('carts/mine')).toBe(true);
    expect((await store.getStatus()).writable).toBe(true);
  });

  it('a clear() before the storage answered is refused: the late load would bring the items back', async () => {
    const driver = new MemoryDriver(1);
    driver.items.set('carts/c1', cart('c1', 1));
    const { app } = await open(driver);
    const store = app.get(PersistenceStore);
    await expect(store.clear()).rejects.toMatchObject({
      code: PersistenceErrorCode.StorageUnavailable,
    });
    await jest.advanceTimersByTimeAsync(500);
    await store.clear(); // queued after the load: now it removes what was loaded
    expect(app.get(CartService).get('c1')).toEqual({ items: ['x'], total: 1 }); // memory is kept
    expect(driver.items.has('carts/c1')).toBe(false);
  });

  it('an outage is logged once (not once per attempt), each attempt still reaches onError(), and the recovery is one line', async () => {
    const driver = new MemoryDriver(5);
    const logger = new RecordingLogger(); // the logger option: every line of the library
    const { app, errors } = await open(driver, logger);
    for (const delay of [500, 1000, 2000, 4000, 8000]) await jest.advanceTimersByTimeAsync(delay);
    expect(driver.opens).toBe(6);
    expect(errors).toEqual(Array(5).fill(PersistenceErrorCode.StorageUnavailable));
    expect(logger.lines).toEqual([
      'error memory://test is down',
      expect.stringMatching(
        /^warn The storage memory:\/\/test did not answer; trying again in 500 ms/,
      ),
      'log The storage memory://test answered again after 5 failed attempt(s).',
    ]);
    expect((await app.get(PersistenceStore).getStatus()).writable).toBe(true);
  });

  it('stops retrying at shutdown', async () => {
    const driver = new MemoryDriver(Number.POSITIVE_INFINITY);
    const { app } = await open(driver);
    await jest.advanceTimersByTimeAsync(500);
    expect(driver.opens).toBe(2);
    apps.splice(apps.indexOf(app), 1);
    await app.close();
    await jest.advanceTimersByTimeAsync(60_000);
    expect(driver.opens).toBe(2);
    expect(jest.getTimerCount()).toBe(0);
  });
});
