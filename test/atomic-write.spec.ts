import { INestApplication } from '@nestjs/common';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PersistenceStore, SessionManager } from 'nestjs-persistence';
import { atomicWrite, isTempFileName } from '../lib/storage/atomic-write';
import { NodeFileSystem } from '../lib/storage/node-file-system';

const fs = new NodeFileSystem();
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

describe('atomic writes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it('replaces the target whole and leaves no temporary file', async () => {
    const target = join(dir, 'item.json');
    await writeFile(target, 'old');
    await atomicWrite(fs, target, Buffer.from('new content'));
    expect(await readFile(target, 'utf8')).toBe('new content');
    expect(await readdir(dir)).toEqual(['item.json']);
  });

  it('creates files readable and writable by the owner only', async () => {
    const target = join(dir, 'secret.json');
    await atomicWrite(fs, target, Buffer.from('{}'));
    expect((await stat(target)).mode & 0o777).toBe(0o600);
  });

  it('a write that fails keeps the old file and removes its temporary file', async () => {
    const target = join(dir, 'item.json');
    await mkdir(target); // rename() of a file over a folder fails
    await expect(atomicWrite(fs, target, Buffer.from('x'))).rejects.toMatchObject({
      code: 'EISDIR',
      syscall: 'rename',
      dest: target,
    });
    expect(await readdir(dir)).toEqual(['item.json']);
    expect((await stat(target)).isDirectory()).toBe(true);
  });

  it('recognises its own temporary file names only', () => {
    expect(isTempFileName('.item.json.a1b2c3d4e5f6.tmp')).toBe(true);
    expect(isTempFileName('item.json')).toBe(false);
    expect(isTempFileName('.hidden')).toBe(false);
    expect(isTempFileName('notes.tmp')).toBe(false);
  });

  describe('in the store', () => {
    let app: INestApplication | undefined;
    afterEach(async () => {
      await app?.close();
      app = undefined;
    });

    it('removes temporary files left by a crash at start-up, keeping every item', async () => {
      const first = await createApp({ path: dir });
      first.get(SessionManager).create({ id: 'kept' });
      await first.close();
      // What a process killed between write and rename leaves behind.
      await writeFile(
        join(dir, 'sessions', '.kept.json.0123456789ab.tmp'),
        '{"id":"kept","v":1,"da',
      );
      await writeFile(join(dir, '.stray.0123456789ab.tmp'), 'x');
      app = await createApp({ path: dir });
      expect(await readdir(join(dir, 'sessions'))).toEqual(['kept.json']);
      expect((await readdir(dir)).filter(isTempFileName)).toEqual([]);
      expect(app.get(SessionManager).get('kept')).toBeDefined();
    });

    it('the store folder is created owner-only (0700)', async () => {
      app = await createApp({ path: join(dir, 'fresh') });
      await app.get(PersistenceStore).saveAll();
      expect((await stat(join(dir, 'fresh'))).mode & 0o777).toBe(0o700);
      expect((await stat(join(dir, 'fresh', 'sessions'))).mode & 0o777).toBe(0o700);
    });
  });
});
