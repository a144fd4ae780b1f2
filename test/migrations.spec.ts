import { INestApplication } from '@nestjs/common';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FocusAdapter } from '../lib/adapters/focus/focus.adapter';
import { MemoryAdapter } from '../lib/adapters/memory/memory.adapter';
import { SessionAdapter } from '../lib/adapters/session/session.adapter';
import {
  PersistenceAdapter,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceMigrations,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { buildCli, runCli } from './fixtures/cli';
import { dumpState, saveToFiles, seedState } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

type Note = Record<string, unknown>;

/** A user's adapter, at some schema version; records what its migrations were called with. */
class NotesAdapter implements PersistenceAdapter<Note> {
  readonly name = 'notes';
  items = new Map<string, Note>();
  readonly calls: string[] = [];

  constructor(
    readonly version?: number,
    readonly migrations?: PersistenceMigrations,
    readonly immutable = false,
  ) {}

  snapshot(): ReadonlyMap<string, Note> {
    return new Map(this.items);
  }

  restore(items: ReadonlyMap<string, Note>): void {
    this.items = new Map(items);
  }
}

/** Version 3: v2 adds `tags`, v3 counts them (so it needs v2's output) and upper-cases the title. */
const v3 = (immutable = false): NotesAdapter => {
  const adapter: NotesAdapter = new NotesAdapter(
    3,
    {
      2: (item, id) => {
        adapter.calls.push(`2:${id}`);
        return { ...(item as Note), tags: ['old'] };
      },
      3: (item, id) => {
        adapter.calls.push(`3:${id}`);
        const note = item as { title: string; tags: string[] };
        return { ...note, title: note.title.toUpperCase(), tagCount: note.tags.length };
      },
    },
    immutable,
  );
  return adapter;
};

const readJson = async (dir: string, file: string): Promise<Record<string, unknown>> =>
  JSON.parse(await readFile(join(dir, 'notes', file), 'utf8')) as Record<string, unknown>;

describe('schema versions and migrations', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(dir);
  });

  const start = async (
    adapter: NotesAdapter,
    options: Partial<PersistenceModuleOptions> = {},
  ): Promise<{
    app: INestApplication;
    store: PersistenceStore;
    errors: PersistenceErrorEvent[];
  }> => {
    const app = await createApp({
      path: dir,
      builtInAdapters: false,
      adapters: [adapter],
      loadOnBoot: false,
      ...options,
    });
    apps.push(app);
    const store = app.get(PersistenceStore);
    const errors: PersistenceErrorEvent[] = [];
    store.onError((e) => errors.push(e));
    if (options.loadOnBoot !== false) await store.loadAll();
    return { app, store, errors };
  };

  /** Runs `work` on a fresh application of `adapter`, then closes it (saved on shutdown). */
  const session = async (adapter: NotesAdapter, work: () => void = () => undefined) => {
    const { app, errors } = await start(adapter);
    work();
    await app.close();
    apps.splice(apps.indexOf(app), 1);
    return errors;
  };

  it.each([
    ['compared by bytes', false],
    ['immutable: the adapter hands back the very objects it was given', true],
  ])(
    'migrates version-1 items to version 3 at load, and the next save rewrites them (%s)',
    async (_, immutable) => {
      // An item already at version 3, written by the version-3 code.
      const current = v3();
      await session(current, () => current.items.set('c', { title: 'C', tags: [], tagCount: 0 }));
      // Version 1 (no version declared) writes a and b; c is from a newer version and kept.
      const old = new NotesAdapter();
      await session(old, () => {
        old.items.set('a', { title: 'a' });
        old.items.set('b', { title: 'b' });
      });
      expect(await readJson(dir, 'a.json')).toEqual({ id: 'a', v: 1, data: { title: 'a' } });
      const cBytes = await readFile(join(dir, 'notes', 'c.json'));

      const adapter = v3(immutable);
      const { app, store, errors } = await start(adapter);
      expect(errors).toEqual([]);
      expect(Object.fromEntries(adapter.items)).toEqual({
        a: { title: 'A', tags: ['old'], tagCount: 1 },
        b: { title: 'B', tags: ['old'], tagCount: 1 },
        c: { title: 'C', tags: [], tagCount: 0 },
      });
      // Each old item went through 2 then 3; the current one through none.
      expect(adapter.calls.sort()).toEqual(['2:a', '2:b', '3:a', '3:b']);

      const meta = await store.saveAll();
      expect(meta.changed).toBe(2); // a and b, although their values did not change since load
      await app.close();
      apps.splice(apps.indexOf(app), 1);
      expect(await readJson(dir, 'a.json')).toEqual({
        id: 'a',
        v: 1,
        sv: 3,
        data: { title: 'A', tags: ['old'], tagCount: 1 },
      });
      expect((await readJson(dir, 'b.json')).sv).toBe(3);
      expect(await readFile(join(dir, 'notes', 'c.json'))).toEqual(cBytes);

      // Loaded again: nothing left to migrate, nothing to rewrite.
      const again = v3(immutable);
      const next = await start(again);
      expect(again.calls).toEqual([]);
      expect(again.items.get('a')).toEqual({ title: 'A', tags: ['old'], tagCount: 1 });
      expect((await next.store.saveAll()).changed).toBe(0);
    },
  );

  it('a migration that throws: that item is reported and left as it is, the others load', async () => {
    const old = new NotesAdapter();
    await session(old, () => {
      old.items.set('good', { title: 'fine' });
      old.items.set('bad', { title: 'broken' });
      old.items.set('async', { title: 'later' });
    });
    const badBytes = await readFile(join(dir, 'notes', 'bad.json'));
    const asyncBytes = await readFile(join(dir, 'notes', 'async.json'));

    const adapter = new NotesAdapter(2, {
      2: (item) => {
        const note = item as { title: string };
        if (note.title === 'broken') throw new Error('no title rule for "broken"');
        if (note.title === 'later') return Promise.resolve(note);
        return { ...note, v2: true };
      },
    });
    const { app, store, errors } = await start(adapter);
    expect([...adapter.items.keys()]).toEqual(['good']);
    const byId = new Map(errors.map((e) => [e.itemId, e]));
    expect(byId.get('bad')).toMatchObject({ operation: 'load', adapter: 'notes' });
    expect(byId.get('bad')!.error.code).toBe(PersistenceErrorCode.MigrationFailed);
    expect(byId.get('bad')!.error.message).toMatch(
      /Item "bad" of "notes" was not loaded: its migration from schema version 1 to 2 failed \(no title rule for "broken"\)/,
    );
    expect(byId.get('async')!.error.code).toBe(PersistenceErrorCode.MigrationFailed);
    expect(byId.get('async')!.error.message).toContain('it returned a Promise');
    expect(
      store
        .listUnloaded()
        .map((u) => u.id)
        .sort(),
    ).toEqual(['async', 'bad']);

    // A new value for "bad" is not written over the file, and its absence removes nothing.
    adapter.items.set('bad', { title: 'replacement' });
    await expect(store.saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.SaveIncomplete,
    });
    await app.close();
    apps.splice(apps.indexOf(app), 1);
    expect(await readFile(join(dir, 'notes', 'bad.json'))).toEqual(badBytes);
    expect(await readFile(join(dir, 'notes', 'async.json'))).toEqual(asyncBytes);
    expect(await readJson(dir, 'good.json')).toMatchObject({ sv: 2, data: { v2: true } });
  });

  it('a migration that returns undefined or no JSON data, or whose revived item cannot be saved, is a failed migration', async () => {
    const old = new NotesAdapter();
    await session(old, () => {
      for (const id of ['good', 'none', 'map', 'cycle', 'revived-badly']) {
        old.items.set(id, { title: id });
      }
    });
    const bytes = new Map<string, Buffer>();
    for (const id of ['none', 'map', 'cycle', 'revived-badly']) {
      bytes.set(id, await readFile(join(dir, 'notes', `${id}.json`)));
    }
    const adapter = new NotesAdapter(2, {
      2: (item) => {
        const note = item as { title: string };
        if (note.title === 'none') return undefined; // forgot the return
        if (note.title === 'map') return new Map([['title', 'map']]);
        if (note.title === 'cycle') {
          const cyclic: Record<string, unknown> = { ...note };
          cyclic.self = cyclic;
          return cyclic;
        }
        return { ...note, v2: true };
      },
    });
    // revive() turns the one item into something no save can write.
    (adapter as NotesAdapter & { revive(v: unknown, id: string): unknown }).revive = (v, id) =>
      id === 'revived-badly' ? undefined : v;
    const { app, store, errors } = await start(adapter);

    // The adapter never sees a broken item: only "good" is handed over.
    expect(Object.fromEntries(adapter.items)).toEqual({ good: { title: 'good', v2: true } });
    const byId = new Map(errors.map((e) => [e.itemId, e.error]));
    for (const id of ['none', 'map', 'cycle', 'revived-badly']) {
      expect(byId.get(id)).toMatchObject({ code: PersistenceErrorCode.MigrationFailed });
    }
    expect(byId.get('none')!.message).toContain('did not return JSON data');
    expect(byId.get('revived-badly')!.message).toContain(
      'revive() made an item that cannot be saved',
    );
    const unloaded = store.listUnloaded().sort((a, b) => a.id.localeCompare(b.id));
    expect(unloaded.map((u) => u.id)).toEqual(['cycle', 'map', 'none', 'revived-badly']);
    for (const item of unloaded) {
      expect(item.code).toBe(PersistenceErrorCode.MigrationFailed); // the typed reason
      expect(item.reason).toMatch(/^its migration from schema version 1 to 2 failed: /);
    }

    // Saves of the other items go on working; the failed ones' files are kept as they are.
    adapter.items.set('good', { title: 'better', v2: true });
    adapter.items.set('new', { title: 'new', v2: true });
    const meta = await store.saveAll();
    expect(meta.changed).toBe(2);
    expect(errors.filter((e) => e.operation === 'save')).toEqual([]);
    await app.close();
    apps.splice(apps.indexOf(app), 1);
    for (const [id, content] of bytes) {
      expect(await readFile(join(dir, 'notes', `${id}.json`))).toEqual(content);
    }
    expect(await readJson(dir, 'good.json')).toMatchObject({ sv: 2, data: { title: 'better' } });
  });

  it('an item from a newer version is refused, listed as unloaded and kept byte for byte', async () => {
    const newer = v3();
    await session(newer, () => newer.items.set('n', { title: 'N', tags: [], tagCount: 0 }));
    const bytes = await readFile(join(dir, 'notes', 'n.json'));

    // The application is rolled back to version 2.
    const rolledBack = new NotesAdapter(2, { 2: (item) => item });
    const { app, store, errors } = await start(rolledBack);
    expect(rolledBack.items.size).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ adapter: 'notes', itemId: 'n' });
    expect(errors[0].error.code).toBe(PersistenceErrorCode.ItemFromNewerVersion);
    expect(errors[0].error.message).toContain(
      'written by a newer version of the application (schema 3, this code knows 2); it is kept as it is',
    );
    expect(store.listUnloaded()).toEqual([
      expect.objectContaining({
        adapter: 'notes',
        id: 'n',
        path: join(dir, 'notes', 'n.json'),
        reason: expect.stringContaining('newer version') as unknown,
      }),
    ]);
    rolledBack.items.set('other', { title: 'x' });
    await store.saveAll();
    await app.close();
    apps.splice(apps.indexOf(app), 1);
    expect(await readFile(join(dir, 'notes', 'n.json'))).toEqual(bytes);

    // Rolled forward again: the item is there.
    const forward = v3();
    await start(forward);
    expect(forward.items.get('n')).toEqual({ title: 'N', tags: [], tagCount: 0 });
  });

  it('a read-only store migrates the items of committed saves still in the journal', async () => {
    const old = new NotesAdapter();
    const writer = await start(old, { checkpointBytes: Number.MAX_SAFE_INTEGER });
    old.items.set('j', { title: 'journal' });
    await writer.store.saveAll(); // committed to the journal only
    await expect(readFile(join(dir, 'notes', 'j.json'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
    const reader = v3();
    await start(reader, { readOnly: true });
    expect(reader.items.get('j')).toEqual({ title: 'JOURNAL', tags: ['old'], tagCount: 1 });
  });

  it('restore() runs the migrations on a backup made by an older version', async () => {
    const old = new NotesAdapter();
    const first = await start(old);
    old.items.set('r', { title: 'restored' });
    await first.store.saveAll();
    const backupDir = join(await makeTempDir(), 'backup');
    try {
      await first.store.backup(backupDir);
      await first.app.close();
      apps.splice(apps.indexOf(first.app), 1);
      const adapter = v3();
      const { store } = await start(adapter);
      adapter.items.clear();
      await store.restore(backupDir);
      expect(adapter.items.get('r')).toEqual({ title: 'RESTORED', tags: ['old'], tagCount: 1 });
      await store.saveAll();
      await store.checkpoint();
      expect(await readJson(dir, 'r.json')).toMatchObject({ sv: 3, data: { title: 'RESTORED' } });

      // A backup holding items of a newer version is refused by older code; nothing changes.
      const newerBackup = join(backupDir, '..', 'newer');
      await store.backup(newerBackup);
      await apps.pop()!.close();
      const rolledBack = new NotesAdapter(2, { 2: (item) => item });
      const older = await start(rolledBack);
      rolledBack.items.set('keep', { title: 'mine' });
      await older.store.saveAll();
      await expect(older.store.restore(newerBackup)).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidBackup,
        message: expect.stringContaining(
          'written with schema version 3; this code knows 2',
        ) as unknown,
      });
      expect([...rolledBack.items.keys()]).toEqual(['keep']);
    } finally {
      await removeDir(join(backupDir, '..'));
    }
  });

  it('a migration runs as adapter code: a store call from inside it is refused', async () => {
    const old = new NotesAdapter();
    await session(old, () => old.items.set('a', { title: 'a' }));
    let inner: Promise<unknown> | undefined;
    const ref: { store?: PersistenceStore } = {};
    const adapter = new NotesAdapter(2, {
      2: (item) => {
        inner = ref.store!.saveAll();
        inner.catch(() => undefined);
        return item;
      },
    });
    const app = await createApp({
      path: dir,
      builtInAdapters: false,
      adapters: [adapter],
      loadOnBoot: false,
    });
    apps.push(app);
    const store = app.get(PersistenceStore);
    ref.store = store;
    await store.loadAll();
    expect(adapter.items.get('a')).toEqual({ title: 'a' });
    await expect(inner).rejects.toMatchObject({ code: PersistenceErrorCode.ReentrantCall });
  });

  const fn = (item: unknown): unknown => item;
  it.each<[string, number | undefined, unknown, string]>([
    ['a version without migrations', 2, undefined, 'no migration to version 2'],
    ['a gap in the chain', 3, { 2: fn }, 'has version 3 but no migration to version 3'],
    ['a migration that is not a function', 2, { 2: 'up' }, 'no migration to version 2'],
    ['a migration beyond the version', 2, { 2: fn, 3: fn }, 'declares migrations[3]'],
    ['version 0', 0, undefined, 'has version 0: it must be a positive integer'],
    ['a fractional version', 1.5, undefined, 'has version 1.5'],
    ['migrations that are not an object', 1, [fn], 'must be an object of functions'],
  ])('%s fails init with PERSISTENCE_INVALID_ADAPTER', async (_, version, migrations, problem) => {
    const adapter = new NotesAdapter(version, migrations as PersistenceMigrations);
    const error = await createApp({
      path: dir,
      builtInAdapters: false,
      adapters: [adapter],
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: PersistenceErrorCode.InvalidAdapter });
    expect((error as Error).message).toContain('(name "notes")');
    expect((error as Error).message).toContain(problem);
  });

  describe('CLI', () => {
    let work: string;
    let main: string;
    beforeAll(async () => {
      work = await makeTempDir('persistence-cli-build-');
      main = await buildCli(work);
    }, 60_000);
    afterAll(() => removeDir(work));

    it('export and import carry each item at its schema version, without migrating or refusing it', async () => {
      const adapter = v3();
      await session(adapter, () => adapter.items.set('x', { title: 'X', tags: [], tagCount: 0 }));
      const old = new NotesAdapter();
      await session(old, () => old.items.set('y', { title: 'y' })); // x: newer, kept
      const elsewhere = await makeTempDir();
      const docFile = join(elsewhere, 'doc.json');
      const target = join(elsewhere, 'target');
      try {
        const exported = await runCli(main, ['export', dir, '--out', docFile]);
        expect(exported).toMatchObject({ code: 0 });
        const doc = JSON.parse(await readFile(docFile, 'utf8')) as Record<string, unknown>;
        expect(doc.collections).toEqual({
          notes: { x: { title: 'X', tags: [], tagCount: 0 }, y: { title: 'y' } },
        });
        expect(doc.schemaVersions).toEqual({ notes: { x: 3 } });

        expect(await runCli(main, ['import', target, docFile])).toMatchObject({
          code: 0,
        });
        expect(await readFile(join(target, 'notes', 'x.json'))).toEqual(
          await readFile(join(dir, 'notes', 'x.json')),
        );
        const app = await createApp({ path: target, builtInAdapters: false, adapters: [v3()] });
        apps.push(app);
        const loaded = app.get(PersistenceStore);
        expect(loaded.listUnloaded()).toEqual([]);
      } finally {
        await removeDir(elsewhere);
      }
    });
  });

  it('the built-in adapters are at version 1: they write no sv, read old files, refuse newer ones', async () => {
    const app = await createApp({ path: dir });
    apps.push(app);
    for (const Adapter of [SessionAdapter, MemoryAdapter, FocusAdapter]) {
      expect(app.get(Adapter)).toMatchObject({ version: 1 });
    }
    seedState(app);
    const state = dumpState(app);
    await saveToFiles(app);
    const file = join(dir, 'sessions', 'sess-1.json');
    const envelope = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    expect(Object.keys(envelope)).toEqual(['id', 'v', 'data']); // the format before sv existed
    await app.close();
    apps.splice(0);

    // A file written by a later release at schema 2 is kept; the old-format files load.
    const future = JSON.stringify({ ...envelope, id: 'sess-9', sv: 2 });
    await writeFile(join(dir, 'sessions', 'sess-9.json'), future);
    const reopened = await createApp({ path: dir });
    apps.push(reopened);
    expect(dumpState(reopened)).toEqual(state);
    expect(reopened.get(SessionManager).get('sess-9')).toBeUndefined();
    expect(reopened.get(PersistenceStore).listUnloaded()).toEqual([
      expect.objectContaining({ adapter: 'sessions', id: 'sess-9' }),
    ]);
    await saveToFiles(reopened);
    expect(await readFile(join(dir, 'sessions', 'sess-9.json'), 'utf8')).toBe(future);
  });
});
