import { INestApplication } from '@nestjs/common';
import { execFileSync } from 'node:child_process';
import {
  chmod,
  link,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import {
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceModuleOptions,
  PersistenceStore,
  QUARANTINE_DIR,
  SessionManager,
} from 'nestjs-persistence';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { seedState, saveToFiles } from './fixtures/state';
import { itOrSkip, mknodProblem } from './fixtures/preconditions';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const noMknod = mknodProblem();

const sessionFile = (id: string, data: Record<string, unknown> = {}): string =>
  JSON.stringify({
    id,
    v: 1,
    data: {
      id,
      status: 'active',
      createdAt: new Date(0).toISOString(),
      updatedAt: new Date(0).toISOString(),
      metadata: {},
      ...data,
    },
  });

describe('hostile input', () => {
  let root: string;
  let dir: string;
  const apps: INestApplication[] = [];
  let errors: PersistenceErrorEvent[];
  const open = async (
    options: PersistenceModuleOptions = {},
    logger?: RecordingLogger,
  ): Promise<INestApplication> => {
    for (const previous of apps.splice(0)) await previous.close(); // one writer per folder
    const app = await createApp({ path: dir, saveOnShutdown: false, ...options }, { logger });
    app.get(PersistenceStore).onError((e) => errors.push(e));
    apps.push(app);
    return app;
  };
  beforeEach(async () => {
    root = await makeTempDir();
    dir = join(root, 'store');
    errors = [];
    await mkdir(join(dir, 'sessions'), { recursive: true });
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(root);
  });

  describe('parsing', () => {
    it('a file with __proto__ and constructor.prototype keys cannot pollute prototypes', async () => {
      const payload =
        '{"id":"evil","v":1,"data":{"id":"evil","status":"active","createdAt":"2026-01-01T00:00:00.000Z",' +
        '"updatedAt":"2026-01-01T00:00:00.000Z","metadata":{"__proto__":{"polluted":"yes"},' +
        '"constructor":{"prototype":{"polluted2":"yes"}}},"__proto__":{"polluted3":"yes"}},' +
        '"__proto__":{"polluted4":"yes"}}';
      await writeFile(join(dir, 'sessions', 'evil.json'), payload);
      const app = await open();
      const sessions = app.get(SessionManager);
      const evil = sessions.get('evil');
      expect(evil).toBeDefined();
      sessions.update('evil', { status: 'x' });
      await saveToFiles(app);
      await app.get(PersistenceStore).loadAll();
      const probe = {} as Record<string, unknown>;
      expect([probe.polluted, probe.polluted2, probe.polluted3, probe.polluted4]).toEqual([
        undefined,
        undefined,
        undefined,
        undefined,
      ]);
      expect(Object.prototype).not.toHaveProperty('polluted');
      // The key is kept as ordinary data, not lost.
      expect(Object.keys(sessions.get('evil')!.metadata)).toEqual(['__proto__', 'constructor']);
    });

    it('rejects a gzip bomb by its inflated size and quarantines it', async () => {
      const bomb = await promisify(gzip)(Buffer.alloc(8 * 1024 * 1024, 0x20)); // 8 MiB of spaces, ~8 KiB
      expect(bomb.length).toBeLessThan(64 * 1024);
      await writeFile(join(dir, 'sessions', 'bomb.json.gz'), bomb);
      await writeFile(join(dir, 'sessions', 'fine.json'), sessionFile('fine'));
      const app = await open({ limits: { maxInflatedBytes: 1024 * 1024 } });
      await app.get(PersistenceStore).loadAll(); // the boot load quarantined it; nothing left to report
      expect(
        app
          .get(SessionManager)
          .list()
          .map((s) => s.id),
      ).toEqual(['fine']);
      const quarantined = await readdir(join(dir, QUARANTINE_DIR, 'sessions'));
      expect(quarantined).toEqual([expect.stringMatching(/-bomb\.json\.gz$/)]);
    });

    it('does not read a file over limits.maxFileBytes; it is quarantined with the limit in the error', async () => {
      await writeFile(
        join(dir, 'sessions', 'huge.json'),
        sessionFile('huge', { metadata: { pad: 'x'.repeat(4096) } }),
      );
      await writeFile(join(dir, 'sessions', 'fine.json'), sessionFile('fine'));
      const logger = new RecordingLogger();
      const app = await open({ limits: { maxFileBytes: 2048 } }, logger);
      expect(
        app
          .get(SessionManager)
          .list()
          .map((s) => s.id),
      ).toEqual(['fine']);
      expect(logger.lines.join('\n')).toMatch(
        /huge\.json: it is \d+ bytes, more than limits\.maxFileBytes \(2048\)/,
      );
      expect(await readdir(join(dir, QUARANTINE_DIR, 'sessions'))).toHaveLength(1);
    });

    it('ignores symlinks, FIFOs and folders planted among the item files, and never removes them', async () => {
      await writeFile(join(root, 'outside.json'), sessionFile('outside'));
      await symlink(join(root, 'outside.json'), join(dir, 'sessions', 'outside.json'));
      execFileSync('mkfifo', [join(dir, 'sessions', 'pipe.json')]);
      const app = await open();
      seedState(app);
      await saveToFiles(app);
      await app.get(PersistenceStore).loadAll(); // would hang on the FIFO if it were opened for reading
      expect(app.get(SessionManager).get('outside')).toBeUndefined();
      const names = await readdir(join(dir, 'sessions'));
      expect(names).toEqual(expect.arrayContaining(['outside.json', 'pipe.json', 'sess-1.json']));
      expect(await readFile(join(root, 'outside.json'), 'utf8')).toBe(sessionFile('outside'));
    });
  });

  describe('hostile backups are refused before anything changes', () => {
    let backup: string;
    let before: string[];
    beforeEach(async () => {
      const app = await open();
      seedState(app);
      await saveToFiles(app);
      backup = join(root, 'backup');
      await app.get(PersistenceStore).backup(backup);
      await rm(join(backup, 'persistence-backup.json')); // without a manifest, only shape checks apply
      app.get(SessionManager).create({ id: 'current' });
      await saveToFiles(app);
      before = (await readdir(join(dir, 'sessions'))).sort();
    });

    const refuse = async (message: RegExp): Promise<void> => {
      const store = apps[0].get(PersistenceStore);
      await expect(store.restore(backup)).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidBackup,
        message: expect.stringMatching(message),
      });
      expect((await readdir(join(dir, 'sessions'))).sort()).toEqual(before);
      expect(apps[0].get(SessionManager).get('current')).toBeDefined();
    };

    it('a symlink to a file outside', async () => {
      await writeFile(join(root, 'target.json'), sessionFile('target'));
      await symlink(join(root, 'target.json'), join(backup, 'sessions', 'target.json'));
      await refuse(/"sessions\/target.json" is not an item file/);
    });

    it('a symlink in place of an adapter folder', async () => {
      execFileSync('rm', ['-r', join(backup, 'focus')]);
      await mkdir(join(root, 'elsewhere'));
      await symlink(join(root, 'elsewhere'), join(backup, 'focus'));
      await refuse(/"focus", which is not a folder/);
    });

    it('a hard link', async () => {
      await link(join(backup, 'sessions', 'sess-1.json'), join(root, 'hardlink.json'));
      await refuse(/"sessions\/sess-1.json" cannot be restored: it is a hard link/);
    });

    it('a FIFO', async () => {
      execFileSync('mkfifo', [join(backup, 'sessions', 'fifo.json')]);
      await refuse(/"sessions\/fifo.json" is not an item file/);
    });

    // mknod needs CAP_MKNOD; without it a device file cannot be planted, so there is nothing to refuse.
    itOrSkip(noMknod)('a device file', async () => {
      execFileSync('mknod', [join(backup, 'sessions', 'null.json'), 'c', '1', '3']);
      await refuse(/"sessions\/null.json" is not an item file/);
    });

    it('odd file names that are not item files', async () => {
      await writeFile(join(backup, 'sessions', 'notes.txt'), 'x');
      await refuse(/"sessions\/notes.txt" is not an item file/);
    });

    it('an item file whose name does not match the id inside', async () => {
      await writeFile(join(backup, 'sessions', 'renamed.json'), sessionFile('someone-else'));
      await refuse(/"sessions\/renamed.json" is not a valid item file \(the id inside/);
    });

    it('a backup nested inside the store', async () => {
      await expect(
        apps[0].get(PersistenceStore).restore(join(dir, 'sessions')),
      ).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidBackup,
      });
    });
  });

  describe('permissions', () => {
    it('writes files and folders with the configured modes', async () => {
      const app = await open({ path: join(root, 'shared'), fileMode: 0o640, dirMode: 0o750 });
      seedState(app);
      await saveToFiles(app);
      expect((await stat(join(root, 'shared'))).mode & 0o777).toBe(0o750);
      expect((await stat(join(root, 'shared', 'sessions', 'sess-1.json'))).mode & 0o777).toBe(
        0o640,
      );
    });

    it('warns at start-up about a store folder other users can write', async () => {
      await chmod(dir, 0o777);
      const logger = new RecordingLogger();
      await open({}, logger);
      expect(logger.lines).toContainEqual(
        expect.stringMatching(/^warn The store folder .* can be written by other users/),
      );
      const quiet = new RecordingLogger();
      await chmod(dir, 0o700);
      await open({}, quiet);
      expect(quiet.lines.filter((l) => l.includes('other users'))).toEqual([]);
    });

    it('rejects modes that lock the owner out', async () => {
      await expect(open({ fileMode: 0o400 })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidOptions,
        message: expect.stringContaining('"fileMode"'),
      });
      await expect(open({ dirMode: 0o600 })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidOptions,
      });
    });
  });

  describe('options and API misuse', () => {
    it('rejects a relative path that escapes the working directory', async () => {
      await expect(open({ path: '../../outside' })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidOptions,
        message: expect.stringContaining('must stay inside the working directory'),
      });
    });

    it('rejects bad limits', async () => {
      await expect(open({ limits: { maxFileBytes: 0 } })).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidOptions,
        message: expect.stringContaining('"limits.maxFileBytes"'),
      });
    });

    it('restore() while a save runs waits for it, then restores', async () => {
      const app = await open();
      seedState(app);
      const store = app.get(PersistenceStore);
      await store.saveAll();
      await store.backup(join(root, 'bk'));
      app.get(SessionManager).create({ id: 'later' });
      const [save, restore] = await Promise.all([store.saveAll(), store.restore(join(root, 'bk'))]);
      expect(save.items).toBe(5);
      expect(restore.load.items).toBe(4);
      expect(app.get(SessionManager).get('later')).toBeUndefined();
    });

    it('calls before init and after close fail with STORE_CLOSED', async () => {
      const app = await open();
      const store = app.get(PersistenceStore);
      await app.close();
      apps.length = 0;
      for (const call of [
        () => store.loadAll(),
        () => store.clear(),
        () => store.backup(join(root, 'x')),
        () => store.restore(join(root, 'x')),
      ]) {
        await expect(call()).rejects.toMatchObject({ code: PersistenceErrorCode.StoreClosed });
      }
    });
  });
});
