import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { INestApplication } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import Redis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import {
  BackupInfo,
  BackupManifest,
  PERSISTENCE_BACKUP_CRON,
  PersistenceErrorCode,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { S3BackupTarget, S3BackupTargetOptions } from 'nestjs-persistence/s3';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { buildCli, runCli } from './fixtures/cli';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix, until } from './fixtures/redis';
import {
  createBucket,
  getObject,
  listKeys,
  s3Client,
  S3FaultProxy,
  S3RVER_CREDENTIALS,
  S3rverProcess,
} from './fixtures/s3';
import { dumpState } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The S3 backup target against a real S3-compatible server: s3rver in a child process on a spare
 * port, started here, behind a proxy of the test's own that records every request and produces the
 * faults (throttling answers, a connection cut mid-upload, a request held while another store
 * cleans up). Each test has its own key prefix in one bucket.
 */

const BUCKET = 'persistence-backups';
const REDIS_URL = 'redis://127.0.0.1:6379';
const itRedis = itOrSkip(redisProblem());
const MiB = 1024 * 1024;

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

describe('S3BackupTarget on a real S3-compatible server (s3rver)', () => {
  let root: string;
  let server: S3rverProcess;
  let proxy: S3FaultProxy;
  let direct: S3Client;
  let prefix: string;
  let count = 0;
  const apps: INestApplication[] = [];
  const targets: S3BackupTarget[] = [];

  beforeAll(async () => {
    root = await makeTempDir('persistence-s3-');
    server = new S3rverProcess(join(root, 's3rver'));
    await server.start();
    direct = s3Client(server.endpoint);
    await createBucket(direct, BUCKET);
    proxy = new S3FaultProxy(() => server.port);
    await proxy.start();
  });

  afterAll(async () => {
    direct?.destroy();
    await proxy?.stop();
    await server?.stop();
    await removeDir(root);
  });

  beforeEach(() => {
    prefix = `t${++count}/`;
    proxy.requests.length = 0;
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const target of targets.splice(0)) target.client.destroy();
  });

  const target = (extra: Partial<S3BackupTargetOptions> = {}): S3BackupTarget => {
    const made = new S3BackupTarget({
      bucket: BUCKET,
      prefix,
      endpoint: proxy.endpoint,
      region: 'us-east-1',
      credentials: S3RVER_CREDENTIALS,
      forcePathStyle: true,
      maxAttempts: 3,
      partSize: 5 * MiB,
      listPageSize: 40, // listings of a backup's objects take several pages (continuation tokens)
      ...extra,
    });
    targets.push(made);
    return made;
  };

  /** The folder of the store `name` in this test. */
  const storeDir = (name: string): string => join(root, `store-${count}-${name}`);

  const open = async (
    store: string,
    backups: { target: S3BackupTarget; keep?: number },
    options: PersistenceModuleOptions = {},
  ): Promise<{ app: INestApplication; store: PersistenceStore; sessions: SessionManager }> => {
    const app = await createApp({
      path: storeDir(store),
      saveOnShutdown: false,
      backups,
      ...options,
    });
    apps.push(app);
    return { app, store: app.get(PersistenceStore), sessions: app.get(SessionManager) };
  };

  /** 100 sessions of about 2 KiB each. */
  const seed = (sessions: SessionManager, tag = ''): void => {
    for (let i = 0; i < 100; i++) {
      sessions.create({ id: `s-${i}`, metadata: { tag, pad: `${i}:`.padEnd(2000, 'x') } });
    }
  };

  const manifestOf = async (id: string): Promise<BackupManifest> =>
    JSON.parse(
      (await getObject(direct, BUCKET, `${prefix}backups/${id}.json`)).toString('utf8'),
    ) as BackupManifest;

  it('backs up, uploads only what changed the second time (1%), lists both, and restores each', async () => {
    const { app, store, sessions } = await open('a', { target: target() });
    seed(sessions);
    await store.saveAll();
    const first = await store.backup();
    const stateOne = dumpState(app);
    const storeBytes = first.size;
    expect(first.files).toBe(100);
    expect(proxy.uploadedBytes(`/${prefix}objects/`)).toBe(storeBytes);

    proxy.requests.length = 0;
    sessions.update('s-7', { metadata: { tag: 'changed', pad: '7:'.padEnd(2000, 'y') } });
    await store.saveAll();
    const second = await store.backup();
    const stateTwo = dumpState(app);
    const uploaded = proxy.uploadedBytes(`/${prefix}objects/`);
    // One file of 100 went up again; the other 99 are shared with the first backup.
    expect(uploaded).toBe(second.newBytes);
    expect(uploaded).toBeGreaterThan(0);
    expect(uploaded).toBeLessThan(storeBytes / 50);
    expect(
      proxy.requests.filter((r) => r.method === 'PUT' && r.url.includes('/objects/')),
    ).toHaveLength(1);

    const list = await store.listBackups();
    expect(list.map((b) => [b.id, b.base, b.files])).toEqual([
      [second.id, first.id, 100],
      [first.id, null, 100],
    ]);
    // Nothing of an upload in progress is left: no marker.
    expect([...(await listKeys(direct, BUCKET, `${prefix}uploads/`)).keys()]).toEqual([]);

    await store.restore(first.id!);
    expect(dumpState(app)).toEqual(stateOne);
    await store.restore(second.id!);
    expect(dumpState(app)).toEqual(stateTwo);
  });

  it('retention keeps `keep`, removes the objects no backup refers to, and the kept one restores alone', async () => {
    const { app, store, sessions } = await open('a', { target: target(), keep: 1 });
    seed(sessions);
    await store.saveAll();
    const first = await store.backup();
    sessions.update('s-1', { metadata: { tag: 'v2' } });
    await store.saveAll();
    const second = await store.backup();
    const state = dumpState(app);
    expect((await store.listBackups()).map((b) => b.id)).toEqual([second.id]);

    const keys = await listKeys(direct, BUCKET, prefix);
    expect(keys.has(`${prefix}backups/${first.id}.json`)).toBe(false);
    const referenced = new Set((await manifestOf(second.id!)).files.map((f) => f.sha256));
    const objects = [...keys.keys()].filter((k) => k.startsWith(`${prefix}objects/`));
    // Exactly the objects of the kept backup: the old version of s-1 is gone.
    expect(objects.map((k) => k.slice(`${prefix}objects/`.length)).sort()).toEqual(
      [...referenced].sort(),
    );
    sessions.create({ id: 'later' });
    await store.restore(second.id!);
    expect(dumpState(app)).toEqual(state);
  });

  it('a file larger than partSize goes up as a multipart upload and comes back exact', async () => {
    const { app, store, sessions } = await open('a', { target: target() });
    sessions.create({ id: 'big', metadata: { blob: randomBytes(9 * MiB).toString('base64') } });
    sessions.create({ id: 'small' });
    await store.saveAll();
    const meta = await store.backup();
    const state = dumpState(app);
    const parts = proxy.requests.filter(
      (r) => r.method === 'PUT' && /[?&]partNumber=\d+/.test(r.url),
    );
    expect(parts.length).toBe(Math.ceil(meta.size / (5 * MiB)));
    expect(Math.max(...parts.map((p) => p.bytes))).toBe(5 * MiB);
    sessions.delete('big');
    await store.restore(meta.id!);
    expect(dumpState(app)).toEqual(state);
  });

  it('encrypted items stay encrypted in the bucket', async () => {
    const key = randomBytes(32).toString('base64');
    const { app, store, sessions } = await open('a', { target: target() }, { encryption: { key } });
    sessions.create({ id: 'secret', metadata: { note: 'the-plaintext-marker' } });
    await store.saveAll();
    const meta = await store.backup();
    const manifest = await manifestOf(meta.id!);
    for (const file of manifest.files) {
      const bytes = await getObject(direct, BUCKET, `${prefix}objects/${file.sha256}`);
      expect(bytes.includes('the-plaintext-marker')).toBe(false);
    }
    sessions.delete('secret');
    await store.restore(meta.id!);
    expect(dumpState(app)).toMatchObject({ sessions: [{ id: 'secret' }] });
  });

  describe('faults', () => {
    it('the server going away mid-upload fails the backup (PERSISTENCE_IO_FAILED); nothing of it is listed', async () => {
      const { store, sessions } = await open('a', { target: target() });
      sessions.create({ id: 'small' });
      await store.saveAll();
      const before = await store.backup();
      sessions.create({ id: 'big', metadata: { blob: randomBytes(12 * MiB).toString('base64') } });
      await store.saveAll();
      // The second part goes through, then the server is unreachable.
      proxy.cutAfter(1, (r) => r.method === 'PUT' && /[?&]partNumber=\d+/.test(r.url));
      await expect(store.backup()).rejects.toMatchObject({ code: PersistenceErrorCode.IoFailed });
      expect(proxy.requests.some((r) => r.status === 0)).toBe(true);

      await proxy.start(); // the server answers again, on the same port
      expect((await store.listBackups()).map((b) => b.id)).toEqual([before.id]);
      const manifests = [...(await listKeys(direct, BUCKET, `${prefix}backups/`)).keys()];
      expect(manifests).toEqual([`${prefix}backups/${before.id}.json`]);
      // The next backup goes through whole and restores.
      const after = await store.backup();
      expect((await store.listBackups()).map((b) => b.id)).toEqual([after.id, before.id]);
      sessions.delete('big');
      await store.restore(after.id!);
      expect(sessions.get('big')).toBeDefined();
    });

    it('throttling answers (503 SlowDown) are retried with backoff and the backup succeeds', async () => {
      const { app, store, sessions } = await open('a', { target: target() });
      seed(sessions);
      await store.saveAll();
      proxy.slowDown(2, (r) => r.method === 'PUT' && r.url.includes('/objects/'));
      const meta = await store.backup();
      const throttled = proxy.requests.filter((r) => r.status === 503);
      expect(throttled).toHaveLength(2);
      // Each throttled upload was sent again and stored.
      for (const refused of throttled) {
        expect(
          proxy.requests.filter((r) => r.url === refused.url && r.status === 200),
        ).toHaveLength(1);
      }
      const state = dumpState(app);
      sessions.create({ id: 'later' });
      await store.restore(meta.id!);
      expect(dumpState(app)).toEqual(state);
    });

    it('throttling that outlasts maxAttempts fails the backup (PERSISTENCE_IO_FAILED), nothing listed', async () => {
      const { store, sessions } = await open('a', { target: target({ maxAttempts: 2 }) });
      sessions.create({ id: 'one' });
      await store.saveAll();
      proxy.slowDown(1000, (r) => r.method === 'PUT' && r.url.includes('/objects/'));
      try {
        await expect(store.backup()).rejects.toMatchObject({
          code: PersistenceErrorCode.IoFailed,
          message: expect.stringContaining('SlowDown (HTTP 503)') as unknown,
        });
      } finally {
        proxy.slowDown(0);
      }
      expect(await store.listBackups()).toEqual([]);
      expect([...(await listKeys(direct, BUCKET, prefix)).keys()]).toEqual([]);
    });

    it('an object it shares deleted while a backup runs: not completed (PERSISTENCE_IO_FAILED), nothing listed', async () => {
      const { app, store, sessions } = await open('a', { target: target() });
      seed(sessions);
      await store.saveAll();
      const first = await store.backup();
      sessions.update('s-3', { metadata: { tag: 'changed' } });
      await store.saveAll();
      const shared = (await manifestOf(first.id!)).files.find(
        (f) => f.path === 'sessions/s-5.json',
      )!;

      // The one upload (s-3) waits while the object of s-5, shared with the first backup, goes away.
      const held = proxy.hold((r) => r.method === 'PUT' && r.url.includes('/objects/'));
      const backup = store.backup();
      await held.reached;
      await direct.send(
        new DeleteObjectCommand({ Bucket: BUCKET, Key: `${prefix}objects/${shared.sha256}` }),
      );
      held.release();
      await expect(backup).rejects.toMatchObject({
        code: PersistenceErrorCode.IoFailed,
        message: expect.stringContaining('sessions/s-5.json') as unknown,
      });
      expect((await store.listBackups()).map((b) => b.id)).toEqual([first.id]);

      // The next one uploads it again, and restores.
      const next = await store.backup();
      expect(next.newBytes).toBeGreaterThanOrEqual(shared.size);
      const state = dumpState(app);
      sessions.create({ id: 'later' });
      await store.restore(next.id!);
      expect(dumpState(app)).toEqual(state);
    });

    for (const damage of ['altered', 'missing'] as const) {
      it(`${damage === 'altered' ? 'an' : 'a'} ${damage} object: restore refused (PERSISTENCE_INVALID_BACKUP), the store unchanged; the next backup repairs it`, async () => {
        const { app, store, sessions } = await open('a', { target: target() });
        seed(sessions);
        await store.saveAll();
        const meta = await store.backup();
        sessions.update('s-3', { metadata: { tag: 'after the backup' } });
        await store.saveAll();
        await store.checkpoint();
        const files = await tree(storeDir('a'));
        const state = dumpState(app);

        const victim = (await manifestOf(meta.id!)).files.find(
          (f) => f.path === 'sessions/s-5.json',
        )!;
        const key = `${prefix}objects/${victim.sha256}`;
        if (damage === 'altered') {
          const bytes = await getObject(direct, BUCKET, key);
          bytes[bytes.length >> 1] ^= 0x01;
          await direct.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes }));
        } else {
          await direct.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
        }
        await expect(store.restore(meta.id!)).rejects.toMatchObject({
          code: PersistenceErrorCode.InvalidBackup,
          message: expect.stringContaining('sessions/s-5.json') as unknown,
        });
        expect(dumpState(app)).toEqual(state);
        expect(await tree(storeDir('a'))).toEqual(files);

        // The next backup uploads that file again rather than sharing the bad object.
        const next = await store.backup();
        expect(next.newBytes).toBeGreaterThanOrEqual(victim.size);
        sessions.create({ id: 'later' });
        await store.restore(next.id!);
        expect(dumpState(app)).toEqual(state);
      });
    }
  });

  it('two stores on one prefix: a removal never deletes the objects of an upload in progress', async () => {
    const a = await open('a', { target: target(), keep: 1 });
    const b = await open('b', { target: target(), keep: 1 });
    seed(a.sessions, 'a');
    await a.store.saveAll();
    seed(b.sessions, 'b');
    await b.store.saveAll();
    const bFirst = await b.store.backup();

    // A's upload stops at one of its objects, after others went up.
    const start = proxy.requests.length;
    const held = proxy.hold(
      (r) =>
        r.method === 'PUT' && r.url.includes('/objects/') && proxy.requests.length > start + 20,
    );
    const aBackup = a.store.backup();
    await held.reached;
    // Meanwhile B backs up and its retention removes its first backup, whose objects no manifest
    // refers to any more, and A's objects, not referred to by any manifest yet.
    b.sessions.update('s-1', { metadata: { tag: 'b2' } });
    await b.store.saveAll();
    const bSecond = await b.store.backup();
    expect((await b.store.listBackups()).map((x) => x.id)).not.toContain(bFirst.id);
    const oldVersion = (await manifestOf(bSecond.id!)).files.length; // B's manifest is readable
    expect(oldVersion).toBe(100);
    held.release();
    const aMeta = await aBackup;

    const state = dumpState(a.app);
    a.sessions.create({ id: 'later' });
    await a.store.restore(aMeta.id!);
    expect(dumpState(a.app)).toEqual(state);

    // With no upload in progress, the next removal collects what no manifest refers to.
    b.sessions.update('s-2', { metadata: { tag: 'b3' } });
    await b.store.saveAll();
    const bThird = await b.store.backup();
    const referenced = new Set<string>();
    for (const id of [aMeta.id!, bThird.id!]) {
      for (const f of (await manifestOf(id)).files) referenced.add(f.sha256);
    }
    const objects = [...(await listKeys(direct, BUCKET, `${prefix}objects/`)).keys()];
    expect(objects.map((k) => k.slice(`${prefix}objects/`.length)).sort()).toEqual(
      [...referenced].sort(),
    );
  });

  itRedis(
    'scheduled backups of replicas on Redis: one backup per tick (the lease), shared by all',
    async () => {
      const keyPrefix = uniquePrefix('s3-lease');
      const loggers = [new RecordingLogger(), new RecordingLogger()];
      const replicas: INestApplication[] = [];
      try {
        for (const [i, logger] of loggers.entries()) {
          const app = await createApp(
            {
              path: storeDir(`replica-${i}`),
              saveOnShutdown: false,
              storage: new RedisStorageDriver({ url: REDIS_URL, keyPrefix, replicaId: `r${i}` }),
              backups: { target: target(), cron: '0 3 * * *', keep: 3 },
            },
            { logger },
          );
          apps.push(app);
          replicas.push(app);
        }
        seed(replicas[0].get(SessionManager));
        await replicas[0].get(PersistenceStore).saveAll();

        // The tick, on every replica at once: the one that takes the lease backs up, the other skips.
        const tick = (): void => {
          for (const app of replicas) {
            void app.get(SchedulerRegistry).getCronJob(PERSISTENCE_BACKUP_CRON).fireOnTick();
          }
        };
        tick();
        const skipped = (): string[] =>
          loggers.flatMap((l) => l.lines).filter((l) => l.includes('backup lease'));
        let list: BackupInfo[] = [];
        // Both replicas ran their tick: one skipped it (logged), the other's backup is listed.
        await until(async () => {
          list = await replicas[1].get(PersistenceStore).listBackups();
          return skipped().length > 0 && list.length > 0;
        }, 'the tick on both replicas');
        expect(list).toHaveLength(1);
        expect(list[0].files).toBe(100);
        expect(skipped()).toHaveLength(1);

        // Any replica restores it.
        replicas[1].get(SessionManager).create({ id: 'later' });
        await replicas[1].get(PersistenceStore).saveAll();
        await replicas[1].get(PersistenceStore).restore(list[0].id);
        expect(replicas[1].get(SessionManager).get('later')).toBeUndefined();
        expect(replicas[1].get(SessionManager).list()).toHaveLength(100);
      } finally {
        const client = new Redis(REDIS_URL);
        await removeKeys(client, keyPrefix);
        client.disconnect();
      }
    },
  );

  describe('the CLI against an S3 target', () => {
    let main: string;
    let build: string;
    beforeAll(async () => {
      build = await makeTempDir('persistence-s3-cli-');
      main = await buildCli(build);
    }, 60_000);
    afterAll(() => removeDir(build));

    const env = {
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      AWS_REGION: 'us-east-1',
    };
    const cli = (...args: string[]) =>
      runCli(main, [...args, '--endpoint', proxy.endpoint, '--force-path-style'], env);

    /** Opens the store folder in an application, runs `work`, closes it. */
    const withApp = async <T>(work: (app: INestApplication) => Promise<T> | T): Promise<T> => {
      const app = await createApp({ path: storeDir('cli'), saveOnShutdown: false });
      try {
        return await work(app);
      } finally {
        await app.close();
      }
    };

    it('backup --into s3://, backups list s3://, restore from s3://…/<id>; a damaged backup is refused', async () => {
      const url = `s3://${BUCKET}/${prefix}`;
      const first = await withApp(async (app) => {
        seed(app.get(SessionManager));
        await app.get(PersistenceStore).saveAll();
        return dumpState(app);
      });
      const one = await cli('backup', storeDir('cli'), '--into', url);
      expect(one).toMatchObject({ code: 0 });
      await withApp(async (app) => {
        app.get(SessionManager).update('s-9', { metadata: { tag: 'second' } });
        await app.get(PersistenceStore).saveAll();
      });
      const two = await cli('backup', storeDir('cli'), '--into', url);
      expect(two.stdout).toContain('new, the rest shared with the previous backup');

      const listed = await cli('backups', 'list', url, '--json');
      expect(listed.code).toBe(0);
      const list = JSON.parse(listed.stdout) as Array<{ id: string; base: string | null }>;
      expect(list).toHaveLength(2);
      expect(list[0].base).toBe(list[1].id);
      const table = await cli('backups', 'list', url);
      expect(table.stdout).toContain(list[0].id);
      expect(table.stdout).toContain('2 backups');

      const restored = await cli('restore', storeDir('cli'), `${url}${list[1].id}`);
      expect(restored).toMatchObject({ code: 0 });
      expect(restored.stdout).toContain('Restored 100 files');
      expect(await withApp((app) => dumpState(app))).toEqual(first);

      // A missing object: refused, the store folder unchanged.
      const manifest = await manifestOf(list[0].id);
      await direct.send(
        new DeleteObjectCommand({
          Bucket: BUCKET,
          Key: `${prefix}objects/${manifest.files[0].sha256}`,
        }),
      );
      const files = await tree(storeDir('cli'));
      const refused = await cli('restore', storeDir('cli'), `${url}${list[0].id}`);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('missing');
      expect(await tree(storeDir('cli'))).toEqual(files);
    });
  });

  it('refuses unusable settings with PERSISTENCE_INVALID_OPTIONS', () => {
    const base = { bucket: BUCKET, region: 'us-east-1' };
    for (const [options, text] of [
      [{ ...base, bucket: 'x' }, 'bucket'],
      [{ ...base, prefix: '/abs' }, 'prefix'],
      [{ ...base, partSize: MiB }, 'partSize'],
      [{ ...base, concurrency: 0 }, 'concurrency'],
      [{ ...base, maxAttempts: 1.5 }, 'maxAttempts'],
      [{ ...base, verifyReuse: 'etag' }, 'verifyReuse'],
    ] as Array<[S3BackupTargetOptions, string]>) {
      expect(() => new S3BackupTarget(options)).toThrow(
        expect.objectContaining({
          code: PersistenceErrorCode.InvalidOptions,
          message: expect.stringContaining(text) as unknown,
        }),
      );
    }
  });

  it('the main entry point and the CLI program never load @aws-sdk/client-s3 (an optional peer)', async () => {
    await jest.isolateModulesAsync(async () => {
      jest.doMock('@aws-sdk/client-s3', () => {
        throw new Error('@aws-sdk/client-s3 was loaded');
      });
      await expect(import('../lib/index')).resolves.toHaveProperty('PersistenceModule');
      await expect(import('../lib/cli/cli.program')).resolves.toBeDefined();
      await expect(import('nestjs-persistence/s3')).rejects.toThrow(
        '@aws-sdk/client-s3 was loaded',
      );
    });
  });
});
