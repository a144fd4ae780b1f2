/*
 * `npm run bench`: what saveAll()/loadAll() cost on the state the issues name: 1,000 sessions,
 * 1,000 conversations of 50 messages, 1,000 focus chains. One run, every figure a median of RUNS,
 * compared in the same run (timings on these machines are noisy: read the ratios).
 *
 *  - full save: every item new (one journal commit);
 *  - 1% save: 10 sessions, 10 conversations, 10 chains changed;
 *  - checkpoint: the committed items written into one file each (atomic write + fsync per file):
 *    this is also what every save cost before the journal (the per-file design), so it is the "before";
 *  - load: a new application reading the store;
 *  - better-sqlite3 (WAL, synchronous=FULL) doing the same full and 1% writes, for comparison.
 */
import 'reflect-metadata';
import { INestApplication, Module } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  FocusManager,
  MemoryManager,
  PersistenceModule,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { prng } from '../test/fixtures/prng';

const RUNS = 3;
const N = 1000;
const MESSAGES = 50;

const WORDS =
  'the store saves every session message and focus chain to disk so that a restart loses nothing at all while the event loop stays free'.split(
    ' ',
  );
function text(random: () => number): string {
  const length = 40 + Math.floor(random() * 30);
  return Array.from({ length }, () => WORDS[Math.floor(random() * WORDS.length)]).join(' ');
}

