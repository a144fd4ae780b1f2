import { INestApplication } from '@nestjs/common';
import { join } from 'node:path';
import { PersistenceStore } from 'nestjs-persistence';
import { PersistenceFileSystem } from '../lib/storage/file-system.interface';
import { FileSystemStorage } from '../lib/storage/file-system.storage';
import { readLiveSnapshot } from '../lib/storage/live-snapshot';
import { NodeFileSystem } from '../lib/storage/node-file-system';
import { JOURNAL_FILE } from '../lib/storage/on-disk.names';
import { DEFAULT_OPTIONS } from '../lib/store/persistence.options';
import { createApp } from './fixtures/app.factory';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/**
 * A file system whose `pauseAt`-th read of an item file waits until `release()`: the writer then
 * checkpoints between two of the reader's item-file reads, deterministically.
 */
function pausingFs(pauseAt: number) {
  let reads = 0;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let paused!: () => void;
  const whenPaused = new Promise<void>((resolve) => (paused = resolve));
  const inner = new NodeFileSystem();
  const hold = async (path: string): Promise<void> => {
    if (path.includes('/carts/') && ++reads === pauseAt) {
      paused();
      await released;
    }
  };
  const fs = new Proxy(inner, {
    get: (target, property) => {
      if (property === 'readWhole') {
        return async (path: string, max: number) => {
          await hold(path);
          return target.readWhole(path, max);
        };
      }
      if (property === 'open') {
        return async (
          path: string,
          how: 'read' | 'create' | 'append' | 'directory',
          mode?: number,
        ) => {
          if (how === 'read') await hold(path);
          return target.open(path, how, mode);
        };
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function'
        ? (value as (...args: unknown[]) => unknown).bind(target)
        : value;
    },
  }) as PersistenceFileSystem;
  return { fs, whenPaused, release };
}

/*
 * The consistent snapshot a read-only backup takes of a folder another store writes
 * (lib/storage/live-snapshot.ts): a full checkpoint of the writer between two of its item-file
 * reads must never give a mix of the states before and after it.
 */
describe('readLiveSnapshot: a folder checkpointed while it is read', () => {
  let dir: string;
  let app: INestApplication;

  beforeEach(async () => {
    dir = await makeTempDir('persistence-live-snapshot-');
    app = await createApp(
      { path: dir, adapters: [CartAdapter], autoSave: false, builtInAdapters: false },
      { imports: [CartModule] },
    );
  });
  afterEach(async () => {
    await app.close();
    await removeDir(dir);
  });

  const setAll = async (total: number): Promise<void> => {
    for (const id of ['a', 'b', 'c']) app.get(CartService).set(id, { items: [], total });
    await app.get(PersistenceStore).saveAll();
  };

  /** Starts a snapshot, lets the writer run `between` at its 2nd item-file read, returns the totals. */
  const snapshotAround = async (between: () => Promise<void>): Promise<Record<string, number>> => {
    const { fs, whenPaused, release } = pausingFs(2);
    const storage = new FileSystemStorage(fs, {
      root: dir,
      ioConcurrency: 1,
      fileMode: DEFAULT_OPTIONS.fileMode,
      dirMode: DEFAULT_OPTIONS.dirMode,
      maxFileBytes: DEFAULT_OPTIONS.limits.maxFileBytes,
    });
    const reading = readLiveSnapshot(storage, join(dir, JOURNAL_FILE), ['carts'], undefined);
    await whenPaused;
    await between();
    release();
    const entries = await reading;
    return Object.fromEntries(
      entries.map((e) => {
        const envelope = JSON.parse(e.data.toString('utf8')) as {
          id: string;
          data: { total: number };
        };
        return [envelope.id, envelope.data.total];
      }),
    );
  };

  it('an empty journal filled and emptied by a full checkpoint mid-read: the files are read again', async () => {
    await setAll(1);
    await app.get(PersistenceStore).checkpoint(); // the journal is empty
    const totals = await snapshotAround(async () => {
      await setAll(2);
      await app.get(PersistenceStore).checkpoint();
    });
    expect(totals).toEqual({ a: 2, b: 2, c: 2 });
  });

  it('journal records checkpointed away mid-read: the journal no longer continues, it reads again', async () => {
    await setAll(1);
    await app.get(PersistenceStore).checkpoint();
    app.get(CartService).set('a', { items: ['x'], total: 1 });
    await app.get(PersistenceStore).saveAll(); // one record in the journal
    const totals = await snapshotAround(async () => {
      await setAll(2);
      await app.get(PersistenceStore).checkpoint();
    });
    expect(totals).toEqual({ a: 2, b: 2, c: 2 });
  });

  it('saves committed mid-read without a checkpoint: the journal read after the files gives the newest state', async () => {
    await setAll(1);
    await app.get(PersistenceStore).checkpoint();
    const totals = await snapshotAround(() => setAll(3));
    expect(totals).toEqual({ a: 3, b: 3, c: 3 });
  });
});
