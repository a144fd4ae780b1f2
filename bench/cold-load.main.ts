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
  if (backend === 'ours' || backend === 'redis' || backend === 'postgres') {
    const { PersistenceStore } = await import('../lib');
    const { createDriver, isDriverBackend } = await import('./drivers');
    const { openBenchApp } = await import('./bench.app');
    const { itemsOf } = await import('./workload');
    const bootStarted = performance.now();
    // For a driver backend, `dir` is the key prefix or table the cell wrote to.
    const app = await openBenchApp({
      path: isDriverBackend(backend) ? process.cwd() : dir,
      format: format as 'json',
      loadOnBoot: false,
      ...(isDriverBackend(backend) ? { storage: await createDriver(backend, dir) } : {}),
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
