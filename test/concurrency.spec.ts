import { INestApplication } from '@nestjs/common';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PersistenceStore, SessionManager } from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { OperationRecorder, RecordingFileSystem } from './fixtures/operation-recorder';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/** An adapter whose snapshot() waits for a gate, so a save can be held open on purpose. */
class GatedAdapter {
  readonly name = 'gated';
  snapshots = 0;
  restores = 0;
  private release: (() => void) | undefined;
  private gate: Promise<void> | undefined;

  hold(): void {
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  open(): void {
    this.gate = undefined;
    this.release?.();
  }

  async snapshot(): Promise<ReadonlyMap<string, unknown>> {
    this.snapshots++;
    await this.gate;
    return new Map();
  }

  restore(): void {
    this.restores++;
  }
}

/** An adapter whose one item changes at every snapshot; it records its snapshot() and restore(). */
class CountingAdapter {
  readonly name = 'counting';
  private value = 0;
  /** The value each restore() received. */
  readonly restored: number[] = [];

  constructor(private readonly recorder: OperationRecorder) {}

  snapshots = 0;
  /** Called at the start of each snapshot(), while its save runs. */
  onSnapshot: () => void = () => undefined;

  async snapshot(): Promise<ReadonlyMap<string, unknown>> {
    this.recorder.mark('snapshot');
    this.snapshots++;
    this.onSnapshot();
    await new Promise((resolve) => setImmediate(resolve)); // let other work in, if it could run
    return new Map([['n', { value: ++this.value }]]);
  }

  restore(items: ReadonlyMap<string, unknown>): void {
    this.recorder.mark('restore');
    this.restored.push((items.get('n') as { value: number } | undefined)?.value ?? 0);
  }
}

const until = async (condition: () => boolean): Promise<void> => {
  for (let i = 0; i < 1000 && !condition(); i++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(condition()).toBe(true);
};

describe('concurrency', () => {
  let dir: string;
  let app: INestApplication;
  let store: PersistenceStore;
  let sessions: SessionManager;
  let gated: GatedAdapter;

  beforeEach(async () => {
    dir = await makeTempDir();
    gated = new GatedAdapter();
    app = await createApp({ path: dir, adapters: [gated], saveOnShutdown: false });
    store = app.get(PersistenceStore);
    sessions = app.get(SessionManager);
  });
  afterEach(async () => {
    gated.open();
    await app.close();
    await removeDir(dir);
  });

  it('a saveAll() during a save resolves after a save that includes the state at its call', async () => {
    sessions.create({ id: 's', metadata: { v: 1 } });
    gated.hold();
    const first = store.saveAll();
    await until(() => gated.snapshots === 1);
    sessions.update('s', { metadata: { v: 2 } }); // changed while the first save runs
    const second = store.saveAll();
    gated.open();
    const [a, b] = await Promise.all([first, second]);
    expect(b.timestamp.getTime()).toBeGreaterThanOrEqual(a.timestamp.getTime());
    expect(gated.snapshots).toBe(2);
    await store.checkpoint();
    const file = JSON.parse(await readFile(join(dir, 'sessions', 's.json'), 'utf8'));
    expect(file.data.metadata).toEqual({ v: 2 });
  });

  it('calls that arrive during one save share one extra save', async () => {
    gated.hold();
    const first = store.saveAll();
    await until(() => gated.snapshots === 1);
    const waiting = [store.saveAll(), store.saveAll(), store.saveAll()];
    expect(waiting[1]).toBe(waiting[0]);
    expect(waiting[2]).toBe(waiting[0]);
    gated.open();
    await Promise.all([first, ...waiting]);
    expect(gated.snapshots).toBe(2);
  });

  it('many concurrent saves, loads and checkpoints never interleave and all settle', async () => {
    const recorder = new OperationRecorder();
    const counter = new CountingAdapter(recorder);
    const recorded = await createApp(
      {
        path: join(dir, 'recorded'),
        adapters: [counter],
        saveOnShutdown: false,
        checkpointBytes: Number.MAX_SAFE_INTEGER, // no checkpoint but the ones called here
      },
      { fileSystem: new RecordingFileSystem(recorder) },
    );
    try {
      const recordedStore = recorded.get(PersistenceStore);
      for (let i = 0; i < 20; i++) recorded.get(SessionManager).create({ id: `s${i}` });
      // While each of the first four saves runs (inside its snapshot()), a load, a save and a
      // checkpoint are called: each arrives while another operation is in the middle of its work.
      const calls: Array<Promise<unknown>> = [];
      const call = (label: string, operation: () => Promise<unknown>): void => {
        calls.push(recorder.run(`${label}#${calls.length}`, operation));
      };
      // The calls come from the application, not from inside the adapter (the store refuses calls
      // made from inside an adapter call it is waiting for): snapshot() signals, the test calls.
      let inSnapshot: () => void = () => undefined;
      const nextSnapshot = (): Promise<void> =>
        new Promise<void>((resolve) => (inSnapshot = resolve));
      counter.onSnapshot = () => inSnapshot();
      let signal = nextSnapshot();
      call('save', () => recordedStore.saveAll());
      for (let k = 0; k < 4; k++) {
        await signal;
        signal = nextSnapshot();
        call('load', () => recordedStore.loadAll());
        call('save', () => recordedStore.saveAll());
        call('checkpoint', () => recordedStore.checkpoint());
      }
      for (let settled = 0; settled < calls.length; settled++) await calls[settled];
      expect(calls).toHaveLength(13);

      const spans = recorder.spans();
      // Every operation reached the disk, in call order.
      expect(spans.map((s) => s.op)).toEqual([
        'save#0',
        ...[1, 4, 7, 10].flatMap((i) => [`load#${i}`, `save#${i + 1}`, `checkpoint#${i + 2}`]),
      ]);
      // No operation made a disk call before the previous one had made its last.
      for (let i = 1; i < spans.length; i++) {
        expect({ op: spans[i].op, startsAfterPrevious: spans[i].start > spans[i - 1].end }).toEqual(
          { op: spans[i].op, startsAfterPrevious: true },
        );
      }
      // Each load restored the state of the whole save before it (the boot load found nothing).
      expect(counter.restored).toEqual([0, 1, 2, 3, 4]);
      expect(recorded.get(SessionManager).list()).toHaveLength(20);
    } finally {
      await recorded.close();
    }
  });

  it('loadAll() waits for a running save instead of reading half of it', async () => {
    sessions.create({ id: 'a' });
    gated.hold();
    const save = store.saveAll();
    await until(() => gated.snapshots === 1);
    const load = store.loadAll();
    await new Promise((resolve) => setImmediate(resolve));
    expect(gated.restores).toBe(1); // only the boot load so far
    gated.open();
    await save;
    const meta = await load;
    expect(gated.restores).toBe(2);
    expect(meta.adapters.sessions).toBe(1);
  });
});
