/*
 * The Redis driver beside its floor, on the medium tier's bytes (docs/storage-drivers.md):
 *
 *   npx ts-node --transpile-only bench/redis.bench.ts [--url redis://127.0.0.1:6379] [--runs 5]
 *
 * Items are built through the public managers (bench/workload.ts) and turned into bytes by the json
 * serializer, as a save would. Each case is timed `runs` times under a fresh key prefix, median shown:
 *  - full commit: RedisStorageDriver.commit of every item (new items: expectedRevision null), one Lua
 *    script; floor: the same bytes as raw SETs in one pipeline (no index, no revision, no atomicity);
 *  - full update: the same with every item's revision expected (compare-and-set on each);
 *  - 1% commit: the steady-state save of 1% of the items, and its floor;
 *  - loadAll: the whole tier back, and its floor: pipelined GETs of the raw keys.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Redis from 'ioredis';
import { JsonSerializer } from '../lib';
import type { DriverChange } from '../lib/interfaces/storage-driver.interface';
import { RedisStorageDriver } from '../lib/storage/redis';
import { openBenchApp } from './bench.app';
import { TIERS, Workload } from './workload';

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1];
const ms = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { url: { type: 'string' }, runs: { type: 'string' } },
  });
  const url = values.url ?? 'redis://127.0.0.1:6379';
  const runs = Number(values.runs ?? 5);
  const dir = await mkdtemp(join(tmpdir(), 'redis-bench-'));
  const app = await openBenchApp({ path: dir });
  const workload = new Workload(app, TIERS.medium);
  workload.fill();
  const serializer = new JsonSerializer();
  const items = workload.all().map(([collection, id, value]) => ({
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

  const admin = new Redis(url);
  const prefixes: string[] = [];
  const times: Record<string, number[]> = {};
  const record = (name: string, value: number): void => {
    (times[name] ??= []).push(value);
  };
  try {
    for (let run = 0; run < runs; run++) {
      const prefix = `{bench:redis:${process.pid}:${run}}:`; // its own hash tag: the raw keys share it
      prefixes.push(prefix);
      const driver = new RedisStorageDriver({ url, keyPrefix: prefix, replicaId: 'bench' });
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

      const raw = (item: { collection: string; id: string }): string =>
        `${prefix}raw:${item.collection}:${item.id}`;
      let start = process.hrtime.bigint();
      const pipeline = admin.pipeline();
      for (const item of items) pipeline.set(raw(item), item.data);
      await pipeline.exec();
      record('full commit floor', ms(start));
      record('full update (CAS) floor', times['full commit floor'][run]);

      start = process.hrtime.bigint();
      const smallPipeline = admin.pipeline();
      for (const item of onePercent) smallPipeline.set(raw(item), item.data);
      await smallPipeline.exec();
      record('1% commit floor', ms(start));

      start = process.hrtime.bigint();
      const reads = admin.pipeline();
      for (const item of items) reads.getBuffer(raw(item));
      await reads.exec();
      record('loadAll floor', ms(start));
    }
  } finally {
    for (const prefix of prefixes) {
      let cursor = '0';
      do {
        const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        if (keys.length > 0) await admin.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    }
    await admin.quit();
  }

  console.log('\n| case | driver (ms) | floor: raw pipelined SET/GET (ms) | ratio |');
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
