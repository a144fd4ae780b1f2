/*
 * The event-loop stalls of one full save into an empty store (or, with --load, of a cold load of
 * what it saved), with a 1 ms ticker: the longest gaps between ticks and when they happened.
 * `npm run bench` reports the longest; this says where in the operation each one falls. Not part of
 * `npm run bench`:
 *
 *   node --max-old-space-size=8192 -r ts-node/register/transpile-only bench/stall-probe.ts \
 *     [--tier large] [--format json] [--load]
 */
import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PersistenceModuleOptions, PersistenceStore } from '../lib';
import { openBenchApp } from './bench.app';
import { TierName, TIERS, Workload } from './workload';

/** Runs `work` under a 1 ms ticker; resolves its gaps over 8 ms, longest first, and its time. */
async function ticked(work: () => Promise<unknown>): Promise<{ ms: number; gaps: string }> {
  const gaps: Array<[number, number]> = [];
  const start = performance.now();
  let last = start;
  const ticker = setInterval(() => {
    const now = performance.now();
    if (now - last > 8) gaps.push([last - start, now - last]);
    last = now;
  }, 1);
  await work();
  const end = performance.now();
  clearInterval(ticker);
  if (end - last > 8) gaps.push([last - start, end - last]);
  const longest = gaps
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10)
    .map(([at, length]) => `${length.toFixed(0)} ms at ${at.toFixed(0)}`);
  return { ms: end - start, gaps: longest.join(', ') || 'none over 8 ms' };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tier: { type: 'string', default: 'large' },
      format: { type: 'string', default: 'json' },
      load: { type: 'boolean', default: false },
    },
  });
  const tier = values.tier as TierName;
  const options = { format: values.format } as PersistenceModuleOptions;
  const dir = await mkdtemp(join(tmpdir(), 'persistence-stall-probe-'));
  try {
    let app = await openBenchApp({ ...options, path: dir });
    new Workload(app, TIERS[tier]).fill();
    const save = await ticked(() => app.get(PersistenceStore).saveAll());
    console.log(
      `${tier} ${values.format} full save: ${save.ms.toFixed(0)} ms; stalls: ${save.gaps}`,
    );
    await app.close();
    if (values.load) {
      app = await openBenchApp({ ...options, path: dir, loadOnBoot: false });
      const load = await ticked(() => app.get(PersistenceStore).loadAll());
      console.log(`${tier} ${values.format} load: ${load.ms.toFixed(0)} ms; stalls: ${load.gaps}`);
      await app.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
