import { INestApplication } from '@nestjs/common';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { ChildApp } from './fixtures/child-process';
import { itOrSkip, mountProblem, permissionCheckedPrefix } from './fixtures/preconditions';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Real faults, each produced for real: a full disk (a 512 KiB tmpfs), permission denied (a child
 * process subject to permission checks, writing into a folder of mode 0500: an ordinary user, or
 * root with its capabilities dropped by setpriv), too many open files (a child with `ulimit -n
 * 100`), and the store folder removed while the application runs. Each must give a persistence.error with a clear message,
 * keep the last committed snapshot loadable and the in-memory state intact, and let the next save
 * succeed once the fault is cleared.
 */

const ids = (app: INestApplication): string[] =>
  app
    .get(SessionManager)
    .list()
    .map((s) => `${s.id}:${s.status}`)
    .sort();

const noMount = mountProblem();
const permissionChecked = permissionCheckedPrefix();

describe('real faults', () => {
  let root: string;
  beforeEach(async () => {
    root = await makeTempDir();
  });
  afterEach(async () => {
    await removeDir(root);
  });

  itOrSkip(noMount)(
    'disk full (ENOSPC): the commit fails cleanly, nothing committed is lost, and the save succeeds once there is room',
    async () => {
      const disk = join(root, 'disk');
      await mkdir(disk);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', disk]);
      const apps: INestApplication[] = [];
      try {
        const path = join(disk, 'store');
        let app = await createApp({ path, saveOnShutdown: false });
        apps.push(app);
        const errors: PersistenceErrorEvent[] = [];
        app.get(PersistenceStore).onError((e) => errors.push(e));
        const sessions = app.get(SessionManager);
        for (let i = 0; i < 3; i++) sessions.create({ id: `s${i}` });
        await app.get(PersistenceStore).saveAll();
        const committed = ids(app);
        sessions.create({ id: 'huge', metadata: { blob: 'x'.repeat(1024 * 1024) } });
        sessions.update('s0', { status: 'changed' });
        const failure = (await app
          .get(PersistenceStore)
          .saveAll()
          .catch((e: unknown) => e)) as Error;
        expect(failure).toMatchObject({ code: PersistenceErrorCode.IoFailed });
        expect(failure.message).toMatch(
          /Could not commit the save to .*\.journal: .*ENOSPC: no space left.*free space/,
        );
        expect(errors.map((e) => e.error.code)).toEqual([PersistenceErrorCode.IoFailed]);
        expect(ids(app)).toContain('huge:active'); // memory kept
        await app.close();
        apps.length = 0;

        app = await createApp({ path, saveOnShutdown: false });
        apps.push(app);
        expect(ids(app)).toEqual(committed); // the last committed snapshot, intact
        app.get(SessionManager).create({ id: 'huge', metadata: { blob: 'x'.repeat(1024 * 1024) } });
        execFileSync('mount', ['-o', 'remount,size=8m', disk]); // the fault is cleared
        await expect(app.get(PersistenceStore).saveAll()).resolves.toMatchObject({ changed: 1 });
        await app.close();
        apps.length = 0;
        app = await createApp({ path, saveOnShutdown: false });
        apps.push(app);
        expect(ids(app)).toContain('huge:active');
      } finally {
        for (const app of apps) await app.close();
        execFileSync('umount', [disk]);
      }
    },
    30_000,
  );

  itOrSkip('problem' in permissionChecked ? permissionChecked.problem : undefined)(
    'permission denied (EACCES, subject to permission checks): reported, memory kept, the commit waits in the journal',
    async () => {
      const steps = await runFault(
        { PERSISTENCE_PATH: join(root, 'store'), FAULT: 'eacces' },
        'prefix' in permissionChecked ? permissionChecked.prefix : [],
      );
      expect(steps['save-a']).toEqual({ ok: true, events: [] });
      expect(steps['save-b']).toEqual({ ok: true, events: [] }); // committed to the journal
      expect(steps['checkpoint-denied']).toMatchObject({
        ok: false,
        code: PersistenceErrorCode.IoFailed,
      });
      expect(steps['checkpoint-denied'].message).toMatch(
        /EACCES: permission denied.*Check that the folder exists, is writable/,
      );
      expect(steps['checkpoint-denied'].events).toHaveLength(1);
      expect(steps.memory).toEqual(['s-new:active', 's0:changed', 's1:active', 's2:active']);
      expect(steps['checkpoint-allowed']).toEqual({ ok: true, events: [] });
      expect(steps.reloaded).toEqual(['s-new:active', 's0:changed', 's1:active', 's2:active']);
      expect(steps['start-read-only-folder']).toMatchObject({
        ok: false,
        code: PersistenceErrorCode.IoFailed,
      });
      expect(steps['start-read-only-folder'].message).toMatch(/Could not lock .*EACCES/);
    },
    30_000,
  );

  it('too many open files (EMFILE): the checkpoint fails and is retried; nothing is lost', async () => {
    const steps = await runFault({ PERSISTENCE_PATH: join(root, 'store'), FAULT: 'emfile' }, [
      'bash',
      '-c',
      'ulimit -n 100 && exec "$0" "$@"',
    ]);
    expect(steps.exhausted).toMatchObject({ code: 'EMFILE' });
    expect(steps['save-b']).toEqual({ ok: true, events: [] });
    expect(steps['checkpoint-emfile']).toMatchObject({
      ok: false,
      code: PersistenceErrorCode.IoFailed,
    });
    expect(steps['checkpoint-emfile'].message).toMatch(/EMFILE: too many open files/);
    expect(steps['checkpoint-after']).toEqual({ ok: true, events: [] });
    expect(steps.reloaded).toHaveLength(40);
    expect(steps.reloaded).toContain('s0:changed');
  }, 30_000);

  it('store folder removed while running: a clear error, memory kept, and the next save writes everything again', async () => {
    const path = join(root, 'store');
    let app = await createApp({ path, saveOnShutdown: false });
    const errors: PersistenceErrorEvent[] = [];
    app.get(PersistenceStore).onError((e) => errors.push(e));
    const sessions = app.get(SessionManager);
    sessions.create({ id: 'a' });
    sessions.create({ id: 'b' });
    await app.get(PersistenceStore).saveAll();
    await rm(path, { recursive: true, force: true });
    sessions.create({ id: 'c' });
    await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.IoFailed,
      message: expect.stringContaining('was removed while the application ran'),
    });
    expect(errors).toHaveLength(1);
    expect(ids(app)).toEqual(['a:active', 'b:active', 'c:active']);
    await expect(app.get(PersistenceStore).saveAll()).resolves.toMatchObject({
      items: 3,
      changed: 3,
    });
    await app.close();
    app = await createApp({ path, saveOnShutdown: false });
    expect(ids(app)).toEqual(['a:active', 'b:active', 'c:active']);
    expect((await readdir(path)).sort()).toEqual([
      '.journal',
      '.lock',
      'conversations',
      'focus',
      'sessions',
    ]);
    await app.close();
  });
});

