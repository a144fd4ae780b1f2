import { INestApplication } from '@nestjs/common';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PersistenceStore, SessionManager } from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
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

  it('many concurrent saves and loads never interleave and all settle', async () => {
    for (let i = 0; i < 20; i++) sessions.create({ id: `s${i}` });
    const results = await Promise.all([
      ...Array.from({ length: 10 }, () => store.saveAll()),
      store.loadAll(),
      ...Array.from({ length: 10 }, () => store.saveAll()),
    ]);
    expect(results).toHaveLength(21);
    // The load ran after the first save finished, so it restored the 20 saved sessions.
    expect(sessions.list()).toHaveLength(20);
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
