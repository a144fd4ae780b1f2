/*
 * `npm run sample`: runs the assistant twice as real processes on a fresh folder.
 *   1. start with SAMPLE_ACTION=create, wait for READY, stop it with SIGTERM;
 *   2. start again and check that the state it prints is the state the first run created.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { StateSummary } from './chat/chat.service';

const ROOT = resolve(__dirname, '..', '..', '..');
const MAIN = join(__dirname, 'main.ts');
const TIMEOUT_MS = 60_000;

interface Run {
  child: ChildProcess;
  state: Promise<StateSummary>;
  ready: Promise<void>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(dataDir: string, action?: string): Run {
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register', MAIN],
    {
      cwd: ROOT,
      env: { ...process.env, PERSISTENCE_PATH: dataDir, SAMPLE_ACTION: action ?? '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let onState!: (s: StateSummary) => void;
  let onReady!: () => void;
  const state = new Promise<StateSummary>((r) => (onState = r));
  const ready = new Promise<void>((r) => (onReady = r));
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith('STATE ')) onState(JSON.parse(line.slice(6)) as StateSummary);
    else if (line === 'READY') onReady();
    else process.stdout.write(`    | ${line}\n`);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  return { child, state, ready, exit };
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
  const dataDir = await mkdtemp(join(tmpdir(), 'assistant-sample-'));
  const children: ChildProcess[] = [];
  try {
    console.log(`Sample data folder: ${dataDir}`);
    const first = start(dataDir, 'create');
    children.push(first.child);
    const initial = await within(first.state, 'the first run to start');
    await within(first.ready, 'the first run to create its state');
    console.log(
      `Run 1 started with ${initial.sessions.length} sessions and created 2 sessions, ` +
        '2 conversations of 3 messages and 2 focus chains. Stopping it with SIGTERM…',
    );
    first.child.kill('SIGTERM');
    const ended = await within(first.exit, 'the first run to exit');
    console.log(`Run 1 exited (${ended.signal ?? `code ${ended.code}`}).`);

    const second = start(dataDir);
    children.push(second.child);
    const restored = await within(second.state, 'the second run to start');
    await within(second.ready, 'the second run to be ready');
    const expected: StateSummary = {
      sessions: ['ada', 'grace'].map((u) => ({ id: `session-${u}`, status: 'active', user: u })),
      conversations: ['ada', 'grace'].map((u) => ({
        id: `conversation-${u}`,
        messages: ['user: Where is bootstrap()?', 'assistant: In src/main.ts.', 'user: Thanks!'],
      })),
      focus: ['ada', 'grace'].map((u) => ({
        id: `focus-${u}`,
        targets: ['src/main.ts', 'bootstrap'],
      })),
    };
    second.child.kill('SIGTERM');
    await within(second.exit, 'the second run to exit');
    if (JSON.stringify(restored) !== JSON.stringify(expected)) {
      console.error('Run 2 did NOT restore the state of run 1.');
      console.error(`expected: ${JSON.stringify(expected)}\nrestored: ${JSON.stringify(restored)}`);
      process.exitCode = 1;
      return;
    }
    console.log(
      `Run 2 restored ${restored.sessions.length} sessions, ${restored.conversations.length} conversations ` +
        `(${restored.conversations.map((c) => c.messages.length).join(' + ')} messages) and ` +
        `${restored.focus.length} focus chains: the same state. OK`,
    );
  } finally {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
