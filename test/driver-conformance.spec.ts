import Redis from 'ioredis';
import { PostgresStorageDriver } from 'nestjs-persistence/postgres';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import {
  DriverPlace,
  InMemoryStorage,
  InMemoryStorageDriver,
  storageDriverChecks,
} from 'nestjs-persistence/testing';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix } from './fixtures/redis';
import { dropTables, POSTGRES_URL, postgresProblem, sql, uniqueTable } from './fixtures/postgres';
import { TcpProxy } from './fixtures/tcp-proxy';

/*
 * The conformance kit of nestjs-persistence/testing (storageDriverChecks) on every driver of the
 * package: the checks a third-party driver runs the same way (docs/storage-drivers.md). The Redis
 * driver runs them through a TCP proxy, whose cut is a real network outage for the outage check.
 */

describe('conformance: the in-memory driver', () => {
  for (const { name, run } of storageDriverChecks(
    () => {
      const storage = new InMemoryStorage();
      return {
        driver: (replicaId) => new InMemoryStorageDriver({ storage, replicaId }),
        stop: () => Promise.resolve(storage.stop()),
        start: () => Promise.resolve(storage.start()),
      };
    },
    { stop: true },
  )) {
    it(name, run);
  }
});

describe('conformance: the Redis driver', () => {
  const problem = redisProblem();
  const test = itOrSkip(problem);
  const proxy = new TcpProxy(6379);
  let admin: Redis | undefined;
  beforeAll(async () => {
    if (problem) return;
    await proxy.start();
    admin = new Redis('redis://127.0.0.1:6379');
  });
  afterAll(async () => {
    await proxy.cut();
    await admin?.quit();
  });

  const place = (): DriverPlace => {
    const keyPrefix = uniquePrefix('conformance');
    return {
      driver: (replicaId) =>
        new RedisStorageDriver({ url: `redis://127.0.0.1:${proxy.port}`, keyPrefix, replicaId }),
      stop: () => proxy.cut(),
      start: () => proxy.restore(),
      corrupt: async (collection, id) => {
        await admin!.hset(`${keyPrefix}item:${collection}:${id}`, 'rev', 'not a number');
      },
      dispose: () => removeKeys(admin!, keyPrefix),
    };
  };
  for (const { name, run } of storageDriverChecks(place, { stop: true, corrupt: true })) {
    test(name, run, 30_000);
  }
});

describe('conformance: the PostgreSQL driver', () => {
  const problem = postgresProblem();
  const test = itOrSkip(problem);
  const proxy = new TcpProxy(5432);
  beforeAll(async () => {
    if (!problem) await proxy.start();
  });
  afterAll(() => proxy.cut());

  const place = (): DriverPlace => {
    const table = uniqueTable('conformance');
    const url = new URL(POSTGRES_URL);
    url.port = String(proxy.port);
    return {
      driver: (replicaId) =>
        new PostgresStorageDriver({ connectionString: url.toString(), table, replicaId }),
      stop: () => proxy.cut(),
      start: () => proxy.restore(),
      corrupt: async (collection, id) => {
        await sql(
          POSTGRES_URL,
          `UPDATE "${table}" SET revision = 0 WHERE collection = $1 AND id = $2`,
          [collection, id],
        );
      },
      dispose: () => dropTables(POSTGRES_URL, [table]),
    };
  };
  for (const { name, run } of storageDriverChecks(place, { stop: true, corrupt: true })) {
    test(name, run, 30_000);
  }
});

describe('conformance: the kit fails a driver that breaks the contract', () => {
  /** An in-memory driver that ignores the conflict policy and tells its own commits to itself. */
  class CarelessDriver extends InMemoryStorageDriver {
    override commit(...[changes]: Parameters<InMemoryStorageDriver['commit']>) {
      return super.commit(changes, { conflicts: 'last-write-wins' });
    }
  }
  const checks = storageDriverChecks(() => {
    const storage = new InMemoryStorage();
    return { driver: (replicaId) => new CarelessDriver({ storage, replicaId }) };
  });
  const named = (start: string) => checks.find((c) => c.name.startsWith(start))!;

  it('a driver that overwrites under "reject" fails the reject check, and only the checks it breaks', async () => {
    await expect(named('"reject"').run()).rejects.toThrow(/conflicting change is not applied/);
    await expect(named('"last-write-wins"').run()).resolves.toBeUndefined();
    await expect(named('commits bytes').run()).resolves.toBeUndefined();
  });
});
