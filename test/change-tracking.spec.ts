import { INestApplication } from '@nestjs/common';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FocusManager,
  MemoryManager,
  NodeFileSystem,
  PersistenceAdapter,
  PersistenceChange,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { ChangeTracker } from '../lib/adapters/change.tracker';
import { createApp } from './fixtures/app.factory';
import { CountingFileSystem } from './fixtures/counting-fs';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Saves cost what changed: the built-in managers report their changed and deleted ids, a save with
 * nothing changed takes no snapshot and writes nothing, and a change is forgotten only once the save
 * that included it is durable.
 */
const sessionsAdapter = (app: INestApplication): PersistenceAdapter =>
  app.get(PersistenceStore).adapters.find((adapter) => adapter.name === 'sessions')!;

describe('change tracking', () => {
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

  it('a save with nothing changed takes no snapshot and writes nothing', async () => {
    const counting = new CountingFileSystem(new NodeFileSystem());
    app = await createApp({ path: dir }, { fileSystem: counting.fs });
    const store = app.get(PersistenceStore);
    for (let i = 0; i < 20; i++) app.get(SessionManager).create({ id: `s${i}` });
    app.get(MemoryManager).create({ id: 'c0' });
    await store.saveAll();
    await store.saveAll(); // the first save after start compared every item; from here on, changes only
    const snapshot = jest.spyOn(sessionsAdapter(app), 'snapshot');
    const before = { writes: counting.writes, syncs: counting.syncs };
    const meta = await store.saveAll();
    expect(snapshot).not.toHaveBeenCalled();
    expect({ writes: counting.writes, syncs: counting.syncs }).toEqual(before);
    expect(meta).toMatchObject({ changed: 0, deleted: 0, size: 0, items: 21 });
    expect(meta.adapters).toEqual({ sessions: 20, conversations: 1, focus: 0 });
  });

  it('a save with a change looks at the changed items only, and keeps the counts right', async () => {
    app = await createApp({ path: dir });
    const store = app.get(PersistenceStore);
    const sessions = app.get(SessionManager);
    for (let i = 0; i < 20; i++) sessions.create({ id: `s${i}` });
    await store.saveAll();
    await store.saveAll();
    const snapshot = jest.spyOn(sessionsAdapter(app), 'snapshot');
    sessions.update('s3', { status: 'paused' });
    sessions.delete('s4');
    sessions.create({ id: 'new' });
    const meta = await store.saveAll();
    expect(snapshot).not.toHaveBeenCalled();
    expect(meta).toMatchObject({ changed: 2, deleted: 1, items: 20 });
    await app.close();
    app = await createApp({ path: dir });
    const ids = app
      .get(SessionManager)
      .list()
      .map((s) => s.id);
    expect(ids).toHaveLength(20);
    expect(ids).toContain('new');
    expect(ids).not.toContain('s4');
    expect(app.get(SessionManager).get('s3')?.status).toBe('paused');
  });

  it('a change is forgotten only once its save is durable: a failed commit loses nothing', async () => {
    const counting = new CountingFileSystem(new NodeFileSystem());
    app = await createApp({ path: dir }, { fileSystem: counting.fs });
    const store = app.get(PersistenceStore);
    const sessions = app.get(SessionManager);
    sessions.create({ id: 'a' });
    sessions.create({ id: 'b' });
    await store.saveAll();
    await store.saveAll();
    sessions.update('a', { status: 'paused' });
    sessions.delete('b');
    counting.failWrites = /\.journal$/;
    await expect(store.saveAll()).rejects.toMatchObject({ code: 'PERSISTENCE_IO_FAILED' });
    counting.failWrites = undefined;
    const meta = await store.saveAll();
    expect(meta).toMatchObject({ changed: 1, deleted: 1 });
    await app.close();
    app = await createApp({ path: dir });
    expect(
      app
        .get(SessionManager)
        .list()
        .map((s) => [s.id, s.status]),
    ).toEqual([['a', 'paused']]);
  });

  it('a change made while a save runs is saved by the next one', async () => {
    app = await createApp({ path: dir });
    const store = app.get(PersistenceStore);
    const sessions = app.get(SessionManager);
    sessions.create({ id: 'a' });
    await store.saveAll();
    await store.saveAll();
    sessions.update('a', { status: 'one' });
    const first = store.saveAll();
    sessions.update('a', { status: 'two' }); // after the first save's changes() call
    await first;
    await store.saveAll();
    await app.close();
    app = await createApp({ path: dir });
    expect(app.get(SessionManager).get('a')?.status).toBe('two');
  });

  it('managers publish change notices on changes$ (not for a load)', async () => {
    app = await createApp({ path: dir });
    const notices: PersistenceChange[] = [];
    for (const manager of [
      app.get(SessionManager),
      app.get(MemoryManager),
      app.get(FocusManager),
    ]) {
      manager.changes$.subscribe((notice) => notices.push(notice));
    }
    app.get(SessionManager).create({ id: 's' });
    app.get(SessionManager).delete('s');
    app.get(SessionManager).delete('missing');
    app.get(MemoryManager).create({ id: 'c' });
    app.get(MemoryManager).addMessage('c', { role: 'user', content: 'hi' });
    app.get(FocusManager).create({ id: 'f' });
    app.get(FocusManager).pushFocus('f', { type: 'file', target: 'a.ts' });
    app.get(FocusManager).popFocus('f');
    await app.get(PersistenceStore).saveAll();
    await app.get(PersistenceStore).loadAll();
    expect(notices).toEqual([
      { adapter: 'sessions', id: 's', kind: 'changed' },
      { adapter: 'sessions', id: 's', kind: 'deleted' },
      { adapter: 'conversations', id: 'c', kind: 'changed' },
      { adapter: 'conversations', id: 'c', kind: 'changed' },
      { adapter: 'focus', id: 'f', kind: 'changed' },
      { adapter: 'focus', id: 'f', kind: 'changed' },
      { adapter: 'focus', id: 'f', kind: 'changed' },
    ]);
  });

  it('a custom adapter with changes(): committed() gets the token only after a durable save', async () => {
    const counting = new CountingFileSystem(new NodeFileSystem());
    const items = new Map<string, { n: number }>();
    const dirty = new Set<string>();
    const committed: unknown[] = [];
    const snapshot = jest.fn(() => new Map(items));
    const adapter: PersistenceAdapter<{ n: number }> = {
      name: 'counters',
      snapshot,
      restore: (loaded) => {
        items.clear();
        for (const [id, value] of loaded) items.set(id, value);
      },
      changes: () => {
        const changed = new Map(
          [...dirty].filter((id) => items.has(id)).map((id) => [id, items.get(id)!]),
        );
        const deleted = [...dirty].filter((id) => !items.has(id));
        return { changed, deleted, token: [...dirty] };
      },
      committed: (token) => {
        committed.push(token);
        for (const id of token as string[]) dirty.delete(id);
      },
    };
    app = await createApp({ path: dir, adapters: [adapter] }, { fileSystem: counting.fs });
    const store = app.get(PersistenceStore);
    const set = (id: string, n: number): void => {
      items.set(id, { n });
      dirty.add(id);
    };
    set('x', 1);
    set('y', 1);
    await store.saveAll(); // the boot load left it in step with the (empty) index: changes only
    expect(snapshot).not.toHaveBeenCalled();
    expect(committed).toEqual([['x', 'y']]);
    set('x', 2);
    counting.failWrites = /\.journal$/;
    await expect(store.saveAll()).rejects.toThrow();
    expect(committed).toHaveLength(1); // not durable: not handed back
    counting.failWrites = undefined;
    items.delete('y');
    dirty.add('y');
    await expect(store.saveAll()).resolves.toMatchObject({ changed: 1, deleted: 1 });
    expect(snapshot).not.toHaveBeenCalled(); // changes only
    expect(committed).toEqual([
      ['x', 'y'],
      ['x', 'y'],
    ]);
    await app.close();
    items.clear();
    app = await createApp({ path: dir, adapters: [adapter] });
    expect([...items]).toEqual([['x', { n: 2 }]]);
  });

  it('after a restart, the first save looks at the changes only and writes just them', async () => {
    app = await createApp({ path: dir });
    const sessions = app.get(SessionManager);
    for (let i = 0; i < 30; i++) sessions.create({ id: `s${i}`, metadata: { i } });
    await app.close();
    const counting = new CountingFileSystem(new NodeFileSystem());
    app = await createApp({ path: dir }, { fileSystem: counting.fs });
    const snapshot = jest.spyOn(sessionsAdapter(app), 'snapshot');
    app.get(SessionManager).update('s7', { status: 'completed' });
    const meta = await app.get(PersistenceStore).saveAll();
    expect(snapshot).not.toHaveBeenCalled(); // no serialization of the 29 others to compare them
    expect(meta).toMatchObject({ changed: 1, deleted: 0, items: 30 });
    await app.close();
    app = await createApp({ path: dir });
    expect(app.get(SessionManager).get('s7')?.status).toBe('completed');
    expect(app.get(SessionManager).list()).toHaveLength(30);
  });

  it('after a restart with files to rewrite (another format), the first save still rewrites them all', async () => {
    app = await createApp({ path: dir, format: 'json' });
    for (let i = 0; i < 5; i++) app.get(SessionManager).create({ id: `s${i}` });
    await app.close();
    app = await createApp({ path: dir, format: 'json-gzip' });
    const snapshot = jest.spyOn(sessionsAdapter(app), 'snapshot');
    const meta = await app.get(PersistenceStore).saveAll();
    expect(snapshot).toHaveBeenCalledTimes(1); // a full pass: every file is rewritten as gzip
    expect(meta.changed).toBe(5);
    await app.get(PersistenceStore).checkpoint();
    await app.close();
    expect((await readdir(join(dir, 'sessions'))).sort()).toEqual(
      ['s0', 's1', 's2', 's3', 's4'].map((id) => `${id}.json.gz`),
    );
  });
});

