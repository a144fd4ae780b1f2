/*
 * One cell of the benchmark, in its own process (so that heap, RSS and GC start clean): one tier on
 * one backend (BENCH_CELL = a CellSpec). Builds a real Nest application holding the tier's state, runs
 * the sequence an application lives through, verifies a fresh process reads back exactly what was
 * saved, and reports a CellResult.
 *
 * The sequence: full save into an empty store; the 1% save right after it (for ours the full save's
 * journal is past checkpointBytes, so it was sealed and its checkpoint runs in the background while
 * this save commits); steady 1% saves back to back (checkpoints run among them); a save with nothing
 * changed; backup(); cold load in a fresh process.
 */
import 'reflect-metadata';
import { INestApplicationContext } from '@nestjs/common';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PersistenceStore, SaveMetadata } from '../lib';
import { Backend } from './backend.interface';
import { ComparatorName, createComparator } from './backends';
import { openBenchApp } from './bench.app';
import {
  commitOf,
  createDriver,
  isDriverBackend,
  newPlace,
  removePlace,
  serverOf,
} from './drivers';
import { CellResult, CellSpec, ColdLoadResult, Op } from './cell.types';
import { report, runChild } from './child.runner';
import { assertSameDump, dumpOf } from './dump';
import { OpFigures, probe, summarize } from './probe';
import { CollectionName, TIERS, Workload } from './workload';

/**
 * The steady state stops after the tier's count of saves or after this long, whichever comes first
 * (at least MIN_STEADY saves): conf and lowdb rewrite the whole state per save, which in the large
 * tier would take many minutes. The count run is reported.
 */
const STEADY_BUDGET_MS = 30_000;
const MIN_STEADY = 5;

/** The save operations of one backend. */
interface Saver {
  /** Ours: the journal's state, read before and after each measured save (outside the probe). */
  state?(): Promise<Record<string, number>>;
  /** Ours: waits until no checkpoint runs (not measured). */
  settle?(): Promise<void>;
  full(): Promise<Record<string, number | boolean>>;
  changed(keys: Array<[CollectionName, string]>): Promise<Record<string, number | boolean>>;
  backup(destination: string): Promise<void>;
  close(): Promise<Record<string, number>>;
}

async function fileSize(path: string): Promise<number> {
  return (await stat(path).catch(() => ({ size: 0 }))).size;
}

function oursSaver(app: INestApplicationContext, dir: string): Saver {
  const store = app.get(PersistenceStore);
  const journal = join(dir, '.journal');
  const save = async (): Promise<Record<string, number | boolean>> => {
    const meta: SaveMetadata = await store.saveAll();
    return { metaSize: meta.size, changedItems: meta.changed };
  };
  return {
    // `.journal` is the active segment; `.journal.<n>` are sealed ones, each in (or waiting for)
    // the background checkpoint.
    state: async () => ({
      journal: await fileSize(journal),
      sealed: (await readdir(dir)).filter((name) => /^\.journal\.\d+$/.test(name)).length,
    }),
    settle: () => store.checkpoint(),
    full: save,
    changed: save,
    backup: async (destination) => {
      await store.backup(destination);
    },
    close: async () => {
      const started = performance.now();
      await app.close();
      return { closeMs: performance.now() - started };
    },
  };
}

function comparatorSaver(
  app: INestApplicationContext,
  backend: Backend,
  workload: Workload,
): Saver {
  return {
    full: async () => (await backend.save(workload.all()), {}),
    changed: async (keys) => (await backend.save(workload.items(keys)), {}),
    backup: (destination) => backend.backup(destination),
    close: async () => {
      await backend.close();
      await app.close();
      return {};
    },
  };
}

/** Runs one save inside the probe; the journal's state is read outside the measured window. */
async function measured(
  saver: Saver,
  work: () => Promise<Record<string, number | boolean>>,
): Promise<Op> {
  const before = (await saver.state?.()) ?? {};
  const { figures, result } = await probe(work);
  const after = (await saver.state?.()) ?? {};
  const extra: Record<string, number | boolean> = { ...result };
  if (saver.state) {
    extra.journalBefore = before.journal;
    extra.journalAfter = after.journal;
    // A sealed segment at the start: the save committed while a background checkpoint ran.
    extra.duringCheckpoint = before.sealed > 0;
    // A save that wrote something and left the active journal empty sealed it.
    extra.sealedJournal = Number(result.metaSize) > 0 && after.journal === 0;
  }
  return { ...figures, extra };
}