async function openApp(options: PersistenceModuleOptions): Promise<INestApplication> {
  @Module({
    imports: [
      EventEmitterModule.forRoot(),
      ScheduleModule.forRoot(),
      PersistenceModule.forRoot({
        autoSave: false,
        saveOnShutdown: false,
        checkpointBytes: Number.MAX_SAFE_INTEGER,
        ...options,
      }),
    ],
  })
  class BenchModule {}
  const moduleRef = await Test.createTestingModule({ imports: [BenchModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

function fill(app: INestApplication): void {
  const random = prng(1);
  const sessions = app.get(SessionManager);
  const memory = app.get(MemoryManager);
  const focus = app.get(FocusManager);
  for (let i = 0; i < N; i++) {
    sessions.create({ id: `session-${i}`, metadata: { user: `user-${i}`, plan: 'pro' } });
    memory.create({ id: `conversation-${i}`, sessionId: `session-${i}` });
    for (let m = 0; m < MESSAGES; m++) {
      memory.addMessage(`conversation-${i}`, {
        role: m % 2 ? 'assistant' : 'user',
        content: text(random),
      });
    }
    focus.create({ id: `chain-${i}` });
    for (let f = 0; f < 5; f++)
      focus.pushFocus(`chain-${i}`, { type: 'file', target: `src/file-${f}.ts` });
  }
}

function changeOnePercent(app: INestApplication, round: number): void {
  for (let i = 0; i < N / 100; i++) {
    app.get(SessionManager).update(`session-${i * 100}`, { status: `round-${round}` });
    app
      .get(MemoryManager)
      .addMessage(`conversation-${i * 100}`, { role: 'user', content: `round ${round}` });
    app.get(FocusManager).pushFocus(`chain-${i * 100}`, { type: 'line', target: `${round}` });
  }
}

const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function timed<T>(
  work: () => Promise<T>,
): Promise<{ ms: number; result: T; maxLoopDelayMs: number }> {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  const started = performance.now();
  const result = await work();
  const ms = performance.now() - started;
  histogram.disable();
  return { ms, result, maxLoopDelayMs: histogram.max / 1e6 };
}

interface Figures {
  config: string;
  fullSaveMs: number;
  fullSaveBytes: number;
  fullSaveMaxLoopDelayMs: number;
  checkpointMs: number;
  onePercentSaveMs: number;
  onePercentBytes: number;
  loadMs: number;
  loadMaxLoopDelayMs: number;
}

async function measure(config: string, options: PersistenceModuleOptions): Promise<Figures> {
  const full: number[] = [];
  const fullDelay: number[] = [];
  const checkpoint: number[] = [];
  const small: number[] = [];
  const load: number[] = [];
  const loadDelay: number[] = [];
  let fullBytes = 0;
  let smallBytes = 0;
  for (let run = 0; run < RUNS; run++) {
    const dir = await mkdtemp(join(tmpdir(), 'persistence-bench-'));
    try {
      let app = await openApp({ path: dir, ...options });
      fill(app);
      const store = app.get(PersistenceStore);
      const saved = await timed(() => store.saveAll());
      full.push(saved.ms);
      fullDelay.push(saved.maxLoopDelayMs);
      fullBytes = saved.result.size;
      checkpoint.push((await timed(() => store.checkpoint())).ms);
      changeOnePercent(app, run);
      const one = await timed(() => store.saveAll());
      small.push(one.ms);
      smallBytes = one.result.size;
      await app.close();
      app = await openApp({ path: dir, ...options, loadOnBoot: false });
      const loaded = await timed(() => app.get(PersistenceStore).loadAll());
      if (loaded.result.items !== 3 * N) throw new Error(`loaded ${loaded.result.items} items`);
      load.push(loaded.ms);
      loadDelay.push(loaded.maxLoopDelayMs);
      await app.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return {
    config,
    fullSaveMs: median(full),
    fullSaveBytes: fullBytes,
    fullSaveMaxLoopDelayMs: median(fullDelay),
    checkpointMs: median(checkpoint),
    onePercentSaveMs: median(small),
    onePercentBytes: smallBytes,
    loadMs: median(load),
    loadMaxLoopDelayMs: median(loadDelay),
  };
}

async function sqlite(): Promise<{ fullMs: number; onePercentMs: number } | string> {
  let Database: typeof import('better-sqlite3');
  try {
    Database = (await import('better-sqlite3')).default;
  } catch (error) {
    return `better-sqlite3 not available (${(error as Error).message.split('\n')[0]})`;
  }
  const random = prng(1);
  const rows: Array<[string, string, string]> = [];
  for (let i = 0; i < N; i++) {
    rows.push([
      'sessions',
      `session-${i}`,
      JSON.stringify({ id: `session-${i}`, status: 'active', metadata: { user: `user-${i}` } }),
    ]);
    rows.push([
      'conversations',
      `conversation-${i}`,
      JSON.stringify({
        id: `conversation-${i}`,
        messages: Array.from({ length: MESSAGES }, (_, m) => ({
          id: `${m}`,
          role: m % 2 ? 'assistant' : 'user',
          content: text(random),
          timestamp: new Date().toISOString(),
        })),
      }),
    ]);
    rows.push([
      'focus',
      `chain-${i}`,
      JSON.stringify({
        id: `chain-${i}`,
        items: Array.from({ length: 5 }, (_, f) => ({ type: 'file', target: `src/file-${f}.ts` })),
      }),
    ]);
  }
  const full: number[] = [];
  const small: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const dir = await mkdtemp(join(tmpdir(), 'persistence-bench-sqlite-'));
    const db = new Database(join(dir, 'state.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(
      'CREATE TABLE items (collection TEXT, id TEXT, data TEXT, PRIMARY KEY (collection, id))',
    );
    const upsert = db.prepare('INSERT OR REPLACE INTO items VALUES (?, ?, ?)');
    const writeAll = db.transaction((batch: Array<[string, string, string]>) => {
      for (const row of batch) upsert.run(...row);
    });
    let started = performance.now();
    writeAll(rows);
    full.push(performance.now() - started);
    const changed = rows
      .filter((_, i) => i % 100 === 0)
      .map(([c, id, data]): [string, string, string] => [c, id, `${data} `]);
    started = performance.now();
    writeAll(changed);
    small.push(performance.now() - started);
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
  return { fullMs: median(full), onePercentMs: median(small) };
}

async function main(): Promise<void> {
  const started = performance.now();
  const key = randomBytes(32);
  const results: Figures[] = [];
  for (const [config, options] of [
    ['json', { format: 'json' }],
    ['json-compact', { format: 'json-compact' }],
    ['json-gzip', { format: 'json-gzip' }],
    ['json + encryption', { format: 'json', encryption: { key } }],
  ] as Array<[string, PersistenceModuleOptions]>) {
    results.push(await measure(config, options));
    process.stderr.write(`measured ${config}\n`);
  }
  const lite = await sqlite();
  const f = (n: number): string => n.toFixed(1);
  console.log(
    `\n${3 * N} items: ${N} sessions, ${N} conversations x ${MESSAGES} messages, ${N} focus chains; median of ${RUNS} runs`,
  );
  console.log(`node ${process.version}, ${cpus().length} cpus, temp dir ${tmpdir()}\n`);
  console.log(
    '| format | full save (commit) | 1% save | checkpoint = per-file writes of every item (the pre-journal save) | load | bytes (full) | bytes (1%) | max event-loop delay save / load |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    console.log(
      `| ${r.config} | ${f(r.fullSaveMs)} ms | ${f(r.onePercentSaveMs)} ms | ${f(r.checkpointMs)} ms | ${f(r.loadMs)} ms | ${r.fullSaveBytes} | ${r.onePercentBytes} | ${f(r.fullSaveMaxLoopDelayMs)} / ${f(r.loadMaxLoopDelayMs)} ms |`,
    );
  }
  const json = results[0];
  if (typeof lite === 'string') {
    console.log(`\nbetter-sqlite3: ${lite}`);
  } else {
    console.log(
      `| better-sqlite3 (WAL, synchronous=FULL) | ${f(lite.fullMs)} ms | ${f(lite.onePercentMs)} ms | - | - | - | - | - |`,
    );
  }
  const enc = results[3];
  console.log('\nRatios (same run):');
  console.log(
    `- 1% save vs the pre-journal save of every file: ${f(json.checkpointMs / json.onePercentSaveMs)}x faster`,
  );
  console.log(
    `- full save (journal) vs the pre-journal save of every file: ${f(json.checkpointMs / json.fullSaveMs)}x faster`,
  );
  console.log(
    `- encryption: full save ${f(enc.fullSaveMs / json.fullSaveMs)}x, 1% save ${f(enc.onePercentSaveMs / json.onePercentSaveMs)}x, load ${f(enc.loadMs / json.loadMs)}x the plain json figures`,
  );
  if (typeof lite !== 'string') {
    console.log(
      `- vs better-sqlite3: full save ${f(json.fullSaveMs / lite.fullMs)}x, 1% save ${f(json.onePercentSaveMs / lite.onePercentMs)}x sqlite's time`,
    );
  }
  console.log(
    `\nBENCH_JSON ${JSON.stringify({ items: 3 * N, runs: RUNS, results, sqlite: lite, seconds: (performance.now() - started) / 1000 })}`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
