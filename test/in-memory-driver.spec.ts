import { PersistenceError, PersistenceErrorCode, PersistenceStore } from 'nestjs-persistence';
import { InMemoryStorage, InMemoryStorageDriver } from 'nestjs-persistence/testing';
import type { DriverWatchEvent } from '../lib/interfaces/storage-driver.interface';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The in-memory driver of nestjs-persistence/testing keeps the contract the Redis driver keeps:
 * atomic commits with compare-and-set, notices to the other replicas only, a resync after an
 * outage, fenced leases, copies rather than shared buffers. The store suite on it is in
 * store-storages.spec.ts; replicas following each other are checked here.
 */

const bytes = (text: string): Buffer => Buffer.from(text);
const LWW = { conflicts: 'last-write-wins' } as const;
const REJECT = { conflicts: 'reject' } as const;

async function opened(storage: InMemoryStorage, replicaId?: string) {
  const driver = new InMemoryStorageDriver({ storage, replicaId });
  await driver.open();
  return driver;
}

describe('InMemoryStorageDriver', () => {
  it('commits all changes with one revision; reads return copies', async () => {
    const storage = new InMemoryStorage();
    const driver = await opened(storage);
    const data = bytes('one');
    const result = await driver.commit(
      [
        { collection: 'c', id: 'a', data, expectedRevision: null },
        { collection: 'c', id: 'b', data: bytes('two'), expectedRevision: 0 },
      ],
      REJECT,
    );
    expect(result.revision).toBe(1);
    expect(result.applied.map((a) => [a.id, a.revision])).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    data.write('XXX'); // the caller's buffer is not the stored one
    const { records } = await driver.loadAll(['c']);
    expect(records.map((r) => [r.id, r.data.toString(), r.revision])).toEqual([
      ['a', 'one', 1],
      ['b', 'two', 1],
    ]);
    records[0].data.write('YYY');
    expect(storage.get('c', 'a')?.toString()).toBe('one');
    expect((await driver.read('c', ['b', 'gone'])).records.map((r) => r.id)).toEqual(['b']);
  });

  it('a stale expected revision is a conflict: reject keeps the remote version, last-write-wins overwrites it', async () => {
    const storage = new InMemoryStorage();
    const a = await opened(storage, 'a');
    const b = await opened(storage, 'b');
    await a.commit([{ collection: 'c', id: 'x', data: bytes('a1'), expectedRevision: 0 }], REJECT);
    await b.commit([{ collection: 'c', id: 'x', data: bytes('b2'), expectedRevision: 1 }], REJECT);

    const rejected = await a.commit(
      [
        { collection: 'c', id: 'x', data: bytes('a3'), expectedRevision: 1 },
        { collection: 'c', id: 'y', data: bytes('new'), expectedRevision: 0 },
      ],
      REJECT,
    );
    expect(rejected.conflicts).toEqual([
      {
        collection: 'c',
        id: 'x',
        expectedRevision: 1,
        local: bytes('a3'),
        remote: { data: bytes('b2'), revision: 2 },
        applied: false,
      },
    ]);
    expect(rejected.applied.map((c) => c.id)).toEqual(['y']);
    expect(storage.get('c', 'x')?.toString()).toBe('b2');

    const forced = await a.commit(
      [{ collection: 'c', id: 'x', data: null, expectedRevision: 1 }],
      LWW,
    );
    expect(forced.conflicts.map((c) => c.applied)).toEqual([true]);
    expect(storage.ids('c')).toEqual(['y']);
  });

  it('its own earlier write is not a conflict; nothing applied means no revision', async () => {
    const storage = new InMemoryStorage();
    const a = await opened(storage, 'a');
    const b = await opened(storage, 'b');
    await a.commit([{ collection: 'c', id: 'x', data: bytes('1'), expectedRevision: 0 }], REJECT);
    // As if the answer of that commit was lost: a still expects the item absent.
    const again = await a.commit(
      [{ collection: 'c', id: 'x', data: bytes('2'), expectedRevision: 0 }],
      REJECT,
    );
    expect(again.conflicts).toEqual([]);
    const none = await b.commit(
      [{ collection: 'c', id: 'x', data: bytes('3'), expectedRevision: 0 }],
      REJECT,
    );
    expect(none.revision).toBeUndefined();
    expect(storage.revision).toBe(2);
  });

  it('refuses malformed changes before applying any', async () => {
    const storage = new InMemoryStorage();
    const driver = await opened(storage);
    const duplicate = driver.commit(
      [
        { collection: 'c', id: 'x', data: bytes('1'), expectedRevision: 0 },
        { collection: 'c', id: 'x', data: bytes('2'), expectedRevision: 0 },
      ],
      REJECT,
    );
    await expect(duplicate).rejects.toMatchObject({ code: PersistenceErrorCode.InvalidInput });
    const badData = driver.commit(
      [{ collection: 'c', id: 'x', data: 'text' as never, expectedRevision: 0 }],
      REJECT,
    );
    await expect(badData).rejects.toMatchObject({ code: PersistenceErrorCode.InvalidOptions });
    expect(storage.revision).toBe(0);
  });

  it('tells the other drivers of a commit, never the committing one, and asks for a resync after an outage', async () => {
    const storage = new InMemoryStorage();
    const a = await opened(storage, 'a');
    const b = await opened(storage, 'b');
    const seen: Record<string, DriverWatchEvent[]> = { a: [], b: [] };
    a.watch((event) => seen.a.push(event));
    b.watch((event) => seen.b.push(event));
    await a.commit([{ collection: 'c', id: 'x', data: bytes('1'), expectedRevision: 0 }], REJECT);
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen.a).toEqual([]);
    expect(seen.b).toEqual([
      {
        kind: 'changes',
        origin: 'a',
        revision: 1,
        changes: [{ collection: 'c', id: 'x', deleted: false }],
      },
    ]);

    storage.stop();
    const down = b.loadAll(['c']);
    await expect(down).rejects.toBeInstanceOf(PersistenceError);
    await expect(down).rejects.toMatchObject({ code: PersistenceErrorCode.StorageUnavailable });
    storage.start();
    expect(seen.a.at(-1)).toEqual({ kind: 'resync' });
    expect(seen.b.at(-1)).toEqual({ kind: 'resync' });

    await b.close();
    await expect(b.loadAll(['c'])).rejects.toMatchObject({
      code: PersistenceErrorCode.StoreClosed,
    });
  });

  it('leases: one holder at a time, a strictly greater token for the next, lost once expired', async () => {
    jest.useFakeTimers();
    try {
      const storage = new InMemoryStorage();
      const a = await opened(storage, 'a');
      const b = await opened(storage, 'b');
      const first = await a.acquireLease('backup', 1000);
      expect(first?.token).toBe(1);
      expect(await b.acquireLease('backup', 1000)).toBeUndefined();
      jest.advanceTimersByTime(900);
      expect(await first?.renew()).toBe(true);
      jest.advanceTimersByTime(900);
      expect(await b.acquireLease('backup', 1000)).toBeUndefined(); // renewed: still held
      jest.advanceTimersByTime(200);
      const second = await b.acquireLease('backup', 1000);
      expect(second?.token).toBe(2);
      expect(await first?.renew()).toBe(false);
      await first?.release(); // not the holder: changes nothing
      expect(await a.acquireLease('backup', 1000)).toBeUndefined();
      await second?.release();
      expect((await a.acquireLease('backup', 1000))?.token).toBe(3);
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('replicas on one InMemoryStorage', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it('follow each other, and an application started again finds the state', async () => {
    const storage = new InMemoryStorage();
    const open = () =>
      createApp(
        {
          path: dir,
          storage: new InMemoryStorageDriver({ storage }),
          builtInAdapters: false,
          adapters: [CartAdapter],
        },
        { imports: [CartModule] },
      );
    const one = await open();
    const two = await open();
    try {
      one.get(CartService).set('c1', { items: ['tea'], total: 3 });
      await one.get(PersistenceStore).saveAll();
      for (let i = 0; i < 50 && two.get(CartService).get('c1') === undefined; i++) {
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(two.get(CartService).get('c1')).toEqual({ items: ['tea'], total: 3 });
    } finally {
      await one.close();
      await two.close();
    }
    const three = await open();
    try {
      expect(three.get(CartService).get('c1')).toEqual({ items: ['tea'], total: 3 });
      expect(storage.ids('carts')).toEqual(['c1']);
    } finally {
      await three.close();
    }
  });

  it('a loadAll() that fails as a whole (storage stopped) keeps the status down, even after a save, until a load succeeds', async () => {
    const storage = new InMemoryStorage();
    const app = await createApp(
      {
        path: dir,
        storage: new InMemoryStorageDriver({ storage }),
        builtInAdapters: false,
        adapters: [CartAdapter],
      },
      { imports: [CartModule] },
    );
    try {
      const store = app.get(PersistenceStore);
      app.get(CartService).set('c1', { items: ['tea'], total: 3 });
      await store.saveAll();
      storage.stop();
      await expect(store.loadAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.StorageUnavailable,
      });
      storage.start();
      await store.saveAll();
      expect((await store.getStatus()).loadFailure).toContain('the in-memory storage is stopped');
      await store.loadAll();
      expect((await store.getStatus()).loadFailure).toBeNull();
    } finally {
      await app.close();
    }
  });
});
