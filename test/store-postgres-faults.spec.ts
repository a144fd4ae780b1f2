import { INestApplication } from '@nestjs/common';
import { Client } from 'pg';
import {
  PersistenceError,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { PostgresStorageDriver } from 'nestjs-persistence/postgres';
import type { DriverChange } from '../lib/interfaces/storage-driver.interface';
import { createApp } from './fixtures/app.factory';
import { Cart, CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { ChildApp } from './fixtures/child-process';
import {
  PostgresServerProcess,
  postgresServerProblem,
  sql,
  uniqueTable,
} from './fixtures/postgres';
import { itOrSkip } from './fixtures/preconditions';
import { freePort, until } from './fixtures/redis';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Faults with a PostgreSQL server of the test's own (initdb into a temporary folder, run as the
 * `postgres` OS user, on a spare port): stopped and started during saves, killed (SIGKILL of every
 * server process, then crash recovery) during a large commit, the driver's connections terminated
 * by the server (pg_terminate_backend), down at boot. Nothing acknowledged may be lost and nothing
 * half-applied may be visible.
 */

const problem = postgresServerProblem();
const itServer = itOrSkip(problem);

async function rejection(promise: Promise<unknown>): Promise<PersistenceError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(PersistenceError);
    return error as PersistenceError;
  }
  throw new Error('expected a rejection');
}

