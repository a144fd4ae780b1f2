import { Controller, Get, Inject, INestApplication, Module } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  PersistenceModule,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { PersistenceHealthIndicator, PersistenceHealthOptions } from 'nestjs-persistence/health';
import { itOrSkip } from './fixtures/preconditions';
import { freePort, RedisServerProcess, redisServerProblem, until } from './fixtures/redis';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const HEALTH_OPTIONS = Symbol('HEALTH_OPTIONS');

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly persistence: PersistenceHealthIndicator,
    @Inject(HEALTH_OPTIONS) private readonly options: PersistenceHealthOptions,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.persistence.isHealthy('persistence', this.options)]);
  }
}

interface PersistenceDetails {
  status: 'up' | 'down';
  path: string;
  writable: boolean;
  lastSave: string | null;
  lastSaveAgeMs: number | null;
  lastError: { code: string; message: string; operation: string; at: string } | null;
  journal: { bytes: number; pendingItems: number };
  disk: { freeBytes: number; totalBytes: number; minFreeBytes: number } | null;
  unresolved: { items: number; kinds: Record<string, number> };
  lastSaveIncomplete: string | null;
  problems?: string[];
}

/** A real HTTP server with Terminus, the store and a /health controller. */
async function startApp(
  options: PersistenceModuleOptions,
  health: PersistenceHealthOptions = {},
): Promise<INestApplication> {
  @Module({
    imports: [
      TerminusModule.forRoot({ logger: false }),
      PersistenceModule.forRoot({ autoSave: false, ...options }),
    ],
    controllers: [HealthController],
    providers: [PersistenceHealthIndicator, { provide: HEALTH_OPTIONS, useValue: health }],
  })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.listen(0, '127.0.0.1');
  return app;
}

async function getHealth(
  app: INestApplication,
): Promise<{ status: number; persistence: PersistenceDetails; body: Record<string, unknown> }> {
  const { port } = (app.getHttpServer() as { address(): AddressInfo }).address();
  const response = await fetch(`http://127.0.0.1:${port}/health`);
  const body = (await response.json()) as { details: { persistence: PersistenceDetails } };
  return { status: response.status, persistence: body.details.persistence, body };
}

