import { spawn } from 'node:child_process';
import { join } from 'node:path';

/*
 * Child processes of the benchmark (a cell, a cold load, the HTTP server) run compiled JavaScript with
 * plain `node`, never ts-node: a fresh process must not pay for compiling TypeScript. When the
 * benchmark itself runs as JavaScript, the children are its sibling `.js` files; under ts-node, the
 * entries (and what they import) are transpiled once per run into .test-build/bench-<pid>/ (ignored
 * by git, ESLint and Prettier) and removed at the end.
 */

export const ROOT = join(__dirname, '..');
/** Environment variable telling children where the compiled entries are. */
export const BUILD_ENV = 'NESTJS_PERSISTENCE_BENCH_BUILD';

export const CHILD_ENTRIES = ['cell.main', 'cold-load.main', 'http-server.main'] as const;
export type ChildEntry = (typeof CHILD_ENTRIES)[number];

/** The `[node, ...args]` that runs a child entry. */
export function childCommand(entry: ChildEntry): string[] {
  const build = process.env[BUILD_ENV];
  const file = __filename.endsWith('.js')
    ? join(__dirname, `${entry}.js`)
    : build
      ? join(build, 'bench', `${entry}.js`)
      : undefined;
  if (!file) throw new Error('prepareChildren() was not called');
  // The large tier holds a few hundred MiB of state, and lowdb/conf a copy or two of it.
  return [process.execPath, '--max-old-space-size=8192', file];
}

/** Prefix of the line through which a child reports its result (JSON). */
export const RESULT_PREFIX = 'RESULT ';

/**
 * Runs a child to its end and returns the JSON of its RESULT line; its other output goes to stderr.
 * Fails loudly (with the child's output) if it exits badly or reports nothing.
 */
export function runChild<T>(entry: ChildEntry, env: Record<string, string>): Promise<T> {
  const [file, ...args] = childCommand(entry);
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code !== 0 || !line) {
        reject(
          new Error(
            `${entry} failed (exit ${code ?? signal}):\n${stdout.slice(-4000)}\n${stderr.slice(-4000)}`,
          ),
        );
      } else {
        resolve(JSON.parse(line.slice(RESULT_PREFIX.length)) as T);
      }
    });
  });
}

/** Prints a child's result for its parent. */
export function report(result: unknown): void {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
}
