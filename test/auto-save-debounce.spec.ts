import { INestApplication } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { Subject } from 'rxjs';
import {
  PERSISTENCE_AUTO_SAVE_DEBOUNCE,
  PersistenceChange,
  PersistenceErrorCode,
  PersistenceModuleOptions,
  PersistenceStore,
  SaveMetadata,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/** A custom adapter with a change stream, whose snapshot() can be held, counting running calls. */
class StreamingAdapter {
  readonly name = 'streaming';
  readonly changes$ = new Subject<PersistenceChange>();
  items = new Map<string, number>();
  running = 0;
  maxRunning = 0;
  gate: Promise<void> | undefined;

  async snapshot(): Promise<ReadonlyMap<string, number>> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      if (this.gate) await this.gate;
      return new Map(this.items);
    } finally {
      this.running--;
    }
  }

  restore(): void {}

  set(id: string, value: number): void {
    this.items.set(id, value);
    this.changes$.next({ adapter: this.name, id, kind: 'changed' });
  }
}

const DEBOUNCE = 2_000;
const INTERVAL = 3_600_000;

describe('auto-save with debounce: a save soon after a change', () => {
  let dir: string;
  let app: INestApplication | undefined;
  let adapter: StreamingAdapter;
  let store: PersistenceStore;
  let saves: SaveMetadata[];
  let openGate: (() => void) | undefined;

  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const idle = async (): Promise<void> => {
    await settle();
    while ((store as unknown as { queue: { busy: boolean } }).queue.busy) await settle();
  };
  const scheduled = (): boolean =>
    app!.get(SchedulerRegistry).doesExist('timeout', PERSISTENCE_AUTO_SAVE_DEBOUNCE);

  async function start(autoSave: PersistenceModuleOptions['autoSave']): Promise<void> {
    adapter = new StreamingAdapter();
    app = await createApp({ path: dir, autoSave, adapters: [adapter] });
    store = app.get(PersistenceStore);
    saves = [];
    store.onSave((meta) => saves.push(meta));
  }

  beforeEach(async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    dir = await makeTempDir();
  });
  afterEach(async () => {
    openGate?.();
    openGate = undefined;
    await app?.close();
    app = undefined;
    jest.useRealTimers();
    await removeDir(dir);
  });

  it('a burst of changes gives one save, debounce ms after the first change', async () => {
    await start({ interval: INTERVAL, debounce: DEBOUNCE });
    expect(scheduled()).toBe(false);
    const sessions = app!.get(SessionManager);
    sessions.create({ id: 'a' });
    expect(scheduled()).toBe(true); // a named timeout in SchedulerRegistry
    jest.advanceTimersByTime(DEBOUNCE / 2);
    sessions.create({ id: 'b' });
    sessions.update('a', { status: 'paused' });
    adapter.set('x', 1);
    jest.advanceTimersByTime(DEBOUNCE / 2 - 1);
    await idle();
    expect(saves).toHaveLength(0);
    jest.advanceTimersByTime(1);
    await idle();
    expect(saves).toHaveLength(1);
    expect(saves[0]).toMatchObject({ changed: 3 });
    expect(scheduled()).toBe(false);
    // No change: nothing scheduled, no save.
    jest.advanceTimersByTime(10 * DEBOUNCE);
    await idle();
    expect(saves).toHaveLength(1);
  });

  it('a change during a save schedules the next one; saves never overlap', async () => {
    await start({ interval: INTERVAL, debounce: DEBOUNCE });
    adapter.gate = new Promise<void>((resolve) => (openGate = resolve));
    adapter.set('x', 1);
    jest.advanceTimersByTime(DEBOUNCE); // the first save starts and is held in snapshot()
    await settle();
    expect(adapter.running).toBe(1);
    adapter.set('x', 2); // during that save
    expect(scheduled()).toBe(true);
    jest.advanceTimersByTime(DEBOUNCE); // the second save is queued behind the first
    await settle();
    expect(adapter.running).toBe(1);
    openGate!();
    adapter.gate = undefined;
    await idle();
    expect(saves).toHaveLength(2);
    expect(adapter.maxRunning).toBe(1);
    expect(scheduled()).toBe(false);
  });

  it('shares the save with a saveAll() already waiting', async () => {
    await start({ interval: INTERVAL, debounce: DEBOUNCE });
    adapter.gate = new Promise<void>((resolve) => (openGate = resolve));
    const first = store.saveAll(); // runs, held
    await settle();
    const waiting = store.saveAll(); // queued
    adapter.set('x', 1);
    jest.advanceTimersByTime(DEBOUNCE); // the debounced save joins the queued one
    await settle();
    openGate!();
    adapter.gate = undefined;
    await Promise.all([first, waiting]);
    await idle();
    expect(saves).toHaveLength(2);
  });

  it('disableAutoSave() and shutdown remove the scheduled save', async () => {
    await start({ interval: INTERVAL, debounce: DEBOUNCE });
    adapter.set('x', 1);
    expect(scheduled()).toBe(true);
    store.disableAutoSave();
    expect(scheduled()).toBe(false);
    adapter.set('x', 2); // no longer listened to
    expect(scheduled()).toBe(false);
    jest.advanceTimersByTime(DEBOUNCE);
    await idle();
    expect(saves).toHaveLength(0);
    store.enableAutoSave(INTERVAL); // listens again
    adapter.set('x', 3);
    expect(scheduled()).toBe(true);
    const registry = app!.get(SchedulerRegistry);
    await app!.close();
    app = undefined;
    expect(registry.doesExist('timeout', PERSISTENCE_AUTO_SAVE_DEBOUNCE)).toBe(false);
  });

  it('without debounce (today’s forms), a change schedules nothing', async () => {
    await start({ interval: INTERVAL });
    adapter.set('x', 1);
    app!.get(SessionManager).create({ id: 'a' });
    expect(scheduled()).toBe(false);
  });

  it('checks the option: a whole number of milliseconds, or false; interval may be left out', async () => {
    await expect(start({ interval: INTERVAL, debounce: 0 })).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidOptions,
      message: expect.stringContaining('autoSave.debounce'),
    });
    app = undefined;
    await start({ debounce: 500 });
    adapter.set('x', 1);
    jest.advanceTimersByTime(500);
    await idle();
    expect(saves).toHaveLength(1);
  });
});
