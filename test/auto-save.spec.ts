import { INestApplication } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import {
  PERSISTENCE_AUTO_SAVE_INTERVAL,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceStore,
  SaveMetadata,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/** An adapter whose snapshot() can be made to fail or to hang, counting its calls. */
class ControlledAdapter {
  readonly name = 'controlled';
  calls = 0;
  failing = false;
  gate: Promise<void> | undefined;

  async snapshot(): Promise<ReadonlyMap<string, unknown>> {
    this.calls++;
    if (this.gate) await this.gate;
    if (this.failing) throw new Error('disk on fire');
    return new Map([['item', { calls: this.calls }]]);
  }

  restore(): void {}
}

const INTERVAL = 60_000;

describe('auto-save', () => {
  let dir: string;
  let app: INestApplication | undefined;
  let adapter: ControlledAdapter;
  let store: PersistenceStore;
  let saves: SaveMetadata[];
  let errors: PersistenceErrorEvent[];

  /** Lets queued promise callbacks run (the store starts a save one microtask after the tick). */
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  let openGate: (() => void) | undefined;

  beforeEach(async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    dir = await makeTempDir();
    adapter = new ControlledAdapter();
    app = await createApp({ path: dir, autoSave: { interval: INTERVAL }, adapters: [adapter] });
    store = app.get(PersistenceStore);
    saves = [];
    errors = [];
    store.onSave((m) => saves.push(m));
    store.onError((e) => errors.push(e));
  });
  afterEach(async () => {
    openGate?.();
    await app?.close();
    app = undefined;
    jest.useRealTimers();
    await removeDir(dir);
  });

  it('registers one interval under its documented name in SchedulerRegistry', () => {
    const registry = app!.get(SchedulerRegistry);
    expect(registry.getIntervals()).toEqual([PERSISTENCE_AUTO_SAVE_INTERVAL]);
    expect(store.isAutoSaveEnabled()).toBe(true);
  });

  it('saves once per interval, not before', async () => {
    app!.get(SessionManager).create({ id: 's1' });
    jest.advanceTimersByTime(INTERVAL - 1);
    await settle();
    expect(adapter.calls).toBe(0);
    jest.advanceTimersByTime(1);
    await settle();
    expect(adapter.calls).toBe(1);
    await store.saveAll();
    expect(saves[0].adapters).toMatchObject({ sessions: 1, controlled: 1 });
  });

  it('skips a tick that comes while a save is still running', async () => {
    adapter.gate = new Promise<void>((resolve) => (openGate = resolve));
    jest.advanceTimersByTime(INTERVAL); // starts a save that hangs in snapshot()
    await settle();
    expect(adapter.calls).toBe(1);
    for (let i = 0; i < 3; i++) {
      jest.advanceTimersByTime(INTERVAL); // a tick while it runs
      await settle();
    }
    expect(adapter.calls).toBe(1);
    adapter.gate = undefined;
    openGate?.();
    await store.saveAll(); // one more, after the hanging one
    expect(adapter.calls).toBe(2);
    expect(saves).toHaveLength(2);
  });

  it('a failed auto-save emits persistence.error and the loop goes on', async () => {
    adapter.failing = true;
    jest.advanceTimersByTime(INTERVAL);
    await settle();
    await store.saveAll().catch(() => undefined);
    expect(errors[0]).toMatchObject({ operation: 'auto-save', adapter: 'controlled' });
    expect(errors[0].error.code).toBe(PersistenceErrorCode.AdapterFailed);
    adapter.failing = false;
    saves.length = 0;
    jest.advanceTimersByTime(INTERVAL);
    await store.saveAll();
    expect(saves.length).toBe(2);
    expect(store.isAutoSaveEnabled()).toBe(true);
  });

  it('backs off after repeated failures (skipping 0, 1, 3, 7 ticks), one error per failure', async () => {
    adapter.failing = true;
    const callsAtTick: number[] = [];
    for (let i = 1; i <= 16; i++) {
      jest.advanceTimersByTime(INTERVAL);
      await settle();
      await settle();
      callsAtTick.push(adapter.calls);
    }
    // Attempts at ticks 1, 2, 4, 8, 16.
    expect(callsAtTick).toEqual([1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5]);
    expect(errors.filter((e) => e.operation === 'auto-save')).toHaveLength(5);
    adapter.failing = false;
    for (let i = 0; i < 8; i++) {
      jest.advanceTimersByTime(INTERVAL); // maxBackoffTicks (8) skipped ticks
      await settle();
    }
    expect(adapter.calls).toBe(5);
    jest.advanceTimersByTime(INTERVAL);
    await settle();
    await store.saveAll();
    expect(adapter.calls).toBe(7); // one auto-save after the back-off, plus the explicit save
  });

  it('can be disabled and enabled at runtime with a new interval', async () => {
    store.disableAutoSave();
    expect(store.isAutoSaveEnabled()).toBe(false);
    expect(app!.get(SchedulerRegistry).getIntervals()).toEqual([]);
    jest.advanceTimersByTime(INTERVAL * 5);
    await settle();
    expect(adapter.calls).toBe(0);
    store.enableAutoSave(1_000);
    expect(store.isAutoSaveEnabled()).toBe(true);
    jest.advanceTimersByTime(1_000);
    await settle();
    expect(adapter.calls).toBe(1);
    store.disableAutoSave();
    store.disableAutoSave(); // twice is harmless
    expect(() => store.enableAutoSave(0)).toThrow(
      expect.objectContaining({ code: PersistenceErrorCode.InvalidOptions }),
    );
  });

  it('stops with the application: no tick after close, and the registry shutdown does not clash', async () => {
    const closing = app!.close();
    app = undefined;
    await expect(closing).resolves.toBeUndefined();
    const calls = adapter.calls; // the shutdown save
    expect(calls).toBe(1);
    jest.advanceTimersByTime(INTERVAL * 3);
    await settle();
    expect(adapter.calls).toBe(calls);
  });
});
