import { INestApplication } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { PersistenceStore, SessionManager } from 'nestjs-persistence';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { CartModule, CartService, CartAdapter } from './fixtures/cart.adapter';
import { createApp } from './fixtures/app.factory';
import { itOrSkip } from './fixtures/preconditions';
import { RedisClusterProcess, redisServerProblem, until } from './fixtures/redis';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The Redis driver on a real Redis Cluster of the test's own (three masters on spare ports): a
 * store's keys share one hash slot (the driver puts keyPrefix in a hash tag), so commits, loads,
 * notices between replicas and leases work there as on one server.
 */

const cluster = new RedisClusterProcess('');
const problem = redisServerProblem();
const test = itOrSkip(problem);

describe('the Redis driver on a Redis Cluster', () => {
  let dir: string;
  let folder: string;
  const clients: Cluster[] = [];
  const apps: INestApplication[] = [];

  beforeAll(async () => {
    if (problem) return;
    folder = await makeTempDir();
    cluster.folder = folder;
    await cluster.start(3);
  }, 60_000);
  afterAll(async () => {
    await cluster.stop();
    if (folder) await removeDir(folder);
  });
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const client of clients.splice(0)) client.disconnect();
    await removeDir(dir);
  });

  const open = async (keyPrefix: string) => {
    const client = new Cluster(cluster.startupNodes, {
      lazyConnect: true,
      enableOfflineQueue: false,
      redisOptions: { maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false },
    });
    client.on('error', () => undefined);
    clients.push(client);
    const app = await createApp(
      {
        path: dir,
        storage: new RedisStorageDriver({ client, keyPrefix }),
        adapters: [CartAdapter],
      },
      { imports: [CartModule] },
    );
    apps.push(app);
    return app;
  };

  test('saves, loads, follows another replica, and keeps every key of the store in one slot', async () => {
    const keyPrefix = `app:${Date.now()}:`; // no hash tag of its own: the driver adds one
    const one = await open(keyPrefix);
    const two = await open(keyPrefix);
    one.get(SessionManager).create({ id: 's1', metadata: { user: 'ada' } });
    one.get(CartService).set('c1', { items: ['tea'], total: 3 });
    await one.get(PersistenceStore).saveAll();
    await until(() => two.get(CartService).get('c1') !== undefined, 'the other replica to follow');
    expect(two.get(SessionManager).get('s1')?.metadata).toEqual({ user: 'ada' });

    two.get(CartService).set('c1', { items: ['tea', 'milk'], total: 5 });
    await two.get(PersistenceStore).saveAll();
    await until(() => one.get(CartService).get('c1')?.total === 5, 'the first replica to follow');

    // Every key of the store, on whichever node holds it: one slot, on one node.
    const found: Array<{ port: number; key: string }> = [];
    for (const node of clients[0].nodes('master')) {
      const keys = await node.keys(`{${keyPrefix}}*`);
      for (const key of keys) found.push({ port: Number(node.options.port), key });
    }
    expect(found.length).toBeGreaterThanOrEqual(5); // items, indexes, the revision counter
    const slots = new Set(
      await Promise.all(found.map(({ key }) => clients[0].cluster('KEYSLOT', key))),
    );
    expect(slots.size).toBe(1);
    expect(new Set(found.map((f) => f.port)).size).toBe(1);

    for (const app of apps.splice(0)) await app.close();
    const again = await open(keyPrefix);
    expect(again.get(CartService).get('c1')).toEqual({ items: ['tea', 'milk'], total: 5 });
    expect(again.get(SessionManager).get('s1')).toBeDefined();
  });

  test('a lease is taken once across the cluster', async () => {
    const keyPrefix = `lease:${Date.now()}:`;
    const client = new Cluster(cluster.startupNodes, { lazyConnect: true });
    client.on('error', () => undefined);
    clients.push(client);
    const a = new RedisStorageDriver({ client, keyPrefix, replicaId: 'a' });
    const b = new RedisStorageDriver({ client, keyPrefix, replicaId: 'b' });
    await a.open();
    await b.open();
    const lease = await a.acquireLease('backup', 5_000);
    expect(lease?.token).toBe(1);
    expect(await b.acquireLease('backup', 5_000)).toBeUndefined();
    await lease?.release();
    expect((await b.acquireLease('backup', 5_000))?.token).toBe(2);
    await a.close();
    await b.close();
  });
});
