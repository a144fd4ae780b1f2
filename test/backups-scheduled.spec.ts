import { INestApplication } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { link, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import {
  BackupContents,
  BackupEntry,
  BackupManifest,
  BackupTarget,
  PERSISTENCE_BACKUP_CRON,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
  StoredBackup,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { dumpState, saveToFiles, seedState } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const HOUR = 3_600_000;

/** Every file under a folder with its content, for "nothing changed" checks. */
async function tree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else out[relative(root, path)] = await readFile(path, 'utf8');
    }
  };
  await walk(root);
  return out;
}

/** Lets queued callbacks run, then waits until the store has no operation running or queued. */
async function idle(store: PersistenceStore): Promise<void> {
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  await settle();
  while ((store as unknown as { queue: { busy: boolean } }).queue.busy) await settle();
}

describe('backups into backups.directory', () => {
  let root: string;
  let dir: string;
  let backups: string;
  const apps: INestApplication[] = [];
  let errors: PersistenceErrorEvent[];

  const open = async (
    options: PersistenceModuleOptions = {},
    backupOptions: PersistenceModuleOptions['backups'] = {},
  ): Promise<{ app: INestApplication; store: PersistenceStore }> => {
    const app = await createApp({
      path: dir,
      saveOnShutdown: false,
      backups: { directory: backups, ...backupOptions },
      // The fake clock jumps an hour while real I/O runs: a lease shorter than that would see a
      // renewal that spans the jump as unconfirmed (as after a blocked event loop) and refuse writes.
      lock: { leaseMs: 48 * 3_600_000, renewMs: 3_600_000 },
      ...options,
    });
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
    jest.useRealTimers();
    await removeDir(root);
  });

  describe('on a schedule (cron, fake timers)', () => {
    beforeEach(() => {
      jest.useFakeTimers({
        doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'],
        now: new Date('2030-01-01T00:30:00.000Z'),
      });
    });

    it('takes one backup per cron tick under its documented name, and keeps the newest `keep`', async () => {
      const { app, store } = await open({}, { cron: '0 * * * *', keep: 3 });
      expect(app.get(SchedulerRegistry).doesExist('cron', PERSISTENCE_BACKUP_CRON)).toBe(true);
      seedState(app);
      await saveToFiles(app);

      await jest.advanceTimersByTimeAsync(HOUR / 2 - 1000); // 00:59:59: not yet
      await idle(store);
      expect(await store.listBackups()).toEqual([]);

      const seen: string[][] = [];
      for (let hour = 1; hour <= 5; hour++) {
        app.get(SessionManager).create({ id: `hour-${hour}` });
        await store.saveAll();
        await jest.advanceTimersByTimeAsync(HOUR);
        await idle(store);
        const list = await store.listBackups();
        seen.push(list.map((b) => b.id));
        expect(list).toHaveLength(Math.min(hour, 3));
        // Taken at the tick (hh:00, or while the clock ran on to hh:59:59), with the state saved then.
        expect(list[0].time.getTime()).toBeGreaterThanOrEqual(Date.UTC(2030, 0, 1, hour));
        expect(list[0].time.getTime()).toBeLessThan(Date.UTC(2030, 0, 1, hour + 1));
        const manifest = JSON.parse(
          await readFile(join(backups, list[0].id, 'persistence-backup.json'), 'utf8'),
        ) as BackupManifest;
        expect(manifest.files.map((f) => f.path)).toContain(`sessions/hour-${hour}.json`);
      }
      // Retention dropped the two oldest; the folder holds exactly the three listed.
      expect(seen[4]).toEqual([seen[4][0], seen[3][0], seen[2][0]]);
      expect((await readdir(backups)).sort()).toEqual([...seen[4]].sort());
      expect(errors).toEqual([]);
    });

    it('reports a failed scheduled backup as persistence.error (backup) and keeps the schedule', async () => {
      await writeFile(join(root, 'blocker'), 'a file where the backup folder should be');
      backups = join(root, 'blocker', 'backups');
      const { app, store } = await open({}, { cron: '0 * * * *' });
      seedState(app);
      await saveToFiles(app);
      await jest.advanceTimersByTimeAsync(HOUR);
      await idle(store);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({
        operation: 'backup',
        error: { code: PersistenceErrorCode.IoFailed },
      });
      // The application goes on: it saves, and the next tick succeeds once the path is usable.
      app.get(SessionManager).create({ id: 'after-failure' });
      await expect(store.saveAll()).resolves.toMatchObject({ changed: 1 });
      await rm(join(root, 'blocker'));
      await jest.advanceTimersByTimeAsync(HOUR);
      await idle(store);
      expect(await store.listBackups()).toHaveLength(1);
      expect(errors).toHaveLength(1);
    });

    it('never runs on a read-only store; a backup asked for there reads it without writing to it', async () => {
      const writer = await open();
      seedState(writer.app);
      await saveToFiles(writer.app);
      const reader = await createApp({
        path: dir,
        readOnly: true,
        backups: { directory: backups, cron: '* * * * *' },
      });
      apps.push(reader);
      expect(reader.get(SchedulerRegistry).doesExist('cron', PERSISTENCE_BACKUP_CRON)).toBe(false);
      await jest.advanceTimersByTimeAsync(3 * 60_000);
      await idle(reader.get(PersistenceStore));
      expect(await readdir(backups).catch(() => [])).toEqual([]);
      // Asked for, it is taken from a consistent read of the folder (the CLI's live backup).
      const before = await readdir(dir);
      const meta = await reader.get(PersistenceStore).backup();
      expect(await readdir(backups)).toEqual([meta.id]);
      expect(await readdir(dir)).toEqual(before);
    });
  });

  describe('differential backups', () => {
    let app: INestApplication;
    let store: PersistenceStore;
    beforeEach(async () => {
      ({ app, store } = await open({}, { keep: 5 }));
      seedState(app);
      await saveToFiles(app);
    });

    it('lists backups newest first with their sizes; the second shares unchanged files', async () => {
      const first = await store.backup();
      expect(first.id).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z-[0-9a-f]{8}$/);
      expect(first.path).toBe(join(backups, first.id!));
      app.get(SessionManager).update('sess-2', { status: 'completed' });
      await saveToFiles(app);
      const second = await store.backup();

      const changed = await stat(join(backups, second.id!, 'sessions', 'sess-2.json'));
      const list = await store.listBackups();
      expect(list.map((b) => b.id)).toEqual([second.id, first.id]);
      expect(second.id! > first.id!).toBe(true);
      const storeBytes = async (): Promise<number> => {
        let sum = 0;
        for (const name of ['sessions', 'conversations', 'focus']) {
          for (const file of await readdir(join(dir, name))) {
            sum += (await stat(join(dir, name, file))).size;
          }
        }
        return sum;
      };
      expect(list[0]).toMatchObject({
        files: 4,
        bytes: await storeBytes(),
        newBytes: changed.size, // only the changed session was written
        base: first.id,
        store: dir,
      });
      expect(list[1]).toMatchObject({ files: 4, base: null });
      expect(list[1].newBytes).toBe(list[1].bytes);
      expect(second).toMatchObject({ files: 4, size: list[0].bytes, newBytes: changed.size });

      // Unchanged files are one file with two names; the changed one is new.
      for (const file of [
        'sessions/sess-1.json',
        'conversations/conv-1.json',
        'focus/chain-1.json',
      ]) {
        const a = await stat(join(backups, first.id!, file));
        const b = await stat(join(backups, second.id!, file));
        expect(b.ino).toBe(a.ino);
        expect(b.nlink).toBe(2);
      }
      expect(changed.nlink).toBe(1);
      expect(changed.ino).not.toBe(
        (await stat(join(backups, first.id!, 'sessions/sess-2.json'))).ino,
      );
      // Shared (hard-linked) files of a backup this store made restore like any other.
      app.get(SessionManager).delete('sess-1');
      await saveToFiles(app);
      await expect(store.restore(second.id!)).resolves.toMatchObject({ files: 4 });
      expect(app.get(SessionManager).get('sess-1')).toBeDefined();
    });

    it('retention removes the older backup and the newer one still restores, in a fresh app', async () => {
      for (const app of apps.splice(0)) await app.close();
      ({ app, store } = await open({}, { keep: 1 }));
      const first = await store.backup();
      app.get(SessionManager).create({ id: 'in-second' });
      await saveToFiles(app);
      const inSecond = dumpState(app);
      const second = await store.backup();
      expect(second.newBytes).toBeLessThan(second.size);
      expect((await store.listBackups()).map((b) => b.id)).toEqual([second.id]);
      expect(await readdir(backups)).toEqual([second.id]);
      expect(first.id).not.toBe(second.id);
      expect((await stat(join(backups, second.id!, 'sessions', 'sess-1.json'))).nlink).toBe(1);

      app.get(SessionManager).delete('sess-1');
      app.get(SessionManager).create({ id: 'later' });
      await saveToFiles(app);
      for (const app of apps.splice(0)) await app.close();

      const fresh = await open();
      expect(fresh.app.get(SessionManager).get('later')).toBeDefined();
      const restored = await fresh.store.restore(second.id!);
      expect(restored).toMatchObject({ source: join(backups, second.id!), files: 5 });
      expect(dumpState(fresh.app)).toEqual(inSecond);
      for (const app of apps.splice(0)) await app.close();
      const after = await open();
      expect(dumpState(after.app)).toEqual(inSecond);
      // The folder path of a backup in backups.directory is accepted too (its files are links).
      await expect(after.store.restore(join(backups, second.id!))).resolves.toMatchObject({
        files: 5,
      });
      expect(errors).toEqual([]);
    });

    describe('a tampered differential backup is refused and nothing changes', () => {
      let older: string;
      let newer: string;
      beforeEach(async () => {
        older = (await store.backup()).id!;
        app.get(SessionManager).create({ id: 'newer' });
        await saveToFiles(app);
        newer = (await store.backup()).id!;
        app.get(SessionManager).create({ id: 'current' });
        await saveToFiles(app);
      });

      const cases: Array<[string, (b: string, o: string) => Promise<unknown>, RegExp]> = [
        [
          'a shared file changed',
          (b) => writeFile(join(b, 'focus', 'chain-1.json'), '{"id":"chain-1","v":1,"data":{}}'),
          /"focus\/chain-1.json" does not match its checksum/,
        ],
        [
          'an extra hard-linked file not in the manifest',
          async (b, o) => link(join(o, 'sessions', 'sess-1.json'), join(b, 'sessions', 'x.json')),
          /"sessions\/x.json" cannot be restored: it is a hard link/,
        ],
        [
          'a file missing',
          (b) => rm(join(b, 'sessions', 'newer.json')),
          /"sessions\/newer.json" is listed in the manifest but missing/,
        ],
        [
          'a manifest naming another backup',
          async (b) => {
            const path = join(b, 'persistence-backup.json');
            const manifest = JSON.parse(await readFile(path, 'utf8')) as BackupManifest;
            await writeFile(path, JSON.stringify({ ...manifest, id: 'someone-else' }));
          },
          /manifest persistence-backup.json names another backup/,
        ],
      ];

      it.each(cases)('with %s', async (_label, damage, message) => {
        await damage(join(backups, newer), join(backups, older));
        const before = await tree(dir);
        const state = dumpState(app);
        await expect(store.restore(newer)).rejects.toMatchObject({
          code: PersistenceErrorCode.InvalidBackup,
          message: expect.stringMatching(message),
        });
        expect(await tree(dir)).toEqual(before);
        expect(dumpState(app)).toEqual(state);
        expect(errors.at(-1)?.operation).toBe('restore');
      });
    });

    it('retention never removes what this store did not write', async () => {
      for (const app of apps.splice(0)) await app.close();
      ({ app, store } = await open({}, { keep: 1 }));
      const id = (n: number): string => `2000-01-01T00-00-00-00${n}Z-0000000${n}`;
      const foreign = {
        [`${id(1)}/persistence-backup.json`]: JSON.stringify({
          version: 1,
          createdAt: '2000-01-01T00:00:00.001Z',
          collections: [],
          files: [],
          id: id(1),
          store: '/another/store',
        }),
        [`${id(2)}/notes.txt`]: 'named like a backup, but no manifest',
        ['manual-copy/persistence-backup.json']: '{"version":1,"files":[]}',
        ['README.txt']: 'mine',
      };
      for (const [path, content] of Object.entries(foreign)) {
        await mkdir(join(backups, path, '..'), { recursive: true });
        await writeFile(join(backups, path), content);
      }
      await store.backup();
      await store.backup();
      const last = await store.backup();
      expect((await store.listBackups()).map((b) => [b.id, b.store]).sort()).toEqual(
        [
          [id(1), '/another/store'],
          [last.id, dir],
        ].sort(),
      );
      expect(await tree(backups)).toMatchObject(foreign);
      expect((await readdir(backups)).sort()).toEqual(
        [id(1), id(2), 'manual-copy', 'README.txt', last.id].sort(),
      );
    });
  });

  it('backup() without a path needs backups.directory', async () => {
    const app = await createApp({ path: dir, saveOnShutdown: false });
    apps.push(app);
    await expect(app.get(PersistenceStore).backup()).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidBackupDestination,
      message: expect.stringContaining('backups.directory'),
    });
    expect(await app.get(PersistenceStore).listBackups()).toEqual([]);
  });

  it.each([
    ['a directory inside the store', () => ({ directory: join(dir, 'bk') }), 'backups.directory'],
    ['a directory holding the store', () => ({ directory: root }), 'backups.directory'],
    ['a bad cron expression', () => ({ directory: backups, cron: 'every day' }), 'backups.cron'],
    ['keep 0', () => ({ directory: backups, keep: 0 }), 'backups.keep'],
    ['no directory and no target', () => ({}), 'backups.directory'],
  ])('refuses %s', async (_label, backupsOption, option) => {
    await expect(createApp({ path: dir, backups: backupsOption() })).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidOptions,
      message: expect.stringContaining(`"${option}"`),
    });
  });

  it('refuses a backups.directory that is inside the store, or holds it, through a symbolic link', async () => {
    await mkdir(dir, { recursive: true });
    await mkdir(join(root, 'outside'));
    await symlink(dir, join(root, 'to-store'));
    await symlink(root, join(root, 'outside', 'to-root'));
    for (const directory of [
      join(root, 'to-store', 'bk'),
      join(root, 'to-store'),
      join(root, 'outside', 'to-root'),
    ]) {
      await expect(createApp({ path: dir, backups: { directory } })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidOptions,
        message: expect.stringContaining('"backups.directory"'),
      });
    }
    expect(await readdir(dir)).toEqual([]); // nothing was opened
  });

  it('writes to, lists, restores from and prunes a BackupTarget of your own', async () => {
    /** A target that keeps backups in memory, as a cloud one would keep objects. */
    class MemoryTarget implements BackupTarget {
      readonly targetVersion = 1;
      readonly location = 'memory://backups';
      readonly held = new Map<string, BackupContents>();
      async list(): Promise<StoredBackup[]> {
        return [...this.held].map(([id, b]) => ({ id, manifest: b.manifest }));
      }
      async write(
        id: string,
        header: Omit<BackupManifest, 'files' | 'newBytes'>,
        entries: AsyncIterable<BackupEntry>,
      ): Promise<BackupManifest> {
        const files: BackupContents['files'] = [];
        const manifest: BackupManifest = { ...header, files: [], newBytes: 0 };
        for await (const entry of entries) {
          files.push({ path: entry.path, data: Buffer.from(entry.data) });
          manifest.files.push({ path: entry.path, size: entry.data.length, sha256: entry.sha256 });
          manifest.newBytes! += entry.data.length;
        }
        this.held.set(id, { manifest, files });
        return manifest;
      }
      async read(id: string): Promise<BackupContents> {
        const backup = this.held.get(id);
        if (!backup) throw new Error(`no backup ${id}`);
        return backup;
      }
      async remove(id: string): Promise<void> {
        this.held.delete(id);
      }
    }
    const target = new MemoryTarget();
    const { app, store } = await open({}, { directory: undefined, target, keep: 2 });
    seedState(app);
    await saveToFiles(app);
    const saved = dumpState(app);
    const first = await store.backup();
    expect(first).toMatchObject({ path: `memory://backups/${first.id}`, files: 4 });
    await store.backup();
    await store.backup();
    expect([...target.held.keys()]).not.toContain(first.id);
    const [newest] = await store.listBackups();
    expect(target.held.size).toBe(2);

    app.get(SessionManager).delete('sess-1');
    await saveToFiles(app);
    await store.restore(newest.id);
    expect(dumpState(app)).toEqual(saved);

    // What the target hands back is checked like a folder: an altered file is refused.
    target.held.get(newest.id)!.files[0].data = Buffer.from('{}');
    await expect(store.restore(newest.id)).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidBackup,
      message: expect.stringContaining('does not match its checksum'),
    });
    expect(await readdir(root)).toEqual(['store']); // nothing written locally
  });
});
