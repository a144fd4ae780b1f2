/*
 * The PostgreSQL driver beside its floor, on the medium tier's bytes (docs/storage-drivers.md):
 *
 *   npx ts-node --transpile-only bench/postgres.bench.ts [--url postgres://…/test] [--runs 5]
 *
 * Items are built through the public managers (bench/workload.ts) and turned into bytes by the json
 * serializer, as a save would. Each case is timed `runs` times on a fresh table, median shown:
 *  - full commit: PostgresStorageDriver.commit of every item (new items), one transaction; floor:
 *    the same bytes as batched `INSERT … ON CONFLICT DO UPDATE` (1,000 rows a statement) into a
 *    plain (collection, id, data) table in one transaction (no revision check, no counter, no notice);
 *  - full update: the same with every item's revision expected (compare-and-set on each); its floor
 *    is the same upsert over existing rows;
 *  - 1% commit: the steady-state save of 1% of the items, and its floor;
 *  - loadAll: the whole tier back, and its floor: one SELECT of the plain table.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { JsonSerializer } from '../lib';
import type { DriverChange } from '../lib/interfaces/storage-driver.interface';
import { PostgresStorageDriver } from '../lib/storage/postgres';
import { openBenchApp } from './bench.app';
import { TIERS, Workload } from './workload';

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1];
const ms = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6;

interface Item {
  collection: string;
  id: string;
  data: Buffer;
}

/** The floor: batched upserts of the same bytes into a plain table, in one transaction. */
async function upsert(client: Client, table: string, items: readonly Item[]): Promise<void> {
  await client.query('BEGIN');
  for (let start = 0; start < items.length; start += 1000) {
    const chunk = items.slice(start, start + 1000);
    await client.query(
      `INSERT INTO "${table}" (collection, id, data) VALUES ${chunk
        .map((_, k) => `($${3 * k + 1}, $${3 * k + 2}, $${3 * k + 3})`)
        .join(', ')} ON CONFLICT (collection, id) DO UPDATE SET data = excluded.data`,
      chunk.flatMap((item) => [item.collection, item.id, item.data]),
    );
  }
  await client.query('COMMIT');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { url: { type: 'string' }, runs: { type: 'string' } },
  });
  const url = values.url ?? 'postgres://postgres@127.0.0.1:5432/test';
  const runs = Number(values.runs ?? 5);
  const dir = await mkdtemp(join(tmpdir(), 'postgres-bench-'));
  const app = await openBenchApp({ path: dir });
  const workload = new Workload(app, TIERS.medium);
  workload.fill();
  const serializer = new JsonSerializer();
  const items: Item[] = workload.all().map(([collection, id, value]) => ({
    collection,
    id,
    data: serializer.serialize(value),
  }));
  const onePercent = items.filter((_, i) => i % 100 === 0);
  await app.close();
  await rm(dir, { recursive: true, force: true });
  const totalBytes = items.reduce((sum, item) => sum + item.data.length, 0);
  console.log(
    `medium tier: ${items.length} items, ${(totalBytes / 1024 / 1024).toFixed(1)} MiB (json), ` +
      `1%: ${onePercent.length} items; ${runs} runs, median`,
  );

  const admin = new Client({ connectionString: url });
  await admin.connect();
  const tables: string[] = [];
  const times: Record<string, number[]> = {};
  const record = (name: string, value: number): void => {
    (times[name] ??= []).push(value);
  };
  try {
    for (let run = 0; run < runs; run++) {
      const table = `bench_pg_${process.pid}_${run}`;
      tables.push(table);
      const driver = new PostgresStorageDriver({
        connectionString: url,
        table,
        replicaId: 'bench',
      });
      await driver.open();
      try {
        const changes: DriverChange[] = items.map((item) => ({ ...item, expectedRevision: null }));
        let start = process.hrtime.bigint();
        const created = await driver.commit(changes, { conflicts: 'reject' });
        record('full commit', ms(start));
        if (created.applied.length !== items.length) throw new Error('not all items applied');

        const updates = items.map((item) => ({ ...item, expectedRevision: created.revision! }));
        start = process.hrtime.bigint();
        const updated = await driver.commit(updates, { conflicts: 'reject' });
        record('full update (CAS)', ms(start));
        if (updated.conflicts.length > 0) throw new Error('unexpected conflicts');

        const small = onePercent.map((item) => ({ ...item, expectedRevision: updated.revision! }));
        start = process.hrtime.bigint();
        await driver.commit(small, { conflicts: 'reject' });
        record('1% commit', ms(start));

        start = process.hrtime.bigint();
        const loaded = await driver.loadAll(['sessions', 'conversations', 'focus']);
        record('loadAll', ms(start));
        if (loaded.records.length !== items.length) throw new Error('loadAll lost items');
      } finally {
        await driver.close();
      }

      const raw = `${table}_raw`;
      tables.push(raw);
      await admin.query(
        `CREATE TABLE "${raw}" (collection text, id text, data bytea NOT NULL,
           PRIMARY KEY (collection, id))`,
      );
      let start = process.hrtime.bigint();
      await upsert(admin, raw, items);
      record('full commit floor', ms(start));
      start = process.hrtime.bigint();
      await upsert(admin, raw, items);
      record('full update (CAS) floor', ms(start));
      start = process.hrtime.bigint();
      await upsert(admin, raw, onePercent);
      record('1% commit floor', ms(start));
      start = process.hrtime.bigint();
      const { rows } = await admin.query(`SELECT collection, id, data FROM "${raw}"`);
      record('loadAll floor', ms(start));
      if (rows.length !== items.length) throw new Error('the floor lost items');
    }
  } finally {
    for (const table of tables) {
      for (const suffix of ['', '_meta', '_leases', '_quarantine']) {
        await admin.query(`DROP TABLE IF EXISTS "${table}${suffix}"`);
      }
    }
    await admin.end();
  }

  console.log(
    '\n| case | driver (ms) | floor: batched INSERT … ON CONFLICT / SELECT (ms) | ratio |',
  );
  console.log('| --- | ---: | ---: | ---: |');
  for (const name of ['full commit', 'full update (CAS)', '1% commit', 'loadAll']) {
    const driver = median(times[name]);
    const floor = median(times[`${name} floor`]);
    console.log(
      `| ${name} | ${driver.toFixed(1)} | ${floor.toFixed(1)} | ${(driver / floor).toFixed(2)}x |`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
