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
import { NodeFileSystem, PersistenceFile } from 'nestjs-persistence';
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

/**
 * The real file system, with writes that can be made to fail (EIO): a store-level failure (the
 * journal cannot be written) that auto-save must back off from. A full disk makes the same failure
 * for real in faults.spec.ts; here it has to come on cue under fake timers.
 */
class FlakyDiskFileSystem extends NodeFileSystem {
  failing = false;

  override async open(
    path: string,
    how: 'read' | 'create' | 'append' | 'directory',
    mode?: number,
  ): Promise<PersistenceFile> {
    const file = await super.open(path, how, mode);
    const write = file.write.bind(file);
    file.write = (data: Uint8Array, position: number): Promise<void> => {
      if (this.failing) {
        return Promise.reject(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }));
      }
      return write(data, position);
    };
    return file;
  }
}

describe('auto-save', () => {
  let dir: string;
  let app: INestApplication | undefined;
  let adapter: ControlledAdapter;
  let store: PersistenceStore;
  let saves: SaveMetadata[];
  let errors: PersistenceErrorEvent[];
  let disk: FlakyDiskFileSystem;

  /** Lets queued promise callbacks run (the store starts a save one microtask after the tick). */
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  /** Waits until the store has no operation running or queued (real disk I/O takes a few turns). */
  const idle = async (): Promise<void> => {
    await settle();
    while ((store as unknown as { queue: { busy: boolean } }).queue.busy) await settle();
  };
  let openGate: (() => void) | undefined;

  beforeEach(async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    dir = await makeTempDir();
    adapter = new ControlledAdapter();
    disk = new FlakyDiskFileSystem();
    app = await createApp(
      // Hung snapshots are tested on their own below; here they hang for many intervals.
      {
        path: dir,
        autoSave: { interval: INTERVAL },
        adapters: [adapter],
        adapterTimeout: 100 * INTERVAL,
      },
      { fileSystem: disk },
    );
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

  it('backs off after repeated store failures (skipping 0, 1, 3, 7 ticks), one error per failure', async () => {
    disk.failing = true;
    const callsAtTick: number[] = [];
    for (let i = 1; i <= 16; i++) {
      jest.advanceTimersByTime(INTERVAL);
      await idle();
      callsAtTick.push(adapter.calls);
    }
    // Attempts at ticks 1, 2, 4, 8, 16.
    expect(callsAtTick).toEqual([1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5]);
    const autoSaveErrors = errors.filter((e) => e.operation === 'auto-save');
    expect(autoSaveErrors).toHaveLength(5);
    expect(autoSaveErrors.every((e) => e.error.code === PersistenceErrorCode.IoFailed)).toBe(true);
    disk.failing = false;
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

  it('one item that cannot be saved neither slows auto-save nor repeats its error until it changes', async () => {
    const sessions = app!.get(SessionManager);
    let bad: unknown = { n: BigInt(1) };
    const custom = {
      name: 'custom',
      snapshot: () => new Map([['bad', bad]]),
      restore: () => undefined,
    };
    await app!.close();
    app = await createApp(
      { path: dir, autoSave: { interval: INTERVAL }, adapters: [adapter, custom] },
      { fileSystem: disk },
    );
    store = app.get(PersistenceStore);
    errors = [];
    saves = [];
    adapter.calls = 0;
    store.onError((e) => errors.push(e));
    store.onSave((m) => saves.push(m));
    for (let i = 1; i <= 6; i++) {
      app.get(SessionManager).create({ id: `s${i}` });
      jest.advanceTimersByTime(INTERVAL);
      await idle();
    }
    // A save at every tick (no back-off), each committing the sessions created before it.
    expect(adapter.calls).toBe(6);
    expect(saves.map((m) => m.failed)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(saves.at(-1)?.adapters.sessions).toBe(6);
    const reported = errors.filter((e) => e.adapter === 'custom');
    expect(reported).toHaveLength(1); // once, not once per tick
    expect(reported[0]).toMatchObject({ itemId: 'bad', operation: 'auto-save' });
    expect(reported[0].error.code).toBe(PersistenceErrorCode.SerializeFailed);
    bad = { n: Number.NaN }; // a change to it, still not storable: reported again
    jest.advanceTimersByTime(INTERVAL);
    await idle();
    expect(errors.filter((e) => e.adapter === 'custom')).toHaveLength(2);
    bad = { n: 1 }; // fixed: saved
    await store.saveAll();
    expect(saves.at(-1)?.failed).toBe(0);
    void sessions;
  });

  it('a snapshot() that never settles is abandoned after adapterTimeout; the others are saved', async () => {
    await app!.close();
    app = await createApp(
      { path: dir, autoSave: false, adapters: [adapter], adapterTimeout: 5_000 },
      { fileSystem: disk },
    );
    store = app.get(PersistenceStore);
    errors = [];
    store.onError((e) => errors.push(e));
    app.get(SessionManager).create({ id: 'kept' });
    adapter.gate = new Promise<void>((resolve) => (openGate = resolve)); // never opened in time
    const saving = store.saveAll();
    const outcome = saving.then(
      () => 'resolved',
      (error: { code?: string }) => error.code,
    );
    await settle();
    jest.advanceTimersByTime(4_999);
    await settle();
    expect(errors).toHaveLength(0);
    jest.advanceTimersByTime(1);
    expect(await outcome).toBe(PersistenceErrorCode.SaveIncomplete);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ adapter: 'controlled' });
    expect(errors[0].error.code).toBe(PersistenceErrorCode.AdapterFailed);
    expect(errors[0].error.message).toMatch(/within 5000 ms/);
    // The sessions were committed: a fresh application on the folder has them.
    openGate?.();
    adapter.gate = undefined;
    await app.close();
    app = await createApp({ path: dir, autoSave: false, adapters: [] });
    expect(app.get(SessionManager).get('kept')).toBeDefined();
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
