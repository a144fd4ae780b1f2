import { INestApplication } from '@nestjs/common';
import {
  FocusManager,
  MemoryManager,
  PersistenceAdapter,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { GatedFileSystem } from './fixtures/gated-fs';
import { atomicWrite } from '../lib/storage/atomic-write';
import { SimulatedFileSystem } from './fixtures/simulated-fs';
import { dumpState, saveToFiles } from './fixtures/state';
import { prng } from './fixtures/prng';

/*
 * The crash-point harness (docs/on-disk-format.md, "Crash guarantees"). Every file-system call of an
 * operation is recorded on a simulated disk; for each call k = 1..N the disk is crashed right after
 * it, in two models:
 *   - "synced": only what was fsynced survives;
 *   - "any": what was fsynced, plus any subset of the other operations in any order, writes possibly
 *     torn (several seeded draws per crash point, plus "all of them");
 *   - "stale": "synced", and one seeded draw of "any", with every file as long as it ever was, the
 *     bytes past its end holding what a truncate cut off there (a file system that drops unsynced
 *     data can expose old blocks after a crash). The journal's earlier generations come back there.
 * A new application then opens the crashed disk; what it loads must be exactly the state before the
 * operation or exactly the state after it, for every adapter together.
 */

const PATH = '/srv/store';
const DRAWS = 3;

/** A user adapter kept in a plain Map, persisted beside the built-in ones. */
function cartAdapter(): PersistenceAdapter<{ items: string[] }> & {
  carts: Map<string, { items: string[] }>;
} {
  const carts = new Map<string, { items: string[] }>();
  return {
    name: 'carts',
    carts,
    snapshot: () => new Map([...carts].map(([id, c]) => [id, { items: [...c.items] }])),
    restore: (items) => {
      carts.clear();
      for (const [id, cart] of items) carts.set(id, cart);
    },
  };
}

async function open(
  fs: SimulatedFileSystem,
  extra: PersistenceModuleOptions = {},
): Promise<{ app: INestApplication; carts: Map<string, { items: string[] }> }> {
  const adapter = cartAdapter();
  const app = await createApp(
    {
      path: PATH,
      adapters: [adapter],
      saveOnShutdown: false,
      checkpointBytes: Number.MAX_SAFE_INTEGER,
      ...extra,
    },
    { fileSystem: fs },
  );
  return { app, carts: adapter.carts };
}

const fingerprint = (app: INestApplication, carts: Map<string, { items: string[] }>): string =>
  JSON.stringify({
    ...(dumpState(app) as object),
    carts: [...carts].sort(([a], [b]) => a.localeCompare(b)),
  });

/** State A: a few items in every adapter. */
function seed(app: INestApplication, carts: Map<string, { items: string[] }>): void {
  const sessions = app.get(SessionManager);
  const memory = app.get(MemoryManager);
  const focus = app.get(FocusManager);
  for (let i = 0; i < 3; i++) {
    sessions.create({ id: `s${i}`, metadata: { i } });
    memory.create({ id: `c${i}` });
    memory.addMessage(`c${i}`, { role: 'user', content: `hello ${i}` });
    focus.create({ id: `f${i}` });
    focus.pushFocus(`f${i}`, { type: 'file', target: `file-${i}.ts` });
    carts.set(`cart${i}`, { items: [`item-${i}`] });
  }
}

/** A → B: adds, changes and deletes items in all four adapters. */
function mutate(app: INestApplication, carts: Map<string, { items: string[] }>): void {
  const sessions = app.get(SessionManager);
  const memory = app.get(MemoryManager);
  const focus = app.get(FocusManager);
  sessions.create({ id: 's-new' });
  sessions.update('s0', { status: 'completed' });
  sessions.delete('s1');
  memory.create({ id: 'c-new' });
  memory.addMessage('c0', { role: 'assistant', content: 'a reply' });
  memory.delete('c1');
  focus.create({ id: 'f-new' });
  focus.pushFocus('f0', { type: 'symbol', target: 'main' });
  focus.delete('f1');
  carts.set('cart-new', { items: ['x'] });
  carts.set('cart0', { items: ['item-0', 'more'] });
  carts.delete('cart1');
}

interface Tally {
  points: number;
  synced: number;
  any: number;
  stale: number;
  passed: number;
}

/** Crashes the recorded disk after every call in both models and checks what a new app loads. */
async function checkEveryCrashPoint(
  fs: SimulatedFileSystem,
  allowed: Map<string, string>,
  extraCheck?: (
    crashed: SimulatedFileSystem,
    app: INestApplication,
    carts: Map<string, { items: string[] }>,
  ) => Promise<void>,
  options: PersistenceModuleOptions = {},
  draws = DRAWS,
): Promise<Tally> {
  const tally: Tally = { points: fs.recordedCalls.length, synced: 0, any: 0, stale: 0, passed: 0 };
  const random = prng(7);
  for (let k = 1; k <= tally.points; k++) {
    const images = [
      { model: 'synced' as const, image: fs.crashAfter(k, 'synced') },
      { model: 'any' as const, image: fs.crashAfter(k, 'any') },
      { model: 'stale' as const, image: fs.crashAfter(k, 'synced', undefined, true) },
      ...(draws > 0
        ? [{ model: 'stale' as const, image: fs.crashAfter(k, 'any', random, true) }]
        : []),
      // One draw fewer of plain "any" than asked, at least one when asked: the "stale" draw replaces it.
      ...Array.from({ length: draws > 0 ? Math.max(1, draws - 2) : 0 }, () => ({
        model: 'any' as const,
        image: fs.crashAfter(k, 'any', random),
      })),
    ];
    for (const { model, image } of images) {
      const crashed = new SimulatedFileSystem(image.state);
      const before = crashed.listLive('/srv');
      const { app, carts } = await open(crashed, options);
      const loaded = fingerprint(app, carts);
      const which = allowed.get(loaded);
      if (!which) {
        throw new Error(
          `crash after call ${k} (${fs.recordedCalls[k - 1]}), model ${model}: loaded a state that is neither before nor after\n${loaded}\ndisk:\n${before.join('\n')}`,
        );
      }
      await extraCheck?.(crashed, app, carts);
      await app.close();
      tally[model]++;
      tally.passed++;
    }
  }
  return tally;
}

describe('crash points (simulated disk, every call, two models)', () => {
  const report: Record<string, Tally> = {};
  afterAll(() => {
    const lines = Object.entries(report).map(
      ([name, t]) =>
        `${name}: ${t.points} crash points, ${t.synced} "synced" + ${t.any} "any" + ${t.stale} "stale" images, ${t.passed} passed`,
    );
    console.log(`crash-point harness\n${lines.join('\n')}`);
  });

  /**
   * A store on a fresh simulated disk holding state A, saved and checkpointed; returns fingerprints.
   * A is reached in several saves, so the emptied journal's blocks hold several earlier records.
   */
  async function storeWithA(): Promise<{ fs: SimulatedFileSystem; a: string }> {
    const fs = new SimulatedFileSystem();
    const { app, carts } = await open(fs);
    seed(app, carts);
    const store = app.get(PersistenceStore);
    const sessions = app.get(SessionManager);
    const final = { ...carts.get('cart0')! };
    for (const step of ['draft-1', 'draft-2']) {
      // Earlier values of items A holds: replaying one of these saves over a later state changes it.
      carts.set('cart0', { items: [step] });
      sessions.update('s2', { metadata: { step } });
      await store.saveAll();
    }
    carts.set('cart0', final);
    sessions.update('s2', { metadata: { i: 2 } });
    await store.saveAll();
    await store.checkpoint();
    const a = fingerprint(app, carts);
    await app.close();
    return { fs: new SimulatedFileSystem(fs.snapshot()), a };
  }

  it('saveAll() then its checkpoint: adds, changes and deletes in all four adapters', async () => {
    const { fs, a } = await storeWithA();
    const { app, carts } = await open(fs);
    expect(fingerprint(app, carts)).toBe(a);
    mutate(app, carts);
    const b = fingerprint(app, carts);
    fs.record();
    const meta = await app.get(PersistenceStore).saveAll();
    expect(meta.changed).toBeGreaterThan(0);
    expect(meta.deleted).toBe(4);
    await app.get(PersistenceStore).checkpoint();
    fs.stopRecording();
    await app.close();
    report.save = await checkEveryCrashPoint(
      fs,
      new Map([
        [a, 'A'],
        [b, 'B'],
      ]),
    );
    expect(report.save.points).toBeGreaterThan(50);
  }, 120_000);

  it('a save that seals the journal, then a save committed while the sealed segment is checkpointed', async () => {
    const { fs, a } = await storeWithA();
    // checkpointBytes: 1 — every save seals its journal; the second one is sealed too while the
    // first segment may still be in its background checkpoint (two sealed segments at once).
    // The background checkpoint writes one item file, then is held until the second save commits.
    const gated = new GatedFileSystem(fs, (path) => /^\/srv\/store\/\w+\//.test(path), 1);
    const { app, carts } = await open(gated.fs as SimulatedFileSystem, { checkpointBytes: 1 });
    const store = app.get(PersistenceStore);
    mutate(app, carts);
    const b1 = fingerprint(app, carts);
    fs.record();
    await store.saveAll(); // commits into .journal, renames it to .journal.1, checkpoints it in the background
    app.get(SessionManager).update('s2', { status: 'paused' });
    carts.set('cart2', { items: ['item-2', 'b2'] });
    const b2 = fingerprint(app, carts);
    await store.saveAll(); // commits into the new .journal without waiting for that checkpoint
    expect(gated.held).toBeGreaterThan(0); // the checkpoint of .journal.1 is still running
    gated.release();
    await store.checkpoint();
    fs.stopRecording();
    await app.close();
    const calls = fs.recordedCalls;
    const sealed = calls.findIndex((call) => call.startsWith('rename(/srv/store/.journal,'));
    const firstItemWrite = calls.findIndex(
      (call, i) => i > sealed && /^rename\(\/srv\/store\/\w+\/\./.test(call),
    );
    const segmentRemoved = calls.findIndex((call) =>
      call.startsWith('unlink(/srv/store/.journal.1'),
    );
    const secondCommit = calls.findIndex(
      // A small record: one O_DSYNC write is its commit.
      (call, i) => i > sealed && call === 'O_DSYNC write done(/srv/store/.journal)',
    );
    expect(sealed).toBeGreaterThan(0);
    // The second save committed after the background checkpoint had started, before it ended.
    expect(firstItemWrite).toBeGreaterThan(sealed);
    expect(secondCommit).toBeGreaterThan(firstItemWrite);
    expect(secondCommit).toBeLessThan(segmentRemoved);
    report.rotation = await checkEveryCrashPoint(
      fs,
      new Map([
        [a, 'A'],
        [b1, 'B1'],
        [b2, 'B2'],
      ]),
      async (crashed) => {
        // Recovery replayed every sealed segment and removed it.
        const left = (await crashed.readdir(PATH)).filter((e) => /^\.journal\.\d+$/.test(e.name));
        expect(left).toEqual([]);
      },
      {},
      1,
    );
  }, 120_000);

  it('first start on an empty disk, first save, first checkpoint', async () => {
    const fs = new SimulatedFileSystem();
    await fs.mkdir('/srv', 0o755);
    fs.record();
    const { app, carts } = await open(fs);
    const empty = fingerprint(app, carts);
    seed(app, carts);
    const b = fingerprint(app, carts);
    await app.get(PersistenceStore).saveAll();
    await app.get(PersistenceStore).checkpoint();
    fs.stopRecording();
    await app.close();
    report.firstSave = await checkEveryCrashPoint(
      fs,
      new Map([
        [empty, 'empty'],
        [b, 'B'],
      ]),
    );
  }, 120_000);

  it('backup(): the store keeps its state and the backup is absent or complete', async () => {
    const { fs, a } = await storeWithA();
    const { app } = await open(fs);
    fs.record();
    await app.get(PersistenceStore).backup('/srv/backup');
    fs.stopRecording();
    await app.close();
    let complete = 0;
    report.backup = await checkEveryCrashPoint(
      fs,
      new Map([[a, 'A']]),
      async (crashed, crashedApp, crashedCarts) => {
        const entries = await crashed.readdir('/srv');
        if (!entries.some((e) => e.name === 'backup')) return;
        const restored = await crashedApp.get(PersistenceStore).restore('/srv/backup');
        expect(restored.load.skipped).toBe(0);
        expect(fingerprint(crashedApp, crashedCarts)).toBe(a); // the backup holds exactly A
        complete++;
      },
    );
    expect(complete).toBeGreaterThan(0);
  }, 120_000);

  it('backup() into backups.directory, differential, then retention: a complete backup always remains', async () => {
    // A small state: this case records ~100 calls and restores every listed backup at each of them.
    const backups = { backups: { directory: '/srv/backups', keep: 1 } };
    const fs = new SimulatedFileSystem();
    const { app, carts } = await open(fs, backups);
    const store = app.get(PersistenceStore);
    app.get(SessionManager).create({ id: 's0' });
    app.get(SessionManager).create({ id: 's1' });
    carts.set('cart0', { items: ['x'] });
    await saveToFiles(app);
    const a = fingerprint(app, carts);
    const first = await store.backup(); // of A, full
    app.get(SessionManager).update('s0', { status: 'completed' });
    carts.set('cart1', { items: ['y'] });
    await saveToFiles(app);
    const b = fingerprint(app, carts);
    fs.record();
    const second = await store.backup(); // of B: s1 and cart0 shared with the first, which goes
    fs.stopRecording();
    expect(second.newBytes).toBeLessThan(second.size);
    expect(fs.recordedCalls.filter((call) => call.startsWith('link('))).toHaveLength(2);
    await app.close();
    const holds = new Map([
      [first.id, a],
      [second.id, b],
    ]);
    report.backupDirectory = await checkEveryCrashPoint(
      fs,
      new Map([[b, 'B']]),
      async (_crashed, crashedApp, crashedCarts) => {
        const crashedStore = crashedApp.get(PersistenceStore);
        const listed = await crashedStore.listBackups();
        expect(listed.length).toBeGreaterThan(0); // never left without a backup
        for (const { id } of listed) {
          await crashedStore.restore(id); // verified against its manifest first
          expect(fingerprint(crashedApp, crashedCarts)).toBe(holds.get(id));
        }
      },
      backups,
      0, // no random draws: "synced" and "any" with every pending operation (it restores at each)
    );
  }, 180_000);

  it('restore(): the store holds exactly the old state or exactly the backup', async () => {
    const { fs, a } = await storeWithA();
    let { app, carts } = await open(fs);
    await app.get(PersistenceStore).backup('/srv/backup-a');
    mutate(app, carts);
    await app.get(PersistenceStore).saveAll();
    await app.get(PersistenceStore).checkpoint();
    const b = fingerprint(app, carts);
    await app.close();
    ({ app, carts } = await open(fs));
    expect(fingerprint(app, carts)).toBe(b);
    fs.record();
    await app.get(PersistenceStore).restore('/srv/backup-a');
    fs.stopRecording();
    expect(fingerprint(app, carts)).toBe(a);
    await app.close();
    report.restore = await checkEveryCrashPoint(
      fs,
      new Map([
        [a, 'A (the backup)'],
        [b, 'B (before restore)'],
      ]),
    );
  }, 120_000);

  it('restore() beside a file this code cannot read (a newer schema version): it stays, byte for byte', async () => {
    const { fs, a } = await storeWithA();
    let { app } = await open(fs);
    await app.get(PersistenceStore).backup('/srv/backup-a');
    await app.close();
    const newer = `${PATH}/carts/newer.json`;
    const bytes = Buffer.from(JSON.stringify({ id: 'newer', v: 1, sv: 9, data: { items: [] } }));
    await atomicWrite(fs, newer, bytes, { mode: 0o600 });
    ({ app } = await open(fs));
    expect(
      app
        .get(PersistenceStore)
        .listUnloaded()
        .map((u) => u.id),
    ).toEqual(['newer']);
    fs.record();
    await app.get(PersistenceStore).restore('/srv/backup-a');
    fs.stopRecording();
    expect(fs.readLive(newer)).toEqual(bytes);
    await app.close();
    report.restoreKeeps = await checkEveryCrashPoint(
      fs,
      new Map([[a, 'A (the backup, and before it)']]),
      async (crashed, crashedApp) => {
        expect(crashed.readLive(newer)).toEqual(bytes);
        expect(
          crashedApp
            .get(PersistenceStore)
            .listUnloaded()
            .map((u) => u.id),
        ).toEqual(['newer']);
      },
    );
  }, 120_000);
});