describe('ChangeTracker', () => {
  const items = new Map<string, { v: number }>([
    ['a', { v: 1 }],
    ['b', { v: 2 }],
    ['c', { v: 3 }],
  ]);

  it('reports the changed items as a map of that moment, and the deleted ids', () => {
    const tracker = new ChangeTracker<{ v: number }>('things');
    tracker.changed('a');
    tracker.changed('gone');
    tracker.changed('c');
    const { changed, deleted } = tracker.changes(items);
    expect(changed.size).toBe(2);
    expect([...changed.entries()]).toEqual([
      ['a', { v: 1 }],
      ['c', { v: 3 }],
    ]);
    expect([...changed]).toEqual([...changed.entries()]);
    expect([...changed.keys()]).toEqual(['a', 'c']);
    expect([...changed.values()]).toEqual([{ v: 1 }, { v: 3 }]);
    expect(changed.get('c')).toBe(items.get('c'));
    expect(changed.has('b')).toBe(false);
    expect(changed.get('b')).toBeUndefined();
    const seen: string[] = [];
    changed.forEach((value, id) => seen.push(`${id}=${value.v}`));
    expect(seen).toEqual(['a=1', 'c=3']);
    expect(deleted).toEqual(['gone']);
  });

  it('committed(token) forgets what that call reported, not what changed after it', () => {
    const tracker = new ChangeTracker<{ v: number }>('things');
    tracker.changed('a');
    tracker.changed('b');
    const first = tracker.changes(items);
    tracker.changed('b'); // again, after the call
    tracker.changed('c');
    tracker.committed(first.token);
    expect([...tracker.changes(items).changed.keys()]).toEqual(['b', 'c']);
    const second = tracker.changes(items);
    tracker.committed(second.token); // nothing changed since: all forgotten
    expect(tracker.changes(items).changed.size).toBe(0);
    tracker.changed('a');
    tracker.committed('not a token');
    expect([...tracker.changes(items).changed.keys()]).toEqual(['a']);
  });
});
