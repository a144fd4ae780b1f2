import Redis from 'ioredis';
import { PersistenceError, PersistenceErrorCode } from 'nestjs-persistence';
import type { DriverChange, DriverWatchEvent } from '../lib/interfaces/storage-driver.interface';
import { RedisStorageDriver } from '../lib/storage/redis';
import { itOrSkip } from './fixtures/preconditions';
import { freePort, RedisServerProcess, redisServerProblem, until } from './fixtures/redis';

/*
 * Faults with a real redis-server that the test launches itself on a spare port (no persistence):
 * stopped before or during a commit, down at open(), started again on the same port.
 */

const itServer = itOrSkip(redisServerProblem());

async function rejection(promise: Promise<unknown>): Promise<PersistenceError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(PersistenceError);
    return error as PersistenceError;
  }
  throw new Error('expected a rejection');
}

const change = (id: string, data: string | Buffer, expectedRevision = 0): DriverChange => ({
  collection: 'c',
  id,
  data: typeof data === 'string' ? Buffer.from(data) : data,
  expectedRevision,
});

describe('RedisStorageDriver faults (own redis-server)', () => {
  let server: RedisServerProcess;
  const drivers: RedisStorageDriver[] = [];
  const clients: Redis[] = [];

  function driver(replicaId = 'r'): RedisStorageDriver {
    const created = new RedisStorageDriver({
      url: server.url,
      keyPrefix: 'faults:',
      replicaId,
      connectTimeoutMs: 500,
    });
    drivers.push(created);
    return created;
  }

  beforeEach(async () => {
    server = new RedisServerProcess(await freePort());
  });
  afterEach(async () => {
    for (const created of drivers.splice(0)) await created.close();
    for (const client of clients.splice(0)) client.disconnect();
    await server.stop('SIGKILL');
  });

  itServer(
    'open() while Redis is down rejects with the retryable error; it opens once up',
    async () => {
      const down = driver();
      const error = await rejection(down.open());
      expect(error.code).toBe(PersistenceErrorCode.StorageUnavailable);
      expect(error.message).toContain(`127.0.0.1:${server.port}`);
      expect(error.message).toContain('can be retried');
      await server.start();
      await down.open();
      const result = await down.commit([change('x', '1')], { conflicts: 'reject' });
      expect(result.applied).toHaveLength(1);
    },
  );

  itServer(
    'a commit while Redis is stopped rejects; the next one after a restart succeeds',
    async () => {
      await server.start();
      const a = driver('a');
      await a.open();
      const first = await a.commit([change('x', 'v1')], { conflicts: 'reject' });
      expect(first.revision).toBe(1);

      await server.stop('SIGTERM');
      const failed = await rejection(a.commit([change('y', 'v1')], { conflicts: 'reject' }));
      expect(failed.code).toBe(PersistenceErrorCode.StorageUnavailable);
      expect(failed.operation).toBe('save');
      const load = await rejection(a.loadAll(['c']));
      expect(load.code).toBe(PersistenceErrorCode.StorageUnavailable);

      await server.start(); // same port, empty (no persistence)
      // The driver reconnects by itself; commits fail fast until it has.
      let result: Awaited<ReturnType<typeof a.commit>> | undefined;
      await until(async () => {
        result = await a.commit([change('y', 'v2')], { conflicts: 'reject' }).catch((error) => {
          expect((error as PersistenceError).code).toBe(PersistenceErrorCode.StorageUnavailable);
          return undefined;
        });
        return result !== undefined;
      }, 'a commit after the restart');
      expect(result!.applied.map((c) => c.id)).toEqual(['y']);
      const loaded = await a.loadAll(['c']);
      expect(loaded.records.map((r) => [r.id, r.data.toString()])).toEqual([['y', 'v2']]);
    },
  );

  itServer('a commit cut off mid-way is rejected and invisible, or applied whole', async () => {
    await server.start();
    const admin = new Redis(server.url);
    clients.push(admin);
    const a = driver('cut');
    await a.open();
    // A large commit (200 items of 100 KiB): its connection is killed while Redis receives it.
    const payload = Buffer.alloc(100 * 1024, 7);
    const changes = Array.from({ length: 200 }, (_, i) => change(`item-${i}`, payload));
    const outcomes: string[] = [];
    for (let round = 0; round < 3; round++) {
      // The outcome's handlers are attached at once: the commit may fail while the test kills it.
      const outcome = a
        .commit(
          changes.map((c) => ({ ...c, expectedRevision: null })),
          { conflicts: 'last-write-wins' },
        )
        .then(
          () => 'applied',
          (error: PersistenceError) => {
            expect(error).toBeInstanceOf(PersistenceError);
            expect(error.code).toBe(PersistenceErrorCode.StorageUnavailable);
            return 'rejected';
          },
        );
      const clientsList = await admin.client('LIST');
      const id = /id=(\d+) [^\n]*name=nestjs-persistence:cut /.exec(String(clientsList))?.[1];
      expect(id).toBeDefined();
      await admin.client('KILL', 'ID', id!).catch(() => undefined); // it may be over already
      outcomes.push(await outcome);
      // Whole or nothing: every item of the commit, or none of them (the round before wrote all).
      const count = await admin.scard('faults:index:c');
      expect([0, 200]).toContain(count);
      if (round === 0 && outcomes[round] === 'rejected') expect(count).toBe(0);
      await until(
        async () =>
          (await a
            .commit([{ ...change(`after-${round}`, 'ok'), collection: 'other' }], {
              conflicts: 'reject',
            })
            .then(
              () => true,
              () => false,
            )) === true,
        'a commit after the reconnect',
      );
    }
    expect(outcomes).toContain('rejected');
  });

  itServer('Redis killed during a large commit: typed rejection, then commits go on', async () => {
    await server.start();
    const a = driver('k');
    await a.open();
    const payload = Buffer.alloc(256 * 1024, 1);
    const failed = rejection(
      a.commit(
        Array.from({ length: 200 }, (_, i) => change(`big-${i}`, payload)),
        { conflicts: 'reject' },
      ),
    );
    await server.stop('SIGKILL');
    const error = await failed;
    expect(error.code).toBe(PersistenceErrorCode.StorageUnavailable);
    await server.start();
    await until(
      async () =>
        (await a.commit([change('z', 'ok')], { conflicts: 'reject' }).then(
          () => true,
          () => false,
        )) === true,
      'a commit after the restart',
    );
    expect((await a.loadAll(['c'])).records.map((r) => r.id)).toEqual(['z']);
  });

  itServer('a watcher asks for a resync after its connection came back', async () => {
    await server.start();
    const a = driver('wa');
    const b = driver('wb');
    await a.open();
    await b.open();
    const events: DriverWatchEvent[] = [];
    b.watch((event) => events.push(event));
    await until(async () => {
      await a.commit([change(`p${events.length}-${Date.now()}`, 'p')], { conflicts: 'reject' });
      return events.length > 0;
    }, 'the first notice');
    await server.stop('SIGTERM');
    await server.start();
    await until(() => events.some((event) => event.kind === 'resync'), 'the resync event');
    // Notices flow again after the resync.
    const count = events.length;
    await until(async () => {
      await a
        .commit([change(`q${Date.now()}`, 'q')], { conflicts: 'reject' })
        .catch(() => undefined);
      return events.length > count;
    }, 'a notice after the restart');
  });
});