describe('PersistenceHealthIndicator over HTTP', () => {
  let dir: string;
  let app: INestApplication | undefined;

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    jest.useRealTimers();
    await app?.close();
    app = undefined;
    await removeDir(dir);
  });

  it('is up after a save, reporting the save, the journal backlog and the free space', async () => {
    app = await startApp({ path: dir }, { minFreeBytes: 1 });
    app.get(SessionManager).create({ id: 's-1' });
    const meta = await app.get(PersistenceStore).saveAll();

    const { status, persistence, body } = await getHealth(app);

    expect(status).toBe(200);
    expect(body.status).toBe('ok');
    expect(persistence).toMatchObject({
      status: 'up',
      path: dir,
      writable: true,
      lastSave: meta.timestamp.toISOString(),
      lastError: null,
      journal: { pendingItems: 1 },
      disk: { minFreeBytes: 1 },
    });
    expect(persistence.lastSaveAgeMs).toBeGreaterThanOrEqual(0);
    expect(persistence.journal.bytes).toBeGreaterThan(0); // saved, not yet checkpointed
    expect(persistence.disk?.freeBytes).toBeGreaterThan(0);
    expect(persistence.problems).toBeUndefined();

    await app.get(PersistenceStore).checkpoint();
    expect((await getHealth(app)).persistence.journal).toEqual({ bytes: 0, pendingItems: 0 });
  });

  it('is down while the last error is newer than the last save, and up again after a save', async () => {
    app = await startApp({ path: dir }, { minFreeBytes: 1 });
    const store = app.get(PersistenceStore);
    app.get(SessionManager).create({ id: 's-1' });
    await store.saveAll();
    // A file where the checkpoint must write a folder: a real failure from the kernel.
    await rm(join(dir, 'sessions'), { recursive: true, force: true });
    await writeFile(join(dir, 'sessions'), 'not a folder');
    await expect(store.checkpoint()).rejects.toMatchObject({ code: 'PERSISTENCE_IO_FAILED' });

    const down = await getHealth(app);
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('error');
    expect(down.persistence).toMatchObject({
      status: 'down',
      writable: true,
      lastError: {
        code: 'PERSISTENCE_IO_FAILED',
        operation: 'checkpoint',
        message: expect.stringContaining('Could not checkpoint'),
      },
    });
    expect(down.persistence.problems).toEqual([
      expect.stringContaining('PERSISTENCE_IO_FAILED during checkpoint'),
    ]);

    await rm(join(dir, 'sessions'));
    app.get(SessionManager).create({ id: 's-2' });
    await store.saveAll();
    const up = await getHealth(app);
    expect(up.status).toBe(200);
    expect(up.persistence.lastError?.code).toBe('PERSISTENCE_IO_FAILED'); // still reported
  });

  it('is down when the store folder cannot be written (removed while running)', async () => {
    app = await startApp({ path: dir }, { minFreeBytes: 1 });
    await rm(dir, { recursive: true, force: true });

    const { status, persistence } = await getHealth(app);

    expect(status).toBe(503);
    expect(persistence.writable).toBe(false);
    expect(persistence.problems).toContainEqual(expect.stringMatching(/cannot save.*ENOENT/));
  });

  itOrSkip(redisServerProblem())(
    'says it cannot save as soon as its Redis server is gone, before any save fails',
    async () => {
      const server = new RedisServerProcess(await freePort());
      try {
        await server.start();
        app = await startApp({
          storage: new RedisStorageDriver({
            url: server.url,
            keyPrefix: 'health:',
            connectTimeoutMs: 500,
          }),
        });
        const cannotSave = (problems: string[] | undefined): string[] =>
          (problems ?? []).filter((p) => p.startsWith('cannot save'));
        expect(cannotSave((await getHealth(app)).persistence.problems)).toEqual([]);
        await server.stop();
        const store = app.get(PersistenceStore);
        await until(async () => !(await store.getStatus()).writable, 'the store to see Redis gone');
        const { status, persistence } = await getHealth(app);
        expect(status).toBe(503);
        expect(cannotSave(persistence.problems)).toEqual([
          expect.stringContaining(`The storage ${server.url}`),
        ]);
        expect(cannotSave(persistence.problems)[0]).toContain('cannot be reached now');
        expect(persistence.lastError).toBeNull(); // no save was tried
      } finally {
        await app?.close();
        app = undefined;
        await server.stop();
      }
    },
  );

  it("with onUnreadable: 'start' and a wrong key: down, even after a save, until the unreadable items are discarded", async () => {
    const key = randomBytes(32);
    app = await startApp({ path: dir, encryption: { key } }, { minFreeBytes: 1 });
    app.get(SessionManager).create({ id: 's-1' });
    app.get(SessionManager).create({ id: 's-2' });
    await app.get(PersistenceStore).saveAll();
    await app.close();
    app = await startApp(
      { path: dir, encryption: { key: randomBytes(32) }, onUnreadable: 'start' },
      { minFreeBytes: 1 },
    );
    const store = app.get(PersistenceStore);
    await store.saveAll(); // a save does not make unreadable items go away

    const down = await getHealth(app);
    expect(down.status).toBe(503);
    expect(down.persistence.unresolved).toEqual({ items: 2, kinds: { 'wrong-key': 2 } });
    expect(down.persistence.problems).toEqual([
      '2 stored item(s) could not be loaded and are unresolved (wrong-key: 2); see listUnloaded()',
    ]);

    await store.discardUnloaded('sessions', 's-1');
    expect((await getHealth(app)).status).toBe(503);
    await store.discardUnloaded('sessions', 's-2');
    const up = await getHealth(app);
    expect(up.status).toBe(200);
    expect(up.persistence.unresolved).toEqual({ items: 0, kinds: {} });
  });

  it('is down after an incomplete save (SAVE_INCOMPLETE) until a save writes everything', async () => {
    const values = new Map<string, unknown>([['a', { n: 1 }]]);
    const things = {
      name: 'things',
      snapshot: () => new Map(values),
      restore: () => undefined,
    };
    app = await startApp({ path: dir, adapters: [things] }, { minFreeBytes: 1 });
    const store = app.get(PersistenceStore);
    values.set('a', { n: 1n }); // a BigInt: not JSON, refused
    await expect(store.saveAll()).rejects.toMatchObject({ code: 'PERSISTENCE_SAVE_INCOMPLETE' });
    const down = await getHealth(app);
    expect(down.status).toBe(503);
    expect(down.persistence.lastSaveIncomplete).toContain(
      'Save finished with 1 of 1 items not written',
    );
    expect(down.persistence.problems).toEqual([
      expect.stringContaining('the last save was incomplete: Save finished with 1 of 1'),
    ]);
    values.set('a', { n: 2 });
    await store.saveAll();
    const up = await getHealth(app);
    expect(up.status).toBe(200);
    expect(up.persistence.lastSaveIncomplete).toBeNull();
  });

  it('is down on a read-only store', async () => {
    app = await startApp({ path: dir, readOnly: true }, { minFreeBytes: 1 });
    const { status, persistence } = await getHealth(app);
    expect(status).toBe(503);
    expect(persistence.problems).toEqual([expect.stringContaining('readOnly: true')]);
  });

  it('is down when free space is below minFreeBytes', async () => {
    app = await startApp({ path: dir }, { minFreeBytes: Number.MAX_SAFE_INTEGER });
    const { status, persistence } = await getHealth(app);
    expect(status).toBe(503);
    expect(persistence.disk?.minFreeBytes).toBe(Number.MAX_SAFE_INTEGER);
    expect(persistence.problems).toEqual([
      expect.stringMatching(/bytes free, below the minimum of 9007199254740991 bytes/),
    ]);
  });

  it('is down when the last save is older than maxAge (fake clock)', async () => {
    const maxAge = 10 * 60_000;
    fakeClock(new Date('2030-01-01T00:00:00Z'));
    app = await startApp({ path: dir }, { minFreeBytes: 1, maxAge });
    await app.get(PersistenceStore).saveAll();

    jest.setSystemTime(new Date('2030-01-01T00:00:00Z').getTime() + maxAge);
    const fresh = await getHealth(app);
    expect(fresh.status).toBe(200);
    expect(fresh.persistence.lastSaveAgeMs).toBe(maxAge);

    jest.setSystemTime(new Date('2030-01-01T00:00:00Z').getTime() + maxAge + 1);
    const stale = await getHealth(app);
    expect(stale.status).toBe(503);
    expect(stale.persistence.lastSave).toBe('2030-01-01T00:00:00.000Z');
    expect(stale.persistence.problems).toEqual([
      `the last save is ${maxAge + 1} ms old, more than maxAge (${maxAge} ms)`,
    ]);
  });

  it('before the first save, maxAge counts from when the store opened', async () => {
    fakeClock(new Date('2030-01-01T00:00:00Z'));
    app = await startApp({ path: dir }, { minFreeBytes: 1, maxAge: 1000 });
    expect((await getHealth(app)).status).toBe(200);
    jest.setSystemTime(new Date('2030-01-01T00:00:02Z'));
    const { status, persistence } = await getHealth(app);
    expect(status).toBe(503);
    expect(persistence.lastSave).toBeNull();
    expect(persistence.problems).toEqual([
      expect.stringContaining('no save since the store opened'),
    ]);
  });
});

/** Only the clock is faked: the HTTP server and fetch keep their real timers. */
function fakeClock(now: Date): void {
  jest.useFakeTimers({
    now,
    doNotFake: [
      'hrtime',
      'nextTick',
      'performance',
      'queueMicrotask',
      'setImmediate',
      'clearImmediate',
      'setInterval',
      'clearInterval',
      'setTimeout',
      'clearTimeout',
    ],
  });
}

describe('the main entry point without @nestjs/terminus', () => {
  it('loads, while nestjs-persistence/health needs it', () => {
    jest.isolateModules(() => {
      jest.doMock('@nestjs/terminus', () => {
        throw new Error("Cannot find module '@nestjs/terminus'");
      });
      expect(() => jest.requireActual('../lib/index.ts') as unknown).not.toThrow();
      expect(() => jest.requireActual('../lib/health/index.ts') as unknown).toThrow(
        "Cannot find module '@nestjs/terminus'",
      );
    });
  });
});