/** Ours on a storage driver: the same saves; no journal, and backup() is not supported there. */
function driverSaver(app: INestApplicationContext): Saver {
  const store = app.get(PersistenceStore);
  const save = async (): Promise<Record<string, number | boolean>> => {
    const meta: SaveMetadata = await store.saveAll();
    return { metaSize: meta.size, changedItems: meta.changed };
  };
  return {
    full: save,
    changed: save,
    backup: () => Promise.resolve(),
    close: async () => {
      const started = performance.now();
      await app.close();
      return { closeMs: performance.now() - started };
    },
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BENCH_CELL!) as CellSpec;
  const tier = TIERS[spec.tier];
  const driverBackend = isDriverBackend(spec.backend) ? spec.backend : undefined;
  const redis = driverBackend !== undefined; // ours on a driver (Redis or PostgreSQL)
  const ours = spec.backend === 'ours' || redis;
  const storeDir = join(spec.workDir, 'store');
  const place = driverBackend === undefined ? '' : newPlace(driverBackend);
  const app = await openBenchApp({
    path: ours && !redis ? storeDir : join(spec.workDir, 'app-unused'),
    ...(spec.format ? { format: spec.format as 'json' } : {}),
    ...(driverBackend ? { storage: await createDriver(driverBackend, place) } : {}),
  });
  const workload = new Workload(app, tier);
  workload.fill();
  let backend: Backend | undefined;
  if (!ours) {
    backend = createComparator(spec.backend as ComparatorName);
    await mkdir(storeDir, { recursive: true });
    await backend.open(storeDir);
  }
  const saver = redis
    ? driverSaver(app)
    : ours
      ? oursSaver(app, storeDir)
      : comparatorSaver(app, backend!, workload);
  const items = workload.all().length;
  progress(spec, 'full save');

  const fullSave = await measured(saver, () => saver.full());
  const firstChange = workload.changeOnePercent(0);
  const afterFullSave = await measured(saver, () => saver.changed(firstChange));

  progress(spec, `${tier.steadySaves} steady 1% saves`);
  const steady: OpFigures[] = [];
  let checkpoints = 0;
  const duringCheckpoint: OpFigures[] = [];
  const steadyStarted = performance.now();
  for (let round = 1; round <= tier.steadySaves; round++) {
    if (round > MIN_STEADY && performance.now() - steadyStarted > STEADY_BUDGET_MS) break;
    const keys = workload.changeOnePercent(round);
    const op = await measured(saver, () => saver.changed(keys));
    steady.push(op);
    if (op.extra?.sealedJournal === true) checkpoints++;
    if (op.extra?.duringCheckpoint === true) duringCheckpoint.push(op);
  }

  const noChangeSave = await measured(saver, () => saver.changed([]));
  if (ours && !redis) {
    noChangeSave.extra!.journalGrowth =
      Number(noChangeSave.extra!.journalAfter) - Number(noChangeSave.extra!.journalBefore);
    // The same save once no checkpoint runs: the save's own cost, without the background work.
    await saver.settle?.();
    const idle = await measured(saver, () => saver.changed([]));
    noChangeSave.extra!.idleMs = idle.ms;
    noChangeSave.extra!.idleWritten = idle.written ?? -1;
  }

  progress(spec, 'backup');
  const backupDir = join(spec.workDir, 'backup');
  if (!ours) await mkdir(backupDir);
  const backup: Op = redis
    ? { ms: NaN, stallMs: NaN, p99DelayMs: NaN, rssGrowth: NaN, written: null, read: null }
    : (await probe(() => saver.backup(backupDir))).figures;

  const expected = dumpOf(workload.all());
  const closeExtra = await saver.close();

  progress(spec, 'cold load in a fresh process');
  const cold = await runChild<ColdLoadResult>('cold-load.main', {
    BENCH_COLD: JSON.stringify({
      backend: spec.backend,
      dir: redis ? place : storeDir,
      format: spec.format,
    }),
  });
  if (driverBackend) await removePlace(driverBackend, place);
  assertSameDump(`${spec.tier} ${label(spec)} cold load`, expected, cold.dump);

  const result: CellResult = {
    tier: spec.tier,
    label: label(spec),
    backend: spec.backend,
    format: spec.format,
    description: driverBackend
      ? `nestjs-persistence on ${driverBackend === 'redis' ? 'RedisStorageDriver' : 'PostgresStorageDriver'} (${serverOf(driverBackend)}), format ${spec.format}: PersistenceStore.saveAll() = ${commitOf(driverBackend)}; backup() is not measured on a driver (n/a); loadAll() in a fresh Nest app`
      : ours
        ? `nestjs-persistence, format ${spec.format}: PersistenceStore.saveAll() (one journal record, one fsync; past 8 MiB the journal is sealed and checkpointed in the background), loadAll() in a fresh Nest app`
        : backend!.description,
    items,
    fullSave,
    afterFullSave,
    steady: {
      ...summarize(steady),
      ...(ours && !redis
        ? {
            extra: {
              checkpoints,
              saves: steady.length,
              ...(duringCheckpoint.length > 0
                ? (({ count, p50, p95, max }) => ({
                    duringCount: count,
                    duringP50: p50.ms,
                    duringP95: p95.ms,
                    duringMax: max.ms,
                  }))(summarize(duringCheckpoint))
                : { duringCount: 0 }),
            },
          }
        : {}),
    },
    noChangeSave,
    backup,
    coldLoad: {
      ...cold.load,
      extra: {
        processMs: cold.processMs,
        ...(cold.bootMs === undefined ? {} : { bootMs: cold.bootMs }),
        ...closeExtra,
      },
    },
    verified: cold.dump,
  };
  report(result);
}

function label(spec: CellSpec): string {
  return spec.backend === 'ours' || isDriverBackend(spec.backend)
    ? `${spec.backend} ${spec.format}`
    : spec.backend;
}

function progress(spec: CellSpec, step: string): void {
  process.stderr.write(`  [${spec.tier}] ${label(spec)}: ${step}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
