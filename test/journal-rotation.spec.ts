import { INestApplication } from '@nestjs/common';
import { readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { NodeFileSystem, PersistenceStore, SessionManager } from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { GatedFileSystem } from './fixtures/gated-fs';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The journal is sealed when it passes checkpointBytes and checkpointed in the background: the next
 * save commits into a new journal segment without waiting for the item files. The checkpoint's
 * item-file writes are held by an injected file system, so the order is shown, not timed.
 */
describe('journal rotation: saves never wait for a checkpoint', () => {
  let dir: string;
  let app: INestApplication | undefined;

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    await removeDir(dir);
  });

  /** A file system holding every item-file write (temporary files in an adapter folder). */
  const gatedFs = (): GatedFileSystem =>
    new GatedFileSystem(new NodeFileSystem(), (path) => {
      const inside = relative(dir, path);
      return inside.includes(sep) && !inside.startsWith('.');
    });

  const journalFiles = async (): Promise<string[]> =>
    (await readdir(dir)).filter((name) => name.startsWith('.journal')).sort();

  it('a save right after a big save commits while the checkpoint of the big one is held', async () => {
    const gated = gatedFs();
    app = await createApp({ path: dir, checkpointBytes: 4096 }, { fileSystem: gated.fs });
    const store = app.get(PersistenceStore);
    const sessions = app.get(SessionManager);
    for (let i = 0; i < 50; i++)
      sessions.create({ id: `s${i}`, metadata: { text: 'x'.repeat(200) } });
    const full = await store.saveAll();
    expect(full.changed).toBe(50);
    // The big save's journal passed checkpointBytes: it was sealed, and its checkpoint is held.
    expect(await journalFiles()).toEqual(['.journal', '.journal.1']);
    await gated.whenHeld(); // the checkpoint reads the segment back, then reaches its first item file
    expect(gated.held).toBeGreaterThan(0);

    sessions.update('s7', { status: 'paused' });
    const small = await store.saveAll(); // would hang here if saves waited for the checkpoint
    expect(small.changed).toBe(1);
    expect(gated.held).toBeGreaterThan(0); // still held: the save did not wait for it
    expect(await readdir(join(dir, 'sessions'))).toEqual([]); // no item file written yet
    const status = await store.getStatus();
    expect(status.journal.pendingItems).toBe(51);

    gated.release();
    await store.checkpoint();
    expect(await journalFiles()).toEqual(['.journal']);
    expect((await readdir(join(dir, 'sessions'))).length).toBe(50);
    await app.close();

    app = await createApp({ path: dir });
    expect(app.get(SessionManager).get('s7')?.status).toBe('paused');
    expect(app.get(SessionManager).list()).toHaveLength(50);
  });

  it('a read-only store reads the sealed segments, then the active journal', async () => {
    const gated = gatedFs();
    app = await createApp({ path: dir, checkpointBytes: 1 }, { fileSystem: gated.fs });
    const sessions = app.get(SessionManager);
    sessions.create({ id: 'a' });
    sessions.create({ id: 'b' });
    await app.get(PersistenceStore).saveAll(); // sealed as .journal.1, its checkpoint held
    sessions.update('a', { status: 'second' });
    sessions.delete('b');
    await app.get(PersistenceStore).saveAll(); // sealed as .journal.2
    expect(await journalFiles()).toEqual(['.journal', '.journal.1', '.journal.2']);
    const reader = await createApp({ path: dir, readOnly: true });
    try {
      expect(
        reader
          .get(SessionManager)
          .list()
          .map((s) => [s.id, s.status]),
      ).toEqual([['a', 'second']]);
    } finally {
      await reader.close();
    }
    gated.release();
  });

  it('loadAll() waits for the background checkpoint, and loads what it wrote', async () => {
    const gated = gatedFs();
    app = await createApp({ path: dir, checkpointBytes: 1 }, { fileSystem: gated.fs });
    const store = app.get(PersistenceStore);
    const sessions = app.get(SessionManager);
    sessions.create({ id: 'a' });
    sessions.create({ id: 'b' });
    await store.saveAll();
    sessions.update('a', { status: 'done' });
    sessions.delete('b');
    await store.saveAll(); // a second sealed segment, behind the first
    expect(await journalFiles()).toEqual(['.journal', '.journal.1', '.journal.2']);
    sessions.create({ id: 'unsaved' });
    let loaded = false;
    const load = store.loadAll().then((meta) => {
      loaded = true;
      return meta;
    });
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(loaded).toBe(false); // held behind the checkpoint
    gated.release();
    await load;
    expect(await journalFiles()).toEqual(['.journal']);
    expect(sessions.list().map((s) => [s.id, s.status])).toEqual([['a', 'done']]);
  });
});
