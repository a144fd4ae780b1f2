import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { childCommand, ROOT } from './child.runner';
import type { HttpMode } from './http-server.main';

/** One HTTP case's figures. */
export interface HttpResult {
  mode: HttpMode;
  label: string;
  durationS: number;
  connections: number;
  requests: number;
  reqPerSec: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  errors: number;
  saves: number;
  /** Median duration of one save, ms (null when nothing is saved). */
  saveMedianMs: number | null;
}

export const HTTP_CASES: Array<[HttpMode, string]> = [
  ['none', '(a) no persistence'],
  ['ours-full', '(b) ours (json): full saves back to back'],
  ['sqlite-full', '(c) sqlite: full saves back to back'],
  ['ours-1pct', '(d) ours (json): 1% save every 200 ms'],
  ['sqlite-1pct', '(e) sqlite: 1% save every 200 ms'],
];

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; max: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
}) => Promise<AutocannonResult>;

const AUTOCANNON = 'autocannon';
const CONNECTIONS = 20;
const WARM_UP_S = 2;

const median = (values: number[]): number | null =>
  values.length === 0 ? null : [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * Runs one case: the server in its own process, autocannon (20 connections) in this one, for
 * `durationS` seconds once a short warm-up without saves has run.
 */
export async function runHttpCase(
  mode: HttpMode,
  label: string,
  durationS: number,
): Promise<HttpResult> {
  const autocannon = ((await import(AUTOCANNON)) as { default: Autocannon }).default;
  const dir = await mkdtemp(join(tmpdir(), 'persistence-bench-http-'));
  const [file, ...args] = childCommand('http-server.main');
  const child = spawn(file, args, {
    cwd: ROOT,
    env: { ...process.env, BENCH_HTTP: JSON.stringify({ mode, dir }) },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const match = /^READY (\d+)$/.exec(line);
        if (match) resolve(Number(match[1]));
      });
      void exited.then((code) => reject(new Error(`HTTP server (${mode}) exited with ${code}`)));
    });
    const url = `http://127.0.0.1:${port}/ping`;
    await autocannon({ url, connections: CONNECTIONS, duration: WARM_UP_S });
    child.send('start');
    const result = await autocannon({ url, connections: CONNECTIONS, duration: durationS });
    const saves = await new Promise<number[]>((resolve) => {
      child.once('message', (message: { saves: number[] }) => resolve(message.saves));
      child.send('stop');
    });
    await exited;
    return {
      mode,
      label,
      durationS,
      connections: CONNECTIONS,
      requests: result.requests.total,
      reqPerSec: result.requests.average,
      latencyP50Ms: result.latency.p50,
      latencyP99Ms: result.latency.p99,
      latencyMaxMs: result.latency.max,
      errors: result.errors + result.timeouts + result.non2xx,
      saves: saves.length,
      saveMedianMs: median(saves),
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}
