/*
 * One cell of the benchmark, in its own process (so that heap, RSS and GC start clean): one tier on
 * one backend (BENCH_CELL = a CellSpec). Builds a real Nest application holding the tier's state, runs
 * the sequence an application lives through, verifies a fresh process reads back exactly what was
 * saved, and reports a CellResult.
 *
 * The sequence: full save into an empty store; the 1% save right after it (for ours the journal is
 * then past checkpointBytes, so this save waits behind the checkpoint); steady 1% saves back to back
 * (checkpoints run among them); a save with nothing changed; backup(); cold load in a fresh process.
 */
import 'reflect-metadata';
import { INestApplicationContext } from '@nestjs/common';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PersistenceStore, SaveMetadata } from '../lib';
import { Backend } from './backend.interface';
import { ComparatorName, createComparator } from './backends';
import { openBenchApp } from './bench.app';
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

/** The library's default, which the store under test keeps. */
const CHECKPOINT_BYTES = 8 * 1024 * 1024;

/** The save operations of one backend. */
interface Saver {
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
    const journalBefore = await fileSize(journal);
    const meta: SaveMetadata = await store.saveAll();
    return {
      journalBefore,
      journalAfter: await fileSize(journal),
      metaSize: meta.size,
      changedItems: meta.changed,
    };
  };
  return {
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

/** Runs one save inside the probe; the journal sizes are read outside the measured window. */
async function measured(work: () => Promise<Record<string, number | boolean>>): Promise<Op> {
  const { figures, result } = await probe(work);
  return { ...figures, extra: result };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BENCH_CELL!) as CellSpec;
  const tier = TIERS[spec.tier];
  const ours = spec.backend === 'ours';
  const storeDir = join(spec.workDir, 'store');
  const app = await openBenchApp({
    path: ours ? storeDir : join(spec.workDir, 'app-unused'),
    ...(spec.format ? { format: spec.format as 'json' } : {}),
  });
  const workload = new Workload(app, tier);
  workload.fill();
  let backend: Backend | undefined;
  if (!ours) {
    backend = createComparator(spec.backend as ComparatorName);
    await mkdir(storeDir, { recursive: true });
    await backend.open(storeDir);
  }
  const saver = ours ? oursSaver(app, storeDir) : comparatorSaver(app, backend!, workload);
  const items = workload.all().length;
  progress(spec, 'full save');

  const fullSave = await measured(() => saver.full());
  const firstChange = workload.changeOnePercent(0);
  const afterFullSave = await measured(() => saver.changed(firstChange));
  if (ours) {
    afterFullSave.extra!.waitedBehindCheckpoint =
      Number(afterFullSave.extra!.journalBefore) >= CHECKPOINT_BYTES;
  }

  progress(spec, `${tier.steadySaves} steady 1% saves`);
  const steady: OpFigures[] = [];
  let checkpoints = 0;
  let lastJournal = Number(afterFullSave.extra?.journalAfter ?? 0);
  const steadyStarted = performance.now();
  for (let round = 1; round <= tier.steadySaves; round++) {
    if (round > MIN_STEADY && performance.now() - steadyStarted > STEADY_BUDGET_MS) break;
    const keys = workload.changeOnePercent(round);
    const op = await measured(() => saver.changed(keys));
    steady.push(op);
    if (ours) {
      const before = Number(op.extra!.journalBefore);
      const after = Number(op.extra!.journalAfter);
      if (before < lastJournal) checkpoints++;
      if (after < before) checkpoints++;
      lastJournal = after;
    }
  }

  const noChangeSave = await measured(() => saver.changed([]));
  if (ours) {
    noChangeSave.extra!.journalGrowth =
      Number(noChangeSave.extra!.journalAfter) - Number(noChangeSave.extra!.journalBefore);
  }

  progress(spec, 'backup');
  const backupDir = join(spec.workDir, 'backup');
  if (!ours) await mkdir(backupDir);
  const backup: Op = (await probe(() => saver.backup(backupDir))).figures;

  const expected = dumpOf(workload.all());
  const closeExtra = await saver.close();

  progress(spec, 'cold load in a fresh process');
  const cold = await runChild<ColdLoadResult>('cold-load.main', {
    BENCH_COLD: JSON.stringify({ backend: spec.backend, dir: storeDir, format: spec.format }),
  });
  assertSameDump(`${spec.tier} ${label(spec)} cold load`, expected, cold.dump);

  const result: CellResult = {
    tier: spec.tier,
    label: label(spec),
    backend: spec.backend,
    format: spec.format,
    description: ours
      ? `nestjs-persistence, format ${spec.format}: PersistenceStore.saveAll() (one journal record, one fsync; checkpoint past 8 MiB), loadAll() in a fresh Nest app`
      : backend!.description,
    items,
    fullSave,
    afterFullSave,
    steady: {
      ...summarize(steady),
      ...(ours ? { extra: { checkpoints, saves: steady.length } } : {}),
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
  return spec.backend === 'ours' ? `ours ${spec.format}` : spec.backend;
}

function progress(spec: CellSpec, step: string): void {
  process.stderr.write(`  [${spec.tier}] ${label(spec)}: ${step}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
