import { INestApplication } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import Redis from 'ioredis';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  NodeFileSystem,
  PERSISTENCE_BACKUP_CRON,
  PersistenceErrorEvent,
  PersistenceFileSystem,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { createApp } from './fixtures/app.factory';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix } from './fixtures/redis';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Several writers, one backups folder: replicas of one Redis store (the server at 127.0.0.1:6379,
 * skipped with the reason when none answers) back up into the same `backups.directory`. Each writer's
 * staging folder is its own: another writer never removes it as a leftover. The interleaving is made
 * certain, not left to timing: one writer is held inside its backup (its first file write into its
 * staging folder) while the other backs up from start to end.
 */

const itRedis = itOrSkip(redisProblem());
const URL = 'redis://127.0.0.1:6379';
const ROUNDS = 5;
const HOUR = 3_600_000;

/** A real file system whose writes into a backup's staging folder wait while `hold()` is on. */
class HoldingFileSystem {
  readonly fs: PersistenceFileSystem;
  private gate?: { open: () => void; opened: Promise<void> };
  private reached?: () => void;

  constructor(private readonly backups: string) {
    const inner = new NodeFileSystem();
    this.fs = new Proxy(inner, {
      get: (target, property) => {
        if (property === 'open') {
          return async (
            path: string,
            how: 'read' | 'create' | 'append' | 'directory',
            mode?: number,
          ) => {
            if (how === 'create' && path.startsWith(join(this.backups, '.')) && this.gate) {
              this.reached?.();
              await this.gate.opened;
            }
            return target.open(path, how, mode);
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function'
          ? (value as (...args: unknown[]) => unknown).bind(target)
          : value;
      },
    });
  }

  /** Holds the next staging writes; resolves once one is held. */
  hold(): Promise<void> {
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    this.gate = { open, opened };
    return new Promise<void>((resolve) => (this.reached = resolve));
  }

  release(): void {
    const gate = this.gate;
    this.gate = undefined;
    this.reached = undefined;
    gate?.open();
  }
}

describe('several writers back up into one folder', () => {
  let root: string;
  let backups: string;
  const apps: INestApplication[] = [];
  const prefixes: string[] = [];
  let errors: PersistenceErrorEvent[];

  beforeEach(async () => {
    root = await makeTempDir();
    backups = join(root, 'backups');
    errors = [];
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close().catch(() => undefined);
    jest.useRealTimers();
    if (prefixes.length > 0 && !redisProblem()) {
      const client = new Redis(URL);
      for (const prefix of prefixes.splice(0)) await removeKeys(client, prefix);
      client.disconnect();
    }
    await removeDir(root);
  });

  async function replica(
    keyPrefix: string,
    name: string,
    fileSystem: PersistenceFileSystem,
    backupOptions: PersistenceModuleOptions['backups'] = {},
  ): Promise<{ app: INestApplication; store: PersistenceStore }> {
    const app = await createApp(
      {
        path: join(root, name),
        saveOnShutdown: false,
        storage: new RedisStorageDriver({ url: URL, keyPrefix, replicaId: name }),
        backups: { directory: backups, keep: 100, ...backupOptions },
      },
      { fileSystem },
    );
    apps.push(app);
    const store = app.get(PersistenceStore);
    store.onError((e) => errors.push(e));
    return { app, store };
  }

  /** Hidden working folders left in the backups folder. */
  const hidden = async (): Promise<string[]> =>
    (await readdir(backups)).filter((name) => name.startsWith('.'));

  /**
   * `ROUNDS` rounds: `a` held inside its backup while `b` backs up from start to end, then both at
   * once. Every backup succeeds, is listed, leaves no working folder behind, and restores.
   */
  async function backUpSideBySide(
    a: { store: PersistenceStore },
    b: { store: PersistenceStore },
    holding: HoldingFileSystem,
  ): Promise<void> {
    const written: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const held = holding.hold();
      const first = a.store.backup();
      await held; // a's staging folder exists and a is writing into it
      const second = await b.store.backup();
      holding.release();
      const meta = await first;
      written.push(meta.id!, second.id!);
      // And both at once, as they come.
      const both = await Promise.all([a.store.backup(), b.store.backup()]);
      written.push(...both.map((m) => m.id!));
      expect(await hidden()).toEqual([]);
    }
    expect(errors).toEqual([]);
    const listed = (await b.store.listBackups()).map((x) => x.id);
    expect(listed.sort()).toEqual([...written].sort());
    for (const id of [written[0], written.at(-1)!]) {
      await expect(a.store.restore(id)).resolves.toMatchObject({ files: 1 });
    }
  }

  itRedis(
    `two replicas, ${ROUNDS} rounds: one held inside its backup while the other backs up, both succeed`,
    async () => {
      const keyPrefix = uniquePrefix('backups-shared');
      prefixes.push(keyPrefix);
      const holding = new HoldingFileSystem(backups);
      const a = await replica(keyPrefix, 'a', holding.fs);
      const b = await replica(keyPrefix, 'b', new NodeFileSystem());
      a.app.get(SessionManager).create({ id: 's1' });
      await a.store.saveAll();
      await backUpSideBySide(a, b, holding);
    },
  );

  it(`two stores on the file system, one backups folder, ${ROUNDS} rounds side by side`, async () => {
    const holding = new HoldingFileSystem(backups);
    const stores = [];
    for (const [name, fileSystem] of [
      ['a', holding.fs],
      ['b', new NodeFileSystem()],
    ] as const) {
      const app = await createApp(
        {
          path: join(root, name),
          saveOnShutdown: false,
          backups: { directory: backups, keep: 100 },
        },
        { fileSystem },
      );
      apps.push(app);
      const store = app.get(PersistenceStore);
      store.onError((e) => errors.push(e));
      app.get(SessionManager).create({ id: `s-${name}` });
      await store.saveAll();
      stores.push({ store });
    }
    await backUpSideBySide(stores[0], stores[1], holding);
  });

  it('removes a leftover staging folder only when its writer is provably gone', async () => {
    const app = await createApp({
      path: join(root, 'store'),
      saveOnShutdown: false,
      backups: { directory: backups },
    });
    apps.push(app);
    app.get(SessionManager).create({ id: 's1' });
    await app.get(PersistenceStore).saveAll();
    // A process that has exited (its pid is free) and one that runs (this test's parent).
    const child = spawn(process.execPath, ['-e', '0']);
    const dead = await new Promise<number>((resolve) =>
      child.on('exit', () => resolve(child.pid!)),
    );
    const id = '2000-01-01T00-00-00-000Z-00000000';
    // How a writer names itself (docs/backups.md): a hash of the host name, its pid, a token.
    const hostTag = (): string => createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
    const left = {
      gone: `.${id}.backup-${hostTag()}-${dead}-0123456789ab`,
      goneRemoving: `.${id}.removing-${hostTag()}-${dead}-0123456789ab`,
      live: `.${id}.backup-${hostTag()}-${process.ppid}-0123456789ab`,
      otherHost: `.${id}.backup-00000000-${dead}-0123456789ab`,
    };
    for (const name of Object.values(left)) {
      await mkdir(join(backups, name, 'sessions'), { recursive: true });
      await writeFile(join(backups, name, 'sessions', 's1.json'), '{}');
    }
    await app.get(PersistenceStore).backup();
    expect((await hidden()).sort()).toEqual([left.live, left.otherHost].sort());
  });

  itRedis(
    'a manual backup on one replica beside the scheduled one running on another (fake timers)',
    async () => {
      jest.useFakeTimers({
        doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'],
        now: new Date('2030-01-01T00:30:00.000Z'),
      });
      const keyPrefix = uniquePrefix('backups-manual');
      prefixes.push(keyPrefix);
      const holding = new HoldingFileSystem(backups);
      const scheduled = await replica(keyPrefix, 'a', holding.fs, { cron: '0 * * * *' });
      const manual = await replica(keyPrefix, 'b', new NodeFileSystem());
      expect(scheduled.app.get(SchedulerRegistry).doesExist('cron', PERSISTENCE_BACKUP_CRON)).toBe(
        true,
      );
      const client = new Redis(URL);
      scheduled.app.get(SessionManager).create({ id: 's1' });
      await scheduled.store.saveAll();

      for (let hour = 1; hour <= 3; hour++) {
        const held = holding.hold();
        await jest.advanceTimersByTimeAsync(HOUR); // the tick: the scheduled backup starts
        await held;
        const meta = await manual.store.backup();
        expect(meta.id).toBeDefined();
        holding.release();
        // The scheduled backup finishes in its replica's queue.
        await scheduled.store.saveAll();
        expect(errors).toEqual([]);
        const list = await scheduled.store.listBackups();
        expect(list).toHaveLength(2 * hour);
        expect(await hidden()).toEqual([]);
        // The lease is left to expire (in Redis's own time): the next hour's tick finds it free.
        await client.del(`${keyPrefix}lease:backup`);
      }
      client.disconnect();
    },
  );
});
