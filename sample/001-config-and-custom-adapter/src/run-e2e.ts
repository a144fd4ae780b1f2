/*
 * `npm run sample:001`: runs the app twice as real processes on a fresh folder, configured through
 * the environment (read by @nestjs/config), with the json-gzip format.
 *   1. start with SAMPLE_ACTION=create, wait for READY, stop it with SIGTERM;
 *   2. check that the to-dos are on disk as `<STATE_DIR>/todos/<id>.json.gz`;
 *   3. start again and check that the to-dos it prints are the ones the first run created.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { TodoSummary } from './main';

const ROOT = resolve(__dirname, '..', '..', '..');
const MAIN = join(__dirname, 'main.ts');
const TIMEOUT_MS = 60_000;

interface Run {
  child: ChildProcess;
  lines: Map<string, Promise<string>>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the app; `lines` resolves with the rest of the first line starting with each prefix. */
function start(stateDir: string, action?: string): Run {
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register', MAIN],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        STATE_DIR: stateDir,
        STATE_FORMAT: 'json-gzip',
        SAMPLE_ACTION: action ?? '',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const lines = new Map<string, Promise<string>>();
  const resolvers = new Map<string, (rest: string) => void>();
  for (const prefix of ['STATE', 'CREATED', 'READY']) {
    lines.set(prefix, new Promise((r) => resolvers.set(prefix, r)));
  }
  createInterface({ input: child.stdout }).on('line', (line) => {
    const [prefix] = line.split(' ', 1);
    const resolveLine = resolvers.get(prefix);
    if (resolveLine) resolveLine(line.slice(prefix.length).trim());
    else process.stdout.write(`    | ${line}\n`);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  return { child, lines, exit };
}

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS);
    }),
  ]);
}

async function main(): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), 'todos-sample-'));
  const children: ChildProcess[] = [];
  try {
    console.log(`Sample state folder: ${stateDir}`);
    const first = start(stateDir, 'create');
    children.push(first.child);
    await within(first.lines.get('STATE')!, 'the first run to start');
    const created = JSON.parse(
      await within(first.lines.get('CREATED')!, 'the first run to create its to-dos'),
    ) as TodoSummary;
    await within(first.lines.get('READY')!, 'the first run to be ready');
    console.log(`Run 1 created ${created.length} to-dos. Stopping it with SIGTERM…`);
    first.child.kill('SIGTERM');
    const ended = await within(first.exit, 'the first run to exit');
    console.log(`Run 1 exited (${ended.signal ?? `code ${ended.code}`}).`);

    const files = (await readdir(join(stateDir, 'todos'))).sort();
    const expectedFiles = created.map((t) => `${t.id}.json.gz`).sort();
    if (JSON.stringify(files) !== JSON.stringify(expectedFiles)) {
      console.error(`Expected ${expectedFiles.join(', ')} in todos/, found ${files.join(', ')}.`);
      process.exitCode = 1;
      return;
    }
    console.log(`On disk, in the configured format: todos/${files.join(', todos/')}`);

    const second = start(stateDir);
    children.push(second.child);
    const restored = JSON.parse(
      await within(second.lines.get('STATE')!, 'the second run to start'),
    ) as TodoSummary;
    await within(second.lines.get('READY')!, 'the second run to be ready');
    second.child.kill('SIGTERM');
    await within(second.exit, 'the second run to exit');
    if (JSON.stringify(restored) !== JSON.stringify(created)) {
      console.error('Run 2 did NOT restore the to-dos of run 1.');
      console.error(`expected: ${JSON.stringify(created)}\nrestored: ${JSON.stringify(restored)}`);
      process.exitCode = 1;
      return;
    }
    console.log(`Run 2 restored the same ${restored.length} to-dos (dates included). OK`);
  } finally {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(stateDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
