/*
 * `npm run bench`: what persistence costs an application, timed from the application's side.
 *
 * For every tier (small, medium, large) and every format of ours (json, json-compact, json-gzip;
 * msgpack and auto when the library exports them), and for better-sqlite3, lowdb, conf and the per-file floors,
 * a cell in its own process runs the same sequence on the same seeded data (bench/cell.main.ts) and
 * verifies that a fresh process loads exactly what was saved. Then the HTTP scenario (medium tier):
 * GET /ping under autocannon while the server process saves. Tables on stdout, JSON in
 * bench/results/, the medium table in docs/benchmarks.md.
 *
 *   npm run bench                                   everything (about 25 minutes on 2 cores)
 *   npm run bench -- --tier medium --format json    a subset (comma-separated lists)
 *   options: --tier, --format, --backend (ours,redis,postgres,sqlite,lowdb,conf,files-raw,files-durable;
 *            redis: ours on the Redis driver at BENCH_REDIS_URL, default redis://127.0.0.1:6379;
 *            postgres: ours on the PostgreSQL driver at BENCH_POSTGRES_URL, default
 *            postgres://postgres@127.0.0.1:5432/test),
 *            --http / --no-http, --http-duration <s> (default 15), --no-docs
 */
import 'reflect-metadata';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as library from '../lib';
import { COMPARATORS } from './backends';
import { CellResult, CellSpec } from './cell.types';
import { prepareChildren } from './child.build';
import { ROOT, runChild } from './child.runner';
import { DRIVER_BACKENDS, isDriverBackend } from './drivers';
import { HTTP_CASES, HttpResult, runHttpCase } from './http.scenario';
import { httpTable, tierNotes, tierTable } from './report';
import { TierName, TIERS } from './workload';

const ALL_FORMATS = ['json', 'json-compact', 'json-gzip', 'msgpack', 'auto'];
/** `redis`, `postgres`: ours on a storage driver (bench/drivers.ts: the servers). */
const ALL_BACKENDS = ['ours', ...DRIVER_BACKENDS, ...COMPARATORS];
/** What runs without --backend: everything but the driver backends, which need a server. */
const DEFAULT_BACKENDS = ALL_BACKENDS.filter((backend) => !isDriverBackend(backend));
const DOCS = join(ROOT, 'docs', 'benchmarks.md');
const START = '<!-- bench:generated:start -->';
const END = '<!-- bench:generated:end -->';
const PRETTIER = 'prettier';

function list(value: string | undefined, all: readonly string[], what: string): string[] {
  if (!value) return [...all];
  const picked = value.split(',').map((v) => v.trim());
  for (const v of picked) {
    if (!all.includes(v)) throw new Error(`unknown ${what} "${v}" (one of ${all.join(', ')})`);
  }
  return picked;
}

/** Formats the library supports, read from what it exports at run time (a serializer per format). */
function supportedFormats(): string[] {
  const exported = Object.keys(library);
  const formats = ['json', 'json-compact', 'json-gzip'];
  if (exported.some((name) => /msgpack/i.test(name))) formats.push('msgpack');
  if (exported.includes('AutoSerializer')) formats.push('auto');
  return formats;
}

