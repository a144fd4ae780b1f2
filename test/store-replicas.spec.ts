import Redis from 'ioredis';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StorageDriver } from 'nestjs-persistence';
import { PostgresStorageDriver } from 'nestjs-persistence/postgres';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { Cart, CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { createApp } from './fixtures/app.factory';
import { ChildApp } from './fixtures/child-process';
import { dropTables, POSTGRES_URL, postgresProblem, uniqueTable } from './fixtures/postgres';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix, until } from './fixtures/redis';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Real replicas: three application processes on one store of a shared server — a Redis key prefix
 * (the server at 127.0.0.1:6379) or a PostgreSQL table (test/fixtures/postgres.ts); each skipped
 * with the reason when its server does not answer — update their own items and shared ones
 * concurrently for a bounded number of rounds. Afterwards no acknowledged change is lost, every
 * conflict was reported as configured, and the replicas converge through the watch alone. Then
 * kill -9 during saves, small and large.
 */

const URL = 'redis://127.0.0.1:6379';
const ENTRY = 'test/fixtures/replica.main.ts';
const ROUNDS = 60;

/** One kind of shared storage: how a test names a store on it, and cleans up after. */
interface Backend {
  name: string;
  problem: string | undefined;
  /** A new store: the replicas' environment, and a driver on it for the test's own reads. */
  place(name: string): { env: Record<string, string>; driver: () => StorageDriver };
  cleanup(): Promise<void>;
}

const prefixes: string[] = [];
const tables: string[] = [];

const BACKENDS: Backend[] = [
  {
    name: 'Redis',
    problem: redisProblem(),
    place: (name) => {
      const keyPrefix = uniquePrefix(name);
      prefixes.push(keyPrefix);
      return {
        env: { DRIVER: 'redis', REDIS_URL: URL, KEY_PREFIX: keyPrefix },
        driver: () => new RedisStorageDriver({ url: URL, keyPrefix }),
      };
    },
    cleanup: async () => {
      if (prefixes.length === 0) return;
      const client = new Redis(URL);
      for (const prefix of prefixes.splice(0)) await removeKeys(client, prefix);
      client.disconnect();
    },
  },
  {
    name: 'PostgreSQL',
    problem: postgresProblem(),
    place: (name) => {
      const table = uniqueTable(name);
      tables.push(table);
      return {
        env: { DRIVER: 'postgres', POSTGRES_URL, TABLE: table },
        driver: () => new PostgresStorageDriver({ connectionString: POSTGRES_URL, table }),
      };
    },
    cleanup: () => dropTables(POSTGRES_URL, tables.splice(0)),
  },
];

interface Ack {
  round: number;
  own: string;
  value: string;
  rejected: string[];
}

const payloads = (child: ChildApp, tag: string): unknown[] =>
  child.lines
    .filter((line) => line.startsWith(`${tag} `))
    .map((line) => JSON.parse(line.slice(tag.length + 1)) as unknown);

