import { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PersistenceStore, SessionManager } from 'nestjs-persistence';
import { PostgresStorageDriver } from 'nestjs-persistence/postgres';
import { RedisStorageDriver } from 'nestjs-persistence/redis';
import { createApp } from './fixtures/app.factory';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { childCommand } from './fixtures/child-process';
import { buildCli, CliResult, runCli } from './fixtures/cli';
import { dropTables, POSTGRES_URL, postgresProblem, uniqueTable } from './fixtures/postgres';
import { itOrSkip } from './fixtures/preconditions';
import { redisProblem, removeKeys, uniquePrefix } from './fixtures/redis';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const REDIS_URL = 'redis://127.0.0.1:6379';
const COLLECTIONS = 'carts,sessions';

/*
 * The CLI on a storage driver's store (--storage): the same commands, through the store in a Nest
 * context, against a real Redis and a real PostgreSQL written by a real application.
 */
describe('CLI --storage (Redis, PostgreSQL)', () => {
  let work: string;
  let main: string;
  let root: string;
  const apps: INestApplication[] = [];
  const prefixes: string[] = [];
  const tables: string[] = [];

  beforeAll(async () => {
    work = await makeTempDir('persistence-cli-storage-build-');
    main = await buildCli(work);
  }, 60_000);
  afterAll(() => removeDir(work));
  beforeEach(async () => {
    root = await makeTempDir('persistence-cli-storage-');
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    if (prefixes.length > 0) {
      const client = new Redis(REDIS_URL);
      for (const prefix of prefixes.splice(0)) await removeKeys(client, prefix);
      await client.quit();
    }
    await dropTables(POSTGRES_URL, tables.splice(0)).catch(() => undefined);
    await removeDir(root);
  });

  const cli = (...args: string[]): Promise<CliResult> => runCli(main, args);

  /** An app on the driver with two carts and two sessions, saved. */
  const seed = async (storage: RedisStorageDriver | PostgresStorageDriver) => {
    const app = await createApp(
      { storage, adapters: [CartAdapter], autoSave: false },
      { imports: [CartModule] },
    );
    apps.push(app);
    app.get(CartService).set('cart-1', { items: ['apple'], total: 1 });
    app.get(CartService).set('cart-2', { items: ['pear', 'fig'], total: 7 });
    app.get(SessionManager).create({ id: 'sess-1' });
    app.get(SessionManager).create({ id: 'sess-2' });
    await app.get(PersistenceStore).saveAll();
    return app;
  };

  /** inspect, export, backup, then a change, then restore: the backup's state comes back. */
  const roundTrip = async (storage: string[], app: INestApplication): Promise<void> => {
    const inspect = await cli('inspect', ...storage, '--collections', COLLECTIONS, '--json');
    expect(inspect.stderr).toBe('');
    expect(inspect.code).toBe(0);
    expect(JSON.parse(inspect.stdout)).toMatchObject({
      collections: [
        { name: 'carts', items: 2 },
        { name: 'sessions', items: 2 },
      ],
      problems: [],
    });
    const exported = await cli('export', ...storage, '--collections', COLLECTIONS);
    expect(exported.code).toBe(0);
    const before = JSON.parse(exported.stdout).collections;
    expect(before.carts).toEqual({
      'cart-1': { items: ['apple'], total: 1 },
      'cart-2': { items: ['pear', 'fig'], total: 7 },
    });
    expect(Object.keys(before.sessions)).toEqual(['sess-1', 'sess-2']);

    const backup = join(root, 'backup');
    const made = await cli('backup', ...storage, '--collections', COLLECTIONS, backup);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    expect(made.stdout).toContain('Backed up 4 files');

    // The application changes the store after the backup, then stops.
    app.get(CartService).set('cart-1', { items: [], total: 0 });
    app.get(CartService).set('cart-3', { items: ['new'], total: 3 });
    await app.get(PersistenceStore).saveAll();
    apps.splice(apps.indexOf(app), 1);
    await app.close();

    const restored = await cli('restore', ...storage, backup);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    const after = await cli('export', ...storage, '--collections', COLLECTIONS);
    expect(JSON.parse(after.stdout).collections).toEqual(before);

    // import: refused over items unless --replace, then the document's items replace them.
    const doc = join(root, 'doc.json');
    await writeFile(
      doc,
      JSON.stringify({
        format: 'nestjs-persistence-export',
        version: 1,
        itemVersion: 1,
        collections: { carts: { 'cart-9': { items: ['kiwi'], total: 9 } } },
      }),
    );
    const refused = await cli('import', ...storage, doc);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('already holds items in "carts"');
    expect((await cli('import', ...storage, doc, '--replace')).code).toBe(0);
    const imported = await cli('export', ...storage, '--collections', COLLECTIONS);
    expect(JSON.parse(imported.stdout).collections).toEqual({
      carts: { 'cart-9': { items: ['kiwi'], total: 9 } },
      sessions: before.sessions,
    });
  };

  itOrSkip(redisProblem())(
    'Redis: inspect, export, backup and restore through --storage redis:// --key-prefix',
    async () => {
      const keyPrefix = uniquePrefix('cli');
      prefixes.push(keyPrefix);
      const app = await seed(new RedisStorageDriver({ url: REDIS_URL, keyPrefix }));
      const storage = ['--storage', REDIS_URL, '--key-prefix', keyPrefix];
      // Differential backups of a driver's store into a backups folder, as the backups option does.
      const backups = join(root, 'backups');
      for (let i = 0; i < 2; i++) {
        const into = await cli(
          'backup',
          ...storage,
          '--collections',
          COLLECTIONS,
          '--into',
          backups,
        );
        expect(into.stderr).toBe('');
        expect(into.code).toBe(0);
      }
      const listed = JSON.parse((await cli('backups', 'list', backups, '--json')).stdout);
      expect(listed.map((b: { files: number }) => b.files)).toEqual([4, 4]);
      await roundTrip(storage, app);
      // Without its key prefix a Redis store is not named: a usage error.
      const noPrefix = await cli('inspect', '--storage', REDIS_URL, '--collections', 'carts');
      expect(noPrefix.code).toBe(2);
      expect(noPrefix.stderr).toContain('needs --key-prefix');
    },
    60_000,
  );

  itOrSkip(postgresProblem())(
    'PostgreSQL: inspect, export, backup and restore through --storage postgres:// --table',
    async () => {
      const table = uniqueTable('cli');
      tables.push(table);
      const app = await seed(new PostgresStorageDriver({ connectionString: POSTGRES_URL, table }));
      await roundTrip(['--storage', POSTGRES_URL, '--table', table], app);
    },
    60_000,
  );

  it('a missing driver package, a driver without --collections, and commands that need a folder: clear refusals', async () => {
    const blocked = (pkg: string, args: string[]) =>
      runCli(main, args, {
        NODE_OPTIONS: `--require ${childCommand('test/fixtures/block-module.ts').at(-1)}`,
        NESTJS_PERSISTENCE_TEST_BLOCK: pkg,
      });
    const redis = await blocked('ioredis', [
      'export',
      '--storage',
      REDIS_URL,
      '--key-prefix',
      'app:',
      '--collections',
      'carts',
    ]);
    expect(redis.code).toBe(1);
    expect(redis.stderr).toContain('needs the ioredis package: npm install ioredis');
    const pg = await blocked('pg', [
      'backup',
      '--storage',
      'postgresql://127.0.0.1:1/none',
      '--collections',
      'carts',
      join(root, 'b'),
    ]);
    expect(pg.code).toBe(1);
    expect(pg.stderr).toContain('needs the pg package: npm install pg');

    const noCollections = await cli('export', '--storage', REDIS_URL, '--key-prefix', 'app:');
    expect(noCollections.code).toBe(2);
    expect(noCollections.stderr).toContain('give --collections');
    const unknown = await cli('inspect', '--storage', 'mysql://h/db', '--collections', 'carts');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('Unknown --storage');
    const quarantine = await cli('quarantine', 'list', '--storage', REDIS_URL);
    expect(quarantine.code).toBe(2);
    expect(quarantine.stderr).toContain('works on a store folder only');
    const migrate = await cli('migrate', '--storage', REDIS_URL, '--module', 'x.js');
    expect(migrate.code).toBe(2);
    expect(migrate.stderr).toContain('works on a store folder only');
  });
});
