import { INestApplication } from '@nestjs/common';
import { cp, mkdir, readdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import {
  MemoryManager,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { dumpState, seedState, saveToFiles } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/** Every file under a folder with its content, for "nothing changed" checks. */
async function tree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else out[relative(root, path)] = await readFile(path, 'utf8').catch(() => '<unreadable>');
    }
  };
  await walk(root);
  return out;
}

describe('backup and restore', () => {
  let root: string;
  let dir: string;
  let app: INestApplication;
  let store: PersistenceStore;
  let errors: PersistenceErrorEvent[];

  beforeEach(async () => {
    root = await makeTempDir();
    dir = join(root, 'store');
    app = await createApp({ path: dir, saveOnShutdown: false });
    store = app.get(PersistenceStore);
    errors = [];
    store.onError((e) => errors.push(e));
    seedState(app);
    await saveToFiles(app);
  });
  afterEach(async () => {
    await app.close(); // a second close is harmless
    await removeDir(root);
  });

  it('backs up the saved state and restores it into the store and the managers', async () => {
    const saved = dumpState(app);
    const meta = await store.backup(join(root, 'backup-1'));
    expect(meta).toMatchObject({ path: join(root, 'backup-1'), files: 4 });
    expect((await readdir(join(root, 'backup-1'))).sort()).toEqual(
      ['conversations', 'focus', 'persistence-backup.json', 'sessions'].sort(),
    );
    const manifest = JSON.parse(
      await readFile(join(root, 'backup-1', 'persistence-backup.json'), 'utf8'),
    );
    expect(manifest.files).toHaveLength(4);
    expect(manifest.files[0]).toEqual({
      path: expect.any(String),
      size: expect.any(Number),
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });

    app.get(SessionManager).delete('sess-1');
    app.get(SessionManager).create({ id: 'after-backup' });
    app.get(MemoryManager).addMessage('conv-1', { role: 'user', content: 'later' });
    await saveToFiles(app);

    const restored = await store.restore(join(root, 'backup-1'));
    expect(restored).toMatchObject({ files: 4, load: { items: 4, skipped: 0 } });
    expect(dumpState(app)).toEqual(saved);
    expect(await readdir(join(dir, 'sessions'))).toEqual(
      expect.arrayContaining(['sess-1.json', 'sess-2.json']),
    );
    expect(await readdir(join(dir, 'sessions'))).not.toContain('after-backup.json');
    expect((await readdir(dir)).filter((n) => n.startsWith('.restore-'))).toEqual([]);
  });

  it('backs up into an existing empty folder', async () => {
    await mkdir(join(root, 'empty'));
    await expect(store.backup(join(root, 'empty'))).resolves.toMatchObject({ files: 4 });
  });

  it.each([
    ['the store itself', (r: string) => join(r, 'store'), /is inside the store folder/],
    [
      'a folder inside the store',
      (r: string) => join(r, 'store', 'sessions', 'bk'),
      /is inside the store folder/,
    ],
    ['a folder that contains the store', (r: string) => r, /contains the store folder/],
  ])('refuses to back up into %s', async (_label, destination, message) => {
    const before = await tree(dir);
    await expect(store.backup(destination(root))).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidBackupDestination,
      message: expect.stringMatching(message),
    });
    expect(await tree(dir)).toEqual(before);
    expect(errors[0]?.operation).toBe('backup');
  });

  it('refuses to back up into the store through a symbolic link, or to restore from it so', async () => {
    await symlink(dir, join(root, 'to-store'));
    await mkdir(join(root, 'outside'));
    await symlink(join(dir, 'sessions'), join(root, 'outside', 'to-sessions'));
    const before = await tree(dir);
    for (const destination of [
      join(root, 'to-store', 'bk'),
      join(root, 'outside', 'to-sessions', 'bk'),
    ]) {
      await expect(store.backup(destination)).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidBackupDestination,
        message: expect.stringContaining('is inside the store folder'),
      });
    }
    await expect(store.restore(join(root, 'outside', 'to-sessions'))).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidBackup,
      message: expect.stringContaining('it is the store folder, inside it, or contains it'),
    });
    expect(await tree(dir)).toEqual(before);
  });

  it('refuses a destination that already holds files, and leaves them alone', async () => {
    await mkdir(join(root, 'taken'));
    await writeFile(join(root, 'taken', 'precious.txt'), 'keep me');
    await expect(store.backup(join(root, 'taken'))).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidBackupDestination,
      message: expect.stringContaining('already holds files'),
    });
    expect(await tree(join(root, 'taken'))).toEqual({ 'precious.txt': 'keep me' });
    await writeFile(join(root, 'a-file'), 'x');
    await expect(store.backup(join(root, 'a-file'))).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidBackupDestination,
    });
  });

  it('a backup that cannot be written fails with IoFailed and leaves nothing behind', async () => {
    await writeFile(join(root, 'not-a-dir'), 'x');
    await expect(store.backup(join(root, 'not-a-dir', 'bk'))).rejects.toMatchObject({
      code: PersistenceErrorCode.IoFailed,
    });
    expect((await readdir(root)).sort()).toEqual(['not-a-dir', 'store']);
  });

  it('restores a plain copy of a store folder (no manifest)', async () => {
    const saved = dumpState(app);
    await cp(dir, join(root, 'copy'), { recursive: true });
    app.get(SessionManager).delete('sess-2');
    await saveToFiles(app);
    await store.restore(join(root, 'copy'));
    expect(dumpState(app)).toEqual(saved);
  });

  it('refuses a plain copy taken while saves were still in the journal, and says what to do', async () => {
    app.get(SessionManager).create({ id: 'only-in-journal' });
    await store.saveAll(); // committed to the journal, not yet in the item files
    await cp(dir, join(root, 'live-copy'), { recursive: true });
    const before = await tree(dir);
    await expect(store.restore(join(root, 'live-copy'))).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidBackup,
      message: expect.stringContaining(
        'call checkpoint() (or stop the application) before copying',
      ),
    });
    expect(await tree(dir)).toEqual(before);
  });

  describe('refuses a bad backup and changes nothing', () => {
    let backup: string;
    beforeEach(async () => {
      backup = join(root, 'bk');
      await store.backup(backup);
      app.get(SessionManager).create({ id: 'newer' });
      await saveToFiles(app);
    });

    const attempts: Array<[string, (b: string) => Promise<unknown>, RegExp]> = [
      [
        'a corrupt item file',
        (b) => writeFile(join(b, 'sessions', 'sess-1.json'), '{"id":'),
        /listed in the manifest|checksum/,
      ],
      [
        'an unknown folder',
        (b) => mkdir(join(b, 'strangers')),
        /"strangers", which is not a folder/,
      ],
      ['a stray file at the top', (b) => writeFile(join(b, 'notes.txt'), 'x'), /"notes.txt"/],
      [
        'a missing file',
        (b) => rename(join(b, 'focus', 'chain-1.json'), join(root, 'moved.json')),
        /listed in the manifest but missing/,
      ],
      [
        'an extra file',
        (b) =>
          writeFile(
            join(b, 'sessions', 'extra.json'),
            JSON.stringify({ id: 'extra', v: 1, data: {} }),
          ),
        /not listed in the manifest/,
      ],
      [
        'a symlink',
        (b) => symlink('/etc/passwd', join(b, 'sessions', 'link.json')),
        /"sessions\/link.json" is not an item file/,
      ],
      [
        'a broken manifest',
        (b) => writeFile(join(b, 'persistence-backup.json'), '{'),
        /not valid JSON/,
      ],
    ];

    it.each(attempts)('with %s', async (_label, damage, message) => {
      await damage(backup);
      const before = await tree(dir);
      const state = dumpState(app);
      await expect(store.restore(backup)).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidBackup,
        message: expect.stringMatching(message),
      });
      expect(await tree(dir)).toEqual(before);
      expect(dumpState(app)).toEqual(state);
      expect(errors.at(-1)?.operation).toBe('restore');
    });

    it('with a corrupt item file and no manifest, naming the file', async () => {
      await writeFile(join(backup, 'persistence-backup.json'), '');
      await removeDir(join(backup, 'persistence-backup.json'));
      await writeFile(join(backup, 'conversations', 'conv-1.json'), 'garbage');
      const before = await tree(dir);
      await expect(store.restore(backup)).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidBackup,
        message: expect.stringContaining('"conversations/conv-1.json" is not a valid item file'),
      });
      expect(await tree(dir)).toEqual(before);
    });

    it.each([
      ['a source that does not exist', (r: string) => join(r, 'nope'), /does not exist/],
      [
        'a file',
        (r: string) => join(r, 'store', 'sessions', 'sess-1.json'),
        /store folder|not a folder/,
      ],
      ['the store itself', (r: string) => join(r, 'store'), /store folder/],
    ])('from %s', async (_label, source, message) => {
      const before = await tree(dir);
      await expect(store.restore(source(root))).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidBackup,
        message: expect.stringMatching(message),
      });
      expect(await tree(dir)).toEqual(before);
    });
  });

  describe('an interrupted restore is finished or discarded at the next start', () => {
    const stage = async (committed: boolean, swappedAlready: string[]): Promise<void> => {
      // What swapInBackup leaves on disk when the process dies at a given step.
      const work = join(dir, '.restore-test');
      for (const collection of ['sessions', 'conversations', 'focus']) {
        if (swappedAlready.includes(collection)) continue;
        await cp(join(root, 'bk', collection), join(work, 'new', collection), { recursive: true });
      }
      if (committed) await writeFile(join(work, 'COMMIT'), 'now');
      for (const collection of swappedAlready) {
        await mkdir(join(work, 'old'), { recursive: true });
        await rename(join(dir, collection), join(work, 'old', collection));
        await cp(join(root, 'bk', collection), join(dir, collection), { recursive: true });
      }
    };

    let backupState: unknown;
    let newerState: unknown;
    beforeEach(async () => {
      backupState = dumpState(app);
      await store.backup(join(root, 'bk'));
      app.get(SessionManager).create({ id: 'newer' });
      app.get(MemoryManager).delete('conv-1');
      await saveToFiles(app);
      newerState = dumpState(app);
    });

    it('a committed restore cut off half-way through the swap completes', async () => {
      await stage(true, ['sessions']);
      await app.close();
      const next = await createApp({ path: dir, saveOnShutdown: false });
      expect(dumpState(next)).toEqual(backupState);
      expect((await readdir(dir)).filter((n) => n.startsWith('.restore-'))).toEqual([]);
      await next.close();
    });

    it('an uncommitted restore is discarded and the store keeps its state', async () => {
      await stage(false, []);
      await app.close();
      const next = await createApp({ path: dir, saveOnShutdown: false });
      expect(dumpState(next)).toEqual(newerState);
      expect((await readdir(dir)).filter((n) => n.startsWith('.restore-'))).toEqual([]);
      await next.close();
    });
  });
});
