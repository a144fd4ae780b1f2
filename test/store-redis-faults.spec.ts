import { INestApplication } from '@nestjs/common';
import {
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { createApp } from './fixtures/app.factory';
import { itOrSkip } from './fixtures/preconditions';
import { freePort, RedisServerProcess, redisServerProblem, until } from './fixtures/redis';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The store on a redis-server of the test's own (spare port, no persistence), stopped and started
 * under it: down at boot, down during saves, back again.
 */

const itServer = itOrSkip(redisServerProblem());

describe('PersistenceStore on Redis: faults (own redis-server)', () => {
  let server: RedisServerProcess;
  let dir: string;
  const apps: INestApplication[] = [];

  beforeEach(async () => {
    server = new RedisServerProcess(await freePort());
    dir = await makeTempDir();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close().catch(() => undefined);
    await server.stop();
    await removeDir(dir);
  });

  async function open(replicaId: string): Promise<{ app: INestApplication; errors: string[] }> {
    const errors: string[] = [];
    const app = await createApp({
      path: dir,
      storage: new RedisStorageDriver({
        url: server.url,
        keyPrefix: 'store-faults:',
        replicaId,
        connectTimeoutMs: 500,
      }),
    });
    apps.push(app);
    const store = app.get(PersistenceStore);
    const last = store.getLastError();
    if (last) errors.push(last.code);
    store.onError((event: PersistenceErrorEvent) => errors.push(event.error.code));
    return { app, errors };
  }

  itServer('starts while Redis is down, reports it, and loads once it answers', async () => {
    const { app, errors } = await open('late');
    const store = app.get(PersistenceStore);
    expect(errors).toContain(PersistenceErrorCode.StorageUnavailable);
    expect((await store.getStatus()).writable).toBe(false);
    // A save now is refused with the retryable error; the change stays in memory.
    app.get(SessionManager).create({ id: 'early' });
    await expect(store.saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.StorageUnavailable,
    });
    await server.start();
    const { app: other } = await open('other');
    other.get(SessionManager).create({ id: 'from-other' });
    await other.get(PersistenceStore).saveAll();
    // The late replica opens on its own (backoff), loads or hears the other's item.
    await until(
      () => app.get(SessionManager).get('from-other') !== undefined,
      'the late replica to load',
    );
    expect((await store.getStatus()).writable).toBe(true);
    await store.saveAll();
    await until(
      () => other.get(SessionManager).get('early') !== undefined,
      'the early change to reach the other replica',
    );
  });

  itServer(
    'getStatus().writable turns false as soon as Redis is gone, before any save, and true once it is back',
    async () => {
      await server.start();
      const { app, errors } = await open('status');
      const store = app.get(PersistenceStore);
      expect((await store.getStatus()).writable).toBe(true);
      await server.stop();
      // No save is tried: the status follows the driver's connection.
      await until(async () => !(await store.getStatus()).writable, 'writable to turn false');
      const status = await store.getStatus();
      expect(status.notWritableReason).toContain('cannot be reached now');
      expect(status.notWritableReason).toContain(server.url);
      expect(errors).toEqual([]); // nothing was attempted, so nothing failed
      await server.start();
      await until(async () => (await store.getStatus()).writable, 'writable to turn true again');
      app.get(SessionManager).create({ id: 'after' });
      await store.saveAll();
    },
  );

  itServer('keeps state and unsaved changes while Redis is down; saves them after', async () => {
    await server.start();
    const { app, errors } = await open('r1');
    const store = app.get(PersistenceStore);
    const sessions = app.get(SessionManager);
    sessions.create({ id: 'before' });
    await store.saveAll();
    await server.stop();
    sessions.create({ id: 'during' });
    sessions.update('before', { metadata: { changed: true } });
    const failed = await store.saveAll().catch((error: unknown) => error);
    expect(failed).toMatchObject({ code: PersistenceErrorCode.StorageUnavailable });
    expect(errors).toContain(PersistenceErrorCode.StorageUnavailable);
    expect(sessions.get('during')).toBeDefined();
    // Back (empty: this server keeps nothing): the first save that gets through commits the changes.
    await server.start();
    await until(async () => {
      try {
        await store.saveAll();
        return true;
      } catch {
        return false;
      }
    }, 'a save after the restart');
    const { app: reader } = await open('reader');
    expect(reader.get(SessionManager).get('during')).toBeDefined();
    expect(reader.get(SessionManager).get('before')?.metadata).toEqual({ changed: true });
  });
});
