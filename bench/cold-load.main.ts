/*
 * A fresh process that opens a store written by a cell and reads everything back (BENCH_COLD =
 * {"backend", "dir", "format"}): the cold load an application lives through at a restart. The page
 * cache is warm (dropping it needs root); the process, its modules and the heap are new.
 */
import 'reflect-metadata';
import type { ComparatorName } from './backends';
import { ColdLoadResult } from './cell.types';
import { report } from './child.runner';
import { probe } from './probe';
import { dumpOf } from './dump';

async function main(): Promise<void> {
  const { backend, dir, format } = JSON.parse(process.env.BENCH_COLD!) as {
    backend: string;
    dir: string;
    format?: string;
  };
  let result: ColdLoadResult;
  // Each side loads only its own modules (Nest and the library, or the comparator's package).
  if (backend === 'ours' || backend === 'redis') {
    const { PersistenceStore } = await import('../lib');
    const { RedisStorageDriver } = await import('../lib/storage/redis');
    const { openBenchApp } = await import('./bench.app');
    const { itemsOf } = await import('./workload');
    const bootStarted = performance.now();
    // For redis, `dir` is the key prefix the cell wrote under.
    const app = await openBenchApp({
      path: backend === 'redis' ? process.cwd() : dir,
      format: format as 'json',
      loadOnBoot: false,
      ...(backend === 'redis'
        ? {
            storage: new RedisStorageDriver({
              url: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
              keyPrefix: dir,
            }),
          }
        : {}),
    });
    const bootMs = performance.now() - bootStarted;
    const store = app.get(PersistenceStore);
    const { figures } = await probe(() => store.loadAll());
    const processMs = performance.now();
    const dump = dumpOf(itemsOf(app));
    await app.close();
    result = { load: figures, processMs, bootMs, dump };
  } else {
    const { createComparator } = await import('./backends');
    const comparator = createComparator(backend as ComparatorName);
    const { figures, result: items } = await probe(() => comparator.load(dir));
    const processMs = performance.now();
    result = { load: figures, processMs, dump: dumpOf(items) };
  }
  report(result);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