describe('PostgreSQL faults (own server)', () => {
  let server: PostgresServerProcess;
  let table: string;
  let dir: string;
  const apps: INestApplication[] = [];
  const drivers: PostgresStorageDriver[] = [];

  beforeAll(async () => {
    if (problem !== undefined) return;
    server = new PostgresServerProcess(await freePort());
    await server.start();
  }, 60_000);
  afterAll(async () => {
    await server?.destroy();
  });

  beforeEach(async () => {
    table = uniqueTable('faults');
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close().catch(() => undefined);
    for (const created of drivers.splice(0)) await created.close();
    if (problem === undefined && server.pid === undefined) await server.start();
    await removeDir(dir);
  });

  function driver(replicaId: string): PostgresStorageDriver {
    const created = new PostgresStorageDriver({
      connectionString: server.url,
      table,
      replicaId,
      connectTimeoutMs: 500,
    });
    drivers.push(created);
    return created;
  }

  async function open(replicaId: string): Promise<{ app: INestApplication; errors: string[] }> {
    const errors: string[] = [];
    const app = await createApp({
      path: dir,
      storage: new PostgresStorageDriver({
        connectionString: server.url,
        table,
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

  /** Saves until one gets through (the store keeps its dirty set across failed saves). */
  const saveThrough = (store: PersistenceStore): Promise<void> =>
    until(
      () =>
        store.saveAll().then(
          () => true,
          () => false,
        ),
      'a save to get through',
      20_000,
    );

  itServer('boots while the server is down, reports it, and loads once it answers', async () => {
    await server.stop();
    const down = driver('down');
    const error = await rejection(down.open());
    expect(error.code).toBe(PersistenceErrorCode.StorageUnavailable);
    expect(error.message).toContain(`127.0.0.1:${server.port}`);
    const { app, errors } = await open('late');
    const store = app.get(PersistenceStore);
    expect(errors).toContain(PersistenceErrorCode.StorageUnavailable);
    app.get(SessionManager).create({ id: 'early' });
    await expect(store.saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.StorageUnavailable,
    });
    await server.start();
    await until(async () => (await store.getStatus()).writable, 'the late store to open');
    await saveThrough(store);
    const { app: reader } = await open('reader');
    expect(reader.get(SessionManager).get('early')).toBeDefined();
  });

  itServer(
    'the server stopped and started during saves: every acknowledged save is there',
    async () => {
      const { app, errors } = await open('writer');
      const { app: watcher } = await open('watcher');
      const store = app.get(PersistenceStore);
      const sessions = app.get(SessionManager);
      const acked: string[] = [];
      let failures = 0;
      let running = true;
      const loop = (async () => {
        for (let i = 0; running; i++) {
          sessions.create({ id: `s-${i}`, metadata: { i } });
          try {
            await store.saveAll();
            acked.push(...sessions.list().map((s) => s.id));
          } catch (error) {
            expect(error).toMatchObject({ code: PersistenceErrorCode.StorageUnavailable });
            failures++;
            await new Promise((resolve) => setTimeout(resolve, 20)); // pace the retries
          }
        }
      })();
      for (let cycle = 0; cycle < 2; cycle++) {
        await until(() => acked.length > 5 * (cycle + 1), 'some acknowledged saves');
        await server.stop(); // fast shutdown: the sessions are terminated, in-flight work rolled back
        const failedBefore = failures;
        await until(() => failures > failedBefore, 'a save to fail while the server is down');
        await server.start();
      }
      await until(() => acked.length > 20, 'saves after the restarts');
      running = false;
      await loop;
      await saveThrough(store);
      expect(errors).toContain(PersistenceErrorCode.StorageUnavailable);
      const { app: reader } = await open('reader');
      const stored = new Set(
        reader
          .get(SessionManager)
          .list()
          .map((s) => s.id),
      );
      for (const id of new Set(acked)) expect(stored.has(id)).toBe(true);
      expect(stored.size).toBe(sessions.list().length);
      // The watcher's LISTEN connection came back and caught up (resync after the gap).
      await until(
        () => watcher.get(SessionManager).list().length === stored.size,
        'the watching replica to catch up',
      );
    },
  );

  itServer(
    'the server killed during a large commit: after recovery all of it or none',
    async () => {
      const a = driver('big');
      await a.open();
      const base: DriverChange[] = Array.from({ length: 50 }, (_, i) => ({
        collection: 'c',
        id: `acked-${i}`,
        data: Buffer.from(`acked ${i}`),
        expectedRevision: 0,
      }));
      await a.commit(base, { conflicts: 'reject' });
      const payload = Buffer.alloc(8192, 7);
      const large: DriverChange[] = Array.from({ length: 2000 }, (_, i) => ({
        collection: 'c',
        id: `large-${i}`,
        data: payload,
        expectedRevision: 0,
      }));
      const admin = new Client({ connectionString: server.url });
      admin.on('error', () => undefined);
      await admin.connect();
      const inFlight = rejection(a.commit(large, { conflicts: 'reject' })); // handled from now on
      // Kill while the commit's transaction is open on the server.
      await until(async () => {
        const { rows } = await admin.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = 'nestjs-persistence:big'
           AND (state = 'idle in transaction' OR (state = 'active' AND query NOT LIKE 'SELECT 1%'))
           AND xact_start IS NOT NULL`,
        );
        return rows.length > 0;
      }, 'the large commit to be in flight');
      await server.stop('SIGKILL');
      await admin.end().catch(() => undefined);
      const error = await inFlight;
      expect(error.code).toBe(PersistenceErrorCode.StorageUnavailable);
      await server.start(); // crash recovery from the write-ahead log
      const reader = driver('reader');
      await reader.open();
      const { records, problems } = await reader.loadAll(['c']);
      expect(problems).toEqual([]);
      const ids = new Set(records.map((r) => r.id));
      for (const change of base) expect(ids.has(change.id)).toBe(true);
      const largeSeen = records.filter((r) => r.id.startsWith('large-')).length;
      expect([0, large.length]).toContain(largeSeen);
      process.stdout.write(
        `server killed mid-commit: ${largeSeen} of ${large.length} items visible\n`,
      );
      // The same replica's retry settles it either way, with no conflict against itself.
      const retry = await a.commit(large, { conflicts: 'reject' });
      expect(retry.conflicts).toEqual([]);
      expect(retry.applied).toHaveLength(large.length);
    },
  );

  itServer(
    'a replica killed while its commit is open on the server: none of it is visible',
    async () => {
      const child = new ChildApp('test/fixtures/replica.main.ts', {
        DRIVER: 'postgres',
        POSTGRES_URL: server.url,
        TABLE: table,
        REPLICA: 'victim',
        MODE: 'loop',
        BULK: '400',
      });
      try {
        await child.waitFor('ACK 3');
        // Its next commit's transaction is open on the server: kill the process now.
        await until(async () => {
          const rows = await sql(
            server.url,
            `SELECT 1 FROM pg_stat_activity WHERE application_name = 'nestjs-persistence:victim'
             AND xact_start IS NOT NULL AND query NOT IN ('BEGIN', 'COMMIT')`,
          );
          return rows.length > 0;
        }, 'a commit of the replica in flight');
        child.kill('SIGKILL');
        await child.exited;
      } finally {
        child.kill('SIGKILL');
        await child.exited;
      }
      const acked = Math.max(
        ...child.lines
          .filter((line) => line.startsWith('ACK '))
          .map((line) => Number(line.slice(4))),
      );
      // The server aborts the dead client's transaction and its locks go: another replica commits.
      const app = await createApp(
        {
          path: dir,
          storage: new PostgresStorageDriver({ connectionString: server.url, table }),
          builtInAdapters: false,
          adapters: [CartAdapter],
        },
        { imports: [CartModule] },
      );
      apps.push(app);
      const carts = app.get(CartService);
      const stored = new Map<string, Cart>(carts.entries());
      const counter = stored.get('counter')!.total;
      expect(counter).toBeGreaterThanOrEqual(acked);
      expect(counter).toBeLessThanOrEqual(acked + 1);
      for (let j = 0; j < 400; j++) expect(stored.get(`bulk-${j}`)?.total).toBe(counter);
      carts.set('after', { items: ['x'], total: 1 });
      await app.get(PersistenceStore).saveAll();
      process.stdout.write(
        `replica killed mid-commit: ${acked} acknowledged, ${counter} stored, a later commit got through\n`,
      );
    },
  );

  itServer(
    "pg_terminate_backend of the driver's connections during saves loses nothing",
    async () => {
      const { app } = await open('cut');
      const { app: watcher } = await open('cut-watcher');
      const store = app.get(PersistenceStore);
      const sessions = app.get(SessionManager);
      const acked: string[] = [];
      let failures = 0;
      let running = true;
      const loop = (async () => {
        for (let i = 0; running; i++) {
          sessions.create({ id: `t-${i}` });
          await store.saveAll().then(
            () => acked.push(...sessions.list().map((s) => s.id)),
            (error: unknown) => {
              expect(error).toMatchObject({ code: PersistenceErrorCode.StorageUnavailable });
              failures++;
            },
          );
        }
      })();
      for (let cut = 0; cut < 5; cut++) {
        await until(() => acked.length > 3 * (cut + 1), 'saves between the cuts');
        await sql(
          server.url,
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name LIKE 'nestjs-persistence:cut%'`,
        );
      }
      running = false;
      await loop;
      await saveThrough(store);
      const { app: reader } = await open('cut-reader');
      const stored = new Set(
        reader
          .get(SessionManager)
          .list()
          .map((s) => s.id),
      );
      for (const id of new Set(acked)) expect(stored.has(id)).toBe(true);
      expect(stored.size).toBe(sessions.list().length);
      await until(
        () => watcher.get(SessionManager).list().length === stored.size,
        'the watching replica to converge',
      );
      process.stdout.write(
        `pg_terminate_backend x5: ${acked.length} acknowledged, ${failures} failed saves retried, 0 lost\n`,
      );
    },
  );
});