describe.each(BACKENDS)('replicas on $name (real child processes)', (backend) => {
  const itServer = itOrSkip(backend.problem);
  let dir: string;
  const children: ChildApp[] = [];

  beforeEach(async () => {
    dir = await makeTempDir();
  });

  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.kill('SIGKILL');
      await child.exited;
    }
    await backend.cleanup();
    await removeDir(dir);
  });

  async function readStored(driver: () => StorageDriver): Promise<Map<string, Cart>> {
    const app = await createApp(
      {
        path: dir,
        storage: driver(),
        builtInAdapters: false,
        adapters: [CartAdapter],
        saveOnShutdown: false,
      },
      { imports: [CartModule] },
    );
    const carts = new Map(app.get(CartService).entries());
    await app.close();
    return carts;
  }

  for (const policy of ['last-write-wins', 'reject'] as const) {
    itServer(`three replicas, ${ROUNDS} rounds each, conflicts ${policy}`, async () => {
      const store = backend.place(`replicas-${policy}`);
      const go = join(dir, 'go');
      const sync = join(dir, 'sync');
      const replicas = ['r1', 'r2', 'r3'].map((replica) => {
        const child = new ChildApp(ENTRY, {
          ...store.env,
          REPLICA: replica,
          MODE: 'rounds',
          ROUNDS: String(ROUNDS),
          CONFLICTS: policy,
          GO_FILE: go,
          SYNC_FILE: sync,
        });
        children.push(child);
        return child;
      });
      for (const child of replicas) await child.waitFor('READY');
      await writeFile(go, '');
      for (const child of replicas) await child.waitFor('DONE', 60_000);
      for (const child of replicas) {
        expect(child.lines.filter((line) => /^(CRASH|ERROR|FAIL)/.test(line))).toEqual([]);
      }
      const started = performance.now();
      await writeFile(sync, '');
      const stored = await readStored(store.driver);
      const expected = JSON.stringify([...stored].sort(([a], [b]) => a.localeCompare(b)));
      await until(
        () => replicas.every((child) => child.lines.at(-1) === `STATE ${expected}`),
        'the replicas to converge on the stored state',
      );
      const convergeMs = performance.now() - started;

      // No acknowledged change lost: each replica's own items hold its last acknowledged value.
      let updates = 0;
      let conflicts = 0;
      const applied = new Map<string, Set<string>>();
      for (const child of replicas) {
        const acks = payloads(child, 'ACK') as Ack[];
        expect(acks).toHaveLength(ROUNDS);
        updates += acks.length * 2;
        const lastOwn = new Map<string, string>();
        for (const ack of acks) {
          lastOwn.set(ack.own, ack.value);
          const shared = `shared-${ack.round % 3}`;
          if (!ack.rejected.includes(shared)) {
            if (!applied.has(shared)) applied.set(shared, new Set());
            applied.get(shared)!.add(ack.value);
          }
        }
        for (const [id, value] of lastOwn) expect(stored.get(id)?.items).toEqual([value]);
        const reported = payloads(child, 'CONFLICT') as Array<{ id: string; applied: boolean }>;
        conflicts += reported.length;
        for (const conflict of reported) {
          expect(conflict.id).toMatch(/^shared-/);
          expect(conflict.applied).toBe(policy === 'last-write-wins');
        }
      }
      // Every shared item holds a version some replica committed (not a rejected one).
      for (let i = 0; i < 3; i++) {
        const value = stored.get(`shared-${i}`)?.items[0];
        expect(applied.get(`shared-${i}`)?.has(value!)).toBe(true);
      }
      expect(conflicts).toBeGreaterThan(0);
      process.stdout.write(
        `replicas on ${backend.name} (${policy}): ${updates} updates, ${conflicts} conflicts reported, ` +
          `0 acknowledged changes lost, converged in ${convergeMs.toFixed(0)} ms\n`,
      );
    });
  }

  itServer('kill -9 during saves: every acknowledged save present, none half-applied', async () => {
    // Small saves, then large ones (200 items of 2 KiB per commit): the kill lands mid-commit.
    for (const [stopAfter, bulk] of [
      [5, 0],
      [30, 0],
      [8, 200],
    ]) {
      const store = backend.place(`kill9-${stopAfter}-${bulk}`);
      const child = new ChildApp(ENTRY, {
        ...store.env,
        REPLICA: `k${stopAfter}`,
        MODE: 'loop',
        BULK: String(bulk),
      });
      children.push(child);
      await child.waitFor(`ACK ${stopAfter}`);
      child.kill('SIGKILL');
      await child.exited;
      const acked = Math.max(...(payloads(child, 'ACK') as number[]));
      const stored = await readStored(store.driver);
      const counter = stored.get('counter')!.total;
      expect(counter).toBeGreaterThanOrEqual(acked);
      expect(counter).toBeLessThanOrEqual(acked + 1); // the save in flight, whole or not at all
      for (let r = 1; r <= counter; r++) expect(stored.get(`k-${r}`)?.total).toBe(r);
      expect(stored.has(`k-${counter + 1}`)).toBe(false);
      for (let j = 0; j < bulk; j++) expect(stored.get(`bulk-${j}`)?.total).toBe(counter);
      process.stdout.write(
        `kill -9 on ${backend.name} (${bulk} bulk items a save): ${acked} acknowledged, ` +
          `${counter} stored (${counter > acked ? 'the save in flight landed whole' : 'the save in flight left nothing'})\n`,
      );
    }
  });
});
