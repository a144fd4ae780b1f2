import { INestApplication, Module } from '@nestjs/common';
import {
  PersistedState,
  PersistenceStore,
  SaveMetadata,
  TrackedStateAdapter,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * TrackedStateAdapter: a custom adapter built on it saves what changed (not what exists) and, with
 * autoSave.debounce, soon after a change: what the built-in managers do, without the bookkeeping.
 */

@PersistedState('counters')
class CounterState extends TrackedStateAdapter<number> {
  increment(id: string): number {
    const next = (this.get(id) ?? 0) + 1;
    this.set(id, next);
    return next;
  }

  remove(id: string): boolean {
    return this.delete(id);
  }

  value(id: string): number | undefined {
    return this.get(id);
  }
}

@Module({ providers: [CounterState], exports: [CounterState] })
class CounterModule {}

describe('TrackedStateAdapter', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  const open = async (debounce: number | false = false) => {
    const app = await createApp(
      { path: dir, builtInAdapters: false, autoSave: { interval: 3_600_000, debounce } },
      { imports: [CounterModule] },
    );
    apps.push(app);
    return app;
  };

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    jest.useRealTimers();
    await removeDir(dir);
  });

  it('saves only the items changed since the last save, and they come back from a restart', async () => {
    const app = await open();
    const counters = app.get(CounterState);
    for (let i = 0; i < 20; i++) counters.increment(`c${i}`);
    const saves: SaveMetadata[] = [];
    app.get(PersistenceStore).onSave((meta) => saves.push(meta));
    await app.get(PersistenceStore).saveAll();
    const snapshot = jest.spyOn(counters, 'snapshot');
    counters.increment('c3');
    counters.remove('c7');
    await app.get(PersistenceStore).saveAll();
    await app.get(PersistenceStore).saveAll();
    expect(saves.map((s) => [s.changed, s.deleted])).toEqual([
      [20, 0],
      [1, 0 + 1],
      [0, 0],
    ]);
    expect(snapshot).not.toHaveBeenCalled(); // in step: the saves looked at the reported changes only
    await app.close();
    apps.splice(0);

    const again = (await open()).get(CounterState);
    expect(again.value('c3')).toBe(2);
    expect(again.value('c7')).toBeUndefined();
    expect(again.value('c19')).toBe(1);
    expect(again.name).toBe('counters');
  });

  it('with autoSave.debounce, a change is saved that long after it (fake timers)', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    const app = await open(1_000);
    const saves: SaveMetadata[] = [];
    const saved = new Promise<void>((resolve) =>
      app.get(PersistenceStore).onSave((meta) => {
        saves.push(meta);
        resolve();
      }),
    );
    app.get(CounterState).increment('a');
    await jest.advanceTimersByTimeAsync(999);
    expect(saves).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    await saved; // the debounced save (the interval is an hour away)
    expect(saves.map((s) => s.changed)).toEqual([1]);
  });
});