describe('shutdown under faults', () => {
  it('a save on shutdown that fails (folder removed) is logged and emitted, and shutdown completes', async () => {
    const root = await makeTempDir();
    try {
      const app = await createApp({ path: join(root, 'store') });
      const errors: PersistenceErrorEvent[] = [];
      app.get(PersistenceStore).onError((e) => errors.push(e));
      app.get(SessionManager).create({ id: 'unsaved' });
      await rm(join(root, 'store'), { recursive: true, force: true });
      await expect(app.close()).resolves.toBeUndefined();
      expect(errors.map((e) => e.operation)).toContain('shutdown');
      expect(errors[0].error.message).toContain('was removed while the application ran');
    } finally {
      await removeDir(root);
    }
  });
});

/** Runs the fault fixture under a wrapper command and collects its `STEP name json` lines. */
async function runFault(
  env: Record<string, string>,
  wrapper: string[],
): Promise<
  Record<
    string,
    { ok?: boolean; code?: string; message: string; events: string[] } & Record<string, unknown>
  >
> {
  const child = new ChildApp('test/fixtures/fault.main.ts', env, wrapper);
  await child.waitFor(/^STEP (done|crashed) /, 25_000);
  await child.exited;
  const steps: Record<string, never> = {};
  for (const line of child.lines) {
    const match = /^STEP (\S+) (.*)$/.exec(line);
    if (match) (steps as Record<string, unknown>)[match[1]] = JSON.parse(match[2]);
  }
  expect(Object.keys(steps)).toContain('done');
  return steps;
}
