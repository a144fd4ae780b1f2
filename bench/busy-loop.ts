/*
 * What a small save costs when the event loop is busy, as under HTTP load: every trip to the thread
 * pool waits for a turn of the loop behind the application's work. A timer burns `--burn` ms per
 * turn while 1% saves run (medium tier, json); the figure to watch is the loop turns a save waits
 * for. Not part of `npm run bench`:
 *
 *   npx ts-node --transpile-only bench/busy-loop.ts [--burn 2] [--rounds 40]
 */
import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PersistenceStore } from '../lib';
import { openBenchApp } from './bench.app';
import { TIERS, Workload } from './workload';

const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { burn: { type: 'string', default: '2' }, rounds: { type: 'string', default: '40' } },
  });
  const burnMs = Number(values.burn);
  const dir = await mkdtemp(join(tmpdir(), 'persistence-busy-loop-'));
  const app = await openBenchApp({ path: dir, format: 'json' });
  try {
    const workload = new Workload(app, TIERS.medium);
    workload.fill();
    const store = app.get(PersistenceStore);
    await store.saveAll();
    await store.checkpoint();
    let busy = false;
    let turns = 0;
    const burn = (): void => {
      if (!busy) return;
      turns++;
      const until = performance.now() + burnMs;
      while (performance.now() < until);
      setTimeout(burn, 0);
    };
    const quiet: number[] = [];
    const loaded: number[] = [];
    const waited: number[] = [];
    for (let round = 1; round <= Number(values.rounds); round++) {
      workload.changeOnePercent(round);
      let started = performance.now();
      await store.saveAll();
      quiet.push(performance.now() - started);
      workload.changeOnePercent(round + 100_000);
      busy = true;
      burn(); // the first busy turn runs now, before the save starts
      turns = 0;
      started = performance.now();
      await store.saveAll();
      loaded.push(performance.now() - started);
      waited.push(turns);
      busy = false;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    console.log(
      `1% save, medium, json: quiet p50 ${median(quiet).toFixed(2)} ms; with a ${burnMs} ms ` +
        `busy turn: p50 ${median(loaded).toFixed(2)} ms, ${median(waited)} loop turns waited`,
    );
  } finally {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
