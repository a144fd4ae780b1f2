/*
 * Where the cold load's time goes, on the medium tier in json: each step below adds one stage of
 * `loadAll()` to the one before, each timed in fresh processes (median of --runs), against the raw
 * per-file floor of `npm run bench` (readFile + JSON.parse per file, 64 at once). Not part of
 * `npm run bench`:
 *
 *   npx ts-node --transpile-only bench/load-breakdown.ts [--runs 5] [--format json]
 *
 * Every step runs in a Nest application context. The built-in adapters' calls need no async
 * context, so no step turns `AsyncLocalStorage` on (a custom adapter would, and every promise of the
 * process, the floor's included, would then cost more).
 */
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify, parseArgs } from 'node:util';
import { JsonSerializer, NodeFileSystem, PersistenceAdapter, PersistenceStore } from '../lib';
import { FocusAdapter } from '../lib/adapters/focus/focus.adapter';
import { MemoryAdapter } from '../lib/adapters/memory/memory.adapter';
import { SessionAdapter } from '../lib/adapters/session/session.adapter';
import { FileSystemStorage } from '../lib/storage/file-system.storage';
import { ItemFileCodec } from '../lib/serializers/item-file.codec';
import { mapLimit } from '../lib/storage/map-limit.util';
import { AdapterCaller } from '../lib/store/adapter.caller';
import { DEFAULT_OPTIONS } from '../lib/store/persistence.options';
import { reviveStored } from '../lib/store/schema.migrator';
import { openBenchApp } from './bench.app';
import { COLLECTIONS, TIERS, Workload } from './workload';

const STEPS = {
  floor: 'raw floor: readFile + JSON.parse, 64 at once',
  read: 'safe read (open O_NOFOLLOW, read, close: readWhole), 16 at once',
  parse: '+ toString + JSON.parse',
  decode: '+ envelope checks (ItemFileCodec.decode; no sha1 for the built-in adapters)',
  revive: '+ migrations/revive() through the adapter caller',
  loadAll: 'store.loadAll(): + restore into the managers, committed index',
} as const;
type Step = keyof typeof STEPS;

async function child(step: Step, dir: string, format: string): Promise<number> {
  const app = await openBenchApp({ path: dir, loadOnBoot: false, format: format as 'json' });
  const store = app.get(PersistenceStore);
  const adapters: PersistenceAdapter[] = [
    app.get(SessionAdapter),
    app.get(MemoryAdapter),
    app.get(FocusAdapter),
  ];
  const caller = new AdapterCaller(10_000);
  const storage = new FileSystemStorage(new NodeFileSystem(), {
    root: dir,
    ioConcurrency: 16,
    fileMode: 0o600,
    dirMode: 0o700,
    maxFileBytes: DEFAULT_OPTIONS.limits.maxFileBytes,
  });
  const codec = new ItemFileCodec(new JsonSerializer(), undefined, 256 * 1024 * 1024);
  const started = performance.now();
  if (step === 'loadAll') {
    await store.loadAll();
  } else if (step === 'floor') {
    const files: string[] = [];
    for (const c of COLLECTIONS)
      for (const n of await readdir(join(dir, c))) files.push(join(dir, c, n));
    await mapLimit(files, 64, async (f) => JSON.parse(await readFile(f, 'utf8')) as unknown);
  } else {
    const files = (
      await Promise.all(
        adapters.map(async (a) => (await storage.list(a.name)).map((f) => ({ a, f }))),
      )
    ).flat();
    await mapLimit(files, 16, async ({ a, f }) => {
      const bytes = await storage.read(f.path);
      if (step === 'read') return bytes.length;
      if (step === 'parse') return JSON.parse(bytes.toString('utf8')) as unknown;
      const { envelope } = await codec.decode(a.name, f, bytes);
      if (step === 'decode') return envelope;
      return reviveStored(caller, a, envelope).value;
    });
  }
  const ms = performance.now() - started;
  await app.close();
  return ms;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      format: { type: 'string', default: 'json' },
      step: { type: 'string' },
      dir: { type: 'string' },
    },
  });
  const format = values.format;
  if (values.step) {
    process.stdout.write(String(await child(values.step as Step, values.dir!, format)));
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'load-breakdown-'));
  try {
    const app = await openBenchApp({ path: dir, format: format as 'json' });
    new Workload(app, TIERS.medium).fill();
    await app.get(PersistenceStore).saveAll();
    await app.close(); // checkpoint: the items are in their files
    const runs = Number(values.runs);
    const times = new Map<Step, number[]>();
    // Interleaved rounds, so that a noisy moment on a shared machine hits every step alike.
    for (let round = 0; round < runs; round++) {
      for (const step of Object.keys(STEPS) as Step[]) {
        const { stdout } = await promisify(execFile)(
          process.execPath,
          ['-r', 'ts-node/register', __filename, '--step', step, '--dir', dir, '--format', format],
          { env: { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true' } },
        );
        times.set(step, [...(times.get(step) ?? []), Number(stdout)]);
      }
    }
    const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
    const floor = median(times.get('floor')!);
    console.log(`medium tier, ${format}, median of ${runs} fresh processes per step\n`);
    console.log('| step | ms | / floor |\n| --- | ---: | ---: |');
    for (const [step, label] of Object.entries(STEPS) as Array<[Step, string]>) {
      const ms = median(times.get(step)!);
      console.log(`| ${label} | ${ms.toFixed(0)} | ${(ms / floor).toFixed(2)}x |`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
