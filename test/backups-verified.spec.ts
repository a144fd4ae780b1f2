import { INestApplication } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BackupManifest,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { createApp } from './fixtures/app.factory';
import { dumpState, saveToFiles, seedState } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * A backup is checked as it is written: a damaged item file of the live store refuses the backup
 * (typed error, nothing published, no older backup removed) instead of being copied as if whole, and
 * retention never lets a backup that was not verified take the place of one that was.
 */

/** Flips the bits of one byte of a file (at `at`, negative: from the end). */
async function flipByte(path: string, at: number): Promise<void> {
  const data = await readFile(path);
  const index = at < 0 ? data.length + at : at;
  data[index] ^= 0xff;
  await writeFile(path, data);
}

describe('backups are verified as they are written', () => {
  let root: string;
  let dir: string;
  let backups: string;
  const apps: INestApplication[] = [];
  let errors: PersistenceErrorEvent[];

  const open = async (
    options: PersistenceModuleOptions = {},
  ): Promise<{ app: INestApplication; store: PersistenceStore }> => {
    const app = await createApp(
      {
        path: dir,
        saveOnShutdown: false,
        adapters: [CartAdapter],
        backups: { directory: backups, keep: 2 },
        ...options,
      },
      { imports: [CartModule] },
    );
    apps.push(app);
    const store = app.get(PersistenceStore);
    store.onError((e) => errors.push(e));
    return { app, store };
  };

  beforeEach(async () => {
    root = await makeTempDir();
    dir = join(root, 'store');
    backups = join(root, 'backups');
    errors = [];
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(root);
  });

  it.each([
    ['its first byte', 'sessions/sess-1.json', () => 0],
    ['its last byte', 'conversations/conv-1.json', (data: Buffer) => data.length - 1],
    ['a quote in the middle', 'focus/chain-1.json', (data: Buffer) => data.indexOf('"', 20)],
  ])(
    'a live item file damaged in %s: backup() is refused, keep: 2 keeps the good backups, one restores',
    async (_label, file, pick) => {
      const { app, store } = await open();
      seedState(app);
      await saveToFiles(app);
      const good = dumpState(app);
      const first = await store.backup();
      const second = await store.backup();
      const path = join(dir, file);
      await flipByte(path, pick(await readFile(path)));
      await expect(store.backup()).rejects.toMatchObject({
        code: PersistenceErrorCode.BackupVerificationFailed,
        message: expect.stringContaining(`"${file}"`),
      });
      expect(errors.at(-1)).toMatchObject({
        operation: 'backup',
        error: { code: PersistenceErrorCode.BackupVerificationFailed },
      });
      // Nothing was published or left behind, and retention did not run.
      expect((await store.listBackups()).map((b) => b.id)).toEqual([second.id, first.id]);
      expect((await readdir(backups)).sort()).toEqual([first.id, second.id].sort());
      // A second attempt is refused too: the damaged file is never taken for a whole one.
      await expect(store.backup()).rejects.toMatchObject({
        code: PersistenceErrorCode.BackupVerificationFailed,
      });
      expect((await store.listBackups()).map((b) => b.id)).toEqual([second.id, first.id]);

      // The state in memory is intact: the next save writes the damaged item anew, and the next
      // backup is whole; retention (keep: 2) then drops only the oldest good one.
      await expect(store.saveAll()).resolves.toMatchObject({ changed: 1 });
      const third = await store.backup();
      expect(third.unverified).toEqual([]);
      const list = await store.listBackups();
      expect(list.map((b) => b.id)).toEqual([third.id, second.id]);
      expect(list.every((b) => b.verified && b.unverified === 0)).toBe(true);

      // A good backup restores the state it was taken of, in a fresh app too.
      for (const each of apps.splice(0)) await each.close();
      const fresh = await open();
      await expect(fresh.store.restore(second.id!)).resolves.toMatchObject({ files: 4 });
      expect(dumpState(fresh.app)).toEqual(good);
    },
  );

  it('damage that still decodes is caught by the hash the store committed (a custom adapter)', async () => {
    const { app, store } = await open();
    app.get(CartService).set('c1', { items: ['apple'], total: 1 });
    await saveToFiles(app);
    const good = await store.backup();
    const path = join(dir, 'carts', 'c1.json');
    const text = await readFile(path, 'utf8');
    expect(text).toContain('apple');
    await writeFile(path, text.replace('apple', 'appke')); // one byte: still a valid cart
    await expect(store.backup()).rejects.toMatchObject({
      code: PersistenceErrorCode.BackupVerificationFailed,
      message: expect.stringMatching(/"carts\/c1\.json": its bytes differ from those this store/),
    });
    // backup(path) checks the same way.
    await expect(store.backup(join(root, 'copy'))).rejects.toMatchObject({
      code: PersistenceErrorCode.BackupVerificationFailed,
    });
    expect(await readdir(root)).not.toContain('copy');
    expect((await store.listBackups()).map((b) => b.id)).toEqual([good.id]);
    await expect(store.saveAll()).resolves.toMatchObject({ changed: 1 });
    await store.checkpoint();
    expect(await readFile(path, 'utf8')).toContain('apple');
    await expect(store.backup()).resolves.toMatchObject({ unverified: [] });
  });

  it('a built-in item changed since the last backup checked it, still valid JSON, is damage too', async () => {
    const { app, store } = await open();
    seedState(app);
    await saveToFiles(app);
    const good = await store.backup();
    const path = join(dir, 'sessions', 'sess-1.json');
    const text = await readFile(path, 'utf8');
    const at = text.indexOf('"ann"');
    expect(at).toBeGreaterThan(0);
    // One letter of a metadata value ('ann' → 'bnn'): the file still decodes and revives.
    const data = Buffer.from(text);
    data[at + 1] ^= 0x03;
    await writeFile(path, data);
    await expect(store.backup()).rejects.toMatchObject({
      code: PersistenceErrorCode.BackupVerificationFailed,
      message: expect.stringContaining(
        '"sessions/sess-1.json": its bytes changed since the last backup',
      ),
    });
    expect((await store.listBackups()).map((b) => b.id)).toEqual([good.id]);
    await expect(store.saveAll()).resolves.toMatchObject({ changed: 1 });
    await expect(store.backup()).resolves.toMatchObject({ unverified: [] });
    expect(await readFile(path, 'utf8')).toBe(text);
  });

  it('an encrypted item file with one byte altered is damage, not a file of another key', async () => {
    const { app, store } = await open({ encryption: { key: randomBytes(32) } });
    seedState(app);
    await saveToFiles(app);
    const good = await store.backup();
    const path = join(dir, 'sessions', 'sess-2.json.enc');
    const data = await readFile(path);
    data[data.length - 5] ^= 0x01;
    await writeFile(path, data);
    await expect(store.backup()).rejects.toMatchObject({
      code: PersistenceErrorCode.BackupVerificationFailed,
      message: expect.stringContaining('"sessions/sess-2.json.enc"'),
    });
    expect((await store.listBackups()).map((b) => b.id)).toEqual([good.id]);
    await store.saveAll();
    await expect(store.backup()).resolves.toMatchObject({ unverified: [] });
  });

  it('a file the store could not load (another key) never fails the backup: kept, reported, restored as it is', async () => {
    const keyA = randomBytes(32);
    const keyB = randomBytes(32);
    const writer = await open({ encryption: { keys: { old: keyA }, current: 'old' } });
    seedState(writer.app);
    await saveToFiles(writer.app);
    for (const each of apps.splice(0)) await each.close();
    // Another key: every file of the first key is left in place, unloaded.
    const { app, store } = await open({
      encryption: { keys: { new: keyB }, current: 'new' },
      onUnreadable: 'start', // the files of the old key stay unloaded
    });
    app.get(CartService).set('c1', { items: ['pear'], total: 2 });
    await saveToFiles(app);
    const locked = (await readdir(join(dir, 'sessions'))).map((f) => `sessions/${f}`);
    expect(locked).toHaveLength(2);

    const meta = await store.backup();
    expect(meta.files).toBe(5);
    expect(meta.unverified.map((u) => u.path)).toEqual(expect.arrayContaining(locked));
    expect(meta.unverified).toHaveLength(4);
    expect(meta.unverified[0].reason).toMatch(/the store did not load it/);
    const manifest = JSON.parse(
      await readFile(join(backups, meta.id!, 'persistence-backup.json'), 'utf8'),
    ) as BackupManifest;
    expect(manifest).toMatchObject({ verified: true, unverified: meta.unverified });
    expect((await store.listBackups())[0]).toMatchObject({ verified: true, unverified: 4 });

    // A restore puts the locked files back as they are; the right key reads them again.
    app.get(SessionManager).create({ id: 'later' });
    app.get(CartService).set('c1', { items: [], total: 0 });
    await saveToFiles(app);
    await expect(store.restore(meta.id!)).resolves.toMatchObject({ files: 5 });
    expect(app.get(CartService).get('c1')).toEqual({ items: ['pear'], total: 2 });
    for (const each of apps.splice(0)) await each.close();
    const both = await open({ encryption: { keys: { old: keyA, new: keyB }, current: 'new' } });
    expect(both.app.get(SessionManager).get('sess-1')).toBeDefined();
    expect(both.app.get(SessionManager).get('later')).toBeUndefined();
    expect(errors.filter((e) => e.operation === 'backup')).toEqual([]);
  });

  it('retention counts only verified backups: one written unchecked never takes the place of one that was', async () => {
    const { app, store } = await open();
    seedState(app);
    await saveToFiles(app);
    const verified = await store.backup();
    // A backup of this store from a release that did not check what it wrote (no `verified`).
    const unchecked = await store.backup();
    const path = join(backups, unchecked.id!, 'persistence-backup.json');
    const manifest = JSON.parse(await readFile(path, 'utf8')) as BackupManifest;
    delete manifest.verified;
    delete manifest.unverified;
    await writeFile(path, JSON.stringify(manifest));
    expect((await store.listBackups())[0]).toMatchObject({ id: unchecked.id, verified: false });

    const next = await store.backup();
    // keep: 2 verified backups: the unchecked one in between is not counted, the verified one stays.
    expect((await store.listBackups()).map((b) => b.id)).toEqual([
      next.id,
      unchecked.id,
      verified.id,
    ]);
    const last = await store.backup();
    expect((await store.listBackups()).map((b) => b.id)).toEqual([last.id, next.id]);
  });
});
