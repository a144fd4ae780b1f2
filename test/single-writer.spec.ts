import { INestApplication } from '@nestjs/common';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PersistenceErrorCode, PersistenceStore, SessionManager } from 'nestjs-persistence';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { ChildApp } from './fixtures/child-process';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * One writer per store folder, with two real processes: the sample application holds the folder;
 * this test process is the second one (another replica, or a CLI while the app runs).
 */
describe('one writer per store (two real processes)', () => {
  let dir: string;
  let holder: ChildApp | undefined;
  const apps: INestApplication[] = [];
  beforeEach(async () => {
    dir = join(await makeTempDir(), 'store');
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    holder?.kill('SIGKILL');
    await holder?.exited;
    await removeDir(join(dir, '..'));
  });

  const startHolder = async (action = 'create'): Promise<ChildApp> => {
    holder = new ChildApp('sample/000-assistant-app/src/main.ts', {
      PERSISTENCE_PATH: dir,
      SAMPLE_ACTION: action,
    });
    await holder.waitFor('READY');
    return holder;
  };

  it('a second writer gets a clear error naming the owner, and changes nothing', async () => {
    const owner = await startHolder();
    const error = (await createApp({ path: dir }).catch((e: unknown) => e)) as Error & {
      code: string;
    };
    expect(error.code).toBe(PersistenceErrorCode.StoreLocked);
    expect(error.message).toContain(`in use by process ${owner.child.pid} on ${hostname()}`);
    expect(error.message).toContain('readOnly: true');
    // The owner still saves normally afterwards.
    owner.kill('SIGTERM');
    expect((await owner.exited).signal).toBe('SIGTERM');
    const app = await createApp({ path: dir });
    apps.push(app);
    expect(app.get(SessionManager).list()).toHaveLength(2);
  }, 30_000);

  it('a reader opens read-only while the owner runs, sees committed saves, and cannot write', async () => {
    const owner = await startHolder();
    owner.kill('SIGINT'); // saves on shutdown...
    await owner.exited;
    await startHolder(''); // ...and a new owner holds the folder again
    const reader = await createApp(
      { path: dir, readOnly: true, autoSave: false },
      { schedule: false },
    );
    apps.push(reader);
    expect(
      reader
        .get(SessionManager)
        .list()
        .map((s) => s.id)
        .sort(),
    ).toEqual(['session-ada', 'session-grace']);
    await expect(reader.get(PersistenceStore).saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.ReadOnly,
    });
    await expect(reader.get(PersistenceStore).clear()).rejects.toMatchObject({
      code: PersistenceErrorCode.ReadOnly,
    });
  }, 30_000);

  it('a lock left by a process that died is taken over, and logged', async () => {
    const owner = await startHolder();
    owner.kill('SIGKILL');
    await owner.exited;
    const logger = new RecordingLogger();
    const app = await createApp({ path: dir }, { logger });
    apps.push(app);
    expect(logger.lines).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^warn Took over the lock of .* from process ${owner.child.pid} on ${hostname()}, which is no longer running`,
        ),
      ),
    );
  }, 30_000);

  it('a container on another host: refused while the owner renews; takes over once it died and its lease ran out', async () => {
    const lease = { leaseMs: 1500, renewMs: 300 };
    holder = new ChildApp('test/fixtures/lock-holder.main.ts', {
      PERSISTENCE_PATH: dir,
      PERSISTENCE_LOCK: JSON.stringify({ ...lease, host: 'pod-old' }),
    });
    await holder.waitFor('READY');
    const options = { path: dir, lock: { ...lease, host: 'pod-new' } };
    // Alive and renewing: a start on another host is refused once it has seen a renewal.
    await expect(createApp(options)).rejects.toMatchObject({
      code: PersistenceErrorCode.StoreLocked,
      message: expect.stringContaining(
        `in use by process ${holder.child.pid} on pod-old`,
      ) as unknown,
    });
    // Killed (an unclean exit: the lock stays): the next start takes it over after the lease.
    holder.kill('SIGKILL');
    await holder.exited;
    const logger = new RecordingLogger();
    const app = await createApp(options, { logger });
    apps.push(app);
    expect(logger.lines).toContainEqual(
      `warn Took over the lock of ${dir} from process ${holder.child.pid} on pod-old, which did not renew it for 1500 ms (lock.leaseMs).`,
    );
    expect(app.get(SessionManager).get('held')).toBeDefined();
  }, 30_000);

  it('a read-only store also sees saves still in the journal (not yet checkpointed)', async () => {
    const writer = await createApp({ path: dir, checkpointBytes: Number.MAX_SAFE_INTEGER });
    apps.push(writer);
    writer.get(SessionManager).create({ id: 'in-journal' });
    await writer.get(PersistenceStore).saveAll();
    const reader = await createApp({ path: dir, readOnly: true });
    apps.push(reader);
    expect(reader.get(SessionManager).get('in-journal')).toBeDefined();
    writer.get(SessionManager).delete('in-journal');
    await writer.get(PersistenceStore).saveAll();
    await reader.get(PersistenceStore).loadAll();
    expect(reader.get(SessionManager).list()).toEqual([]);
  });

  it('two stores in one process cannot share a folder either', async () => {
    const first = await createApp({ path: dir });
    apps.push(first);
    await expect(createApp({ path: dir })).rejects.toMatchObject({
      code: PersistenceErrorCode.StoreLocked,
    });
  });
});