async function main(): Promise<void> {
  const started = performance.now();
  const { values } = parseArgs({
    options: {
      tier: { type: 'string' },
      format: { type: 'string' },
      backend: { type: 'string' },
      http: { type: 'boolean' },
      'no-http': { type: 'boolean' },
      'http-duration': { type: 'string' },
      'no-docs': { type: 'boolean' },
    },
  });
  const tiers = list(values.tier, Object.keys(TIERS), 'tier') as TierName[];
  const backends = values.backend
    ? list(values.backend, ALL_BACKENDS, 'backend')
    : [...DEFAULT_BACKENDS];
  const supported = supportedFormats();
  const notes: string[] = [];
  const formats = list(values.format, ALL_FORMATS, 'format').filter((format) => {
    if (supported.includes(format)) return true;
    notes.push(
      `format ${format} skipped: the library exports no ${format} serializer (formats found: ${supported.join(', ')})`,
    );
    return false;
  });
  const http = values['no-http'] ? false : (values.http ?? tiers.includes('medium'));
  const httpDuration = Number(values['http-duration'] ?? 15);
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  for (const note of notes) process.stderr.write(`note: ${note}\n`);

  const cleanup = await prepareChildren();
  const cells: CellResult[] = [];
  const httpResults: HttpResult[] = [];
  try {
    for (const tier of tiers) {
      const specs: Array<Omit<CellSpec, 'workDir'>> = [];
      if (backends.includes('ours')) {
        for (const format of formats) specs.push({ tier, backend: 'ours', format });
      }
      for (const backend of DRIVER_BACKENDS) {
        if (!backends.includes(backend)) continue;
        for (const format of formats) specs.push({ tier, backend, format });
      }
      for (const backend of COMPARATORS)
        if (backends.includes(backend)) specs.push({ tier, backend });
      for (const spec of specs) {
        const workDir = await mkdtemp(join(tmpdir(), 'persistence-bench-'));
        try {
          cells.push(
            await runChild<CellResult>('cell.main', {
              BENCH_CELL: JSON.stringify({ ...spec, workDir }),
            }),
          );
        } finally {
          await rm(workDir, { recursive: true, force: true });
        }
      }
      const tierCells = cells.filter((c) => c.tier === tier);
      console.log(`\n## ${tier} tier\n\n${tierTable(tierCells)}\n\n${tierNotes(tierCells)}`);
    }
    if (http) {
      for (const [mode, label] of HTTP_CASES) {
        process.stderr.write(`  [http] ${label}: ${httpDuration} s\n`);
        httpResults.push(await runHttpCase(mode, label, httpDuration));
      }
      console.log(
        `\n## HTTP: GET /ping, medium tier in the server, autocannon 20 connections, ${httpDuration} s per case\n\n${httpTable(httpResults)}`,
      );
    }
  } finally {
    await cleanup();
  }

  const seconds = (performance.now() - started) / 1000;
  const date = new Date().toISOString();
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    tmpdir: tmpdir(),
  };
  const results = {
    date,
    command,
    machine,
    options: { tiers, formats, backends, http, httpDuration },
    notes,
    seconds,
    cells,
    http: httpResults,
  };
  const resultsDir = join(__dirname, 'results');
  await mkdir(resultsDir, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  await writeFile(join(resultsDir, 'latest.json'), json);
  await writeFile(join(resultsDir, `${date.replace(/[:.]/g, '-')}.json`), json);
  for (const note of notes) console.log(`\nnote: ${note}`);
  console.log(`\nresults: bench/results/latest.json; run took ${seconds.toFixed(0)} s`);

  const medium = cells.filter((c) => c.tier === 'medium');
  const complete =
    formats.length === supported.length &&
    DEFAULT_BACKENDS.every((backend) => backends.includes(backend));
  if (values['no-docs']) return;
  if (medium.length > 0 && complete) {
    await writeDocs(
      [
        `Generated by \`${command}\` on ${date.slice(0, 10)}: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, node ${machine.node}, ${machine.platform}; temp folder ${machine.tmpdir}. Whole run: ${seconds.toFixed(0)} s.`,
        '',
        '### Medium tier',
        '',
        tierTable(medium),
        '',
        tierNotes(medium),
        ...notes.map((n) => `- ${n}`),
        ...(httpResults.length > 0
          ? [
              '',
              `### HTTP: GET /ping, medium tier in the server, autocannon 20 connections, ${httpDuration} s per case`,
              '',
              httpTable(httpResults),
            ]
          : []),
      ].join('\n'),
    );
    console.log('docs/benchmarks.md updated');
  } else {
    console.log(
      'docs/benchmarks.md not updated (it holds the medium tier with every format and backend)',
    );
  }
}

async function writeDocs(section: string): Promise<void> {
  const current = await readFile(DOCS, 'utf8');
  const from = current.indexOf(START);
  const to = current.indexOf(END);
  if (from < 0 || to < from) throw new Error(`${DOCS} lacks the ${START} … ${END} markers`);
  const text = `${current.slice(0, from + START.length)}\n\n${section}\n\n${current.slice(to)}`;
  // Formatted as `prettier --check .` expects (tables aligned).
  const prettier = (await import(PRETTIER)) as {
    format(source: string, options: Record<string, unknown>): Promise<string>;
    resolveConfig(file: string): Promise<Record<string, unknown> | null>;
  };
  const config = (await prettier.resolveConfig(DOCS)) ?? {};
  await writeFile(DOCS, await prettier.format(text, { ...config, filepath: DOCS }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
