import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { transpileForNode } from '../test/fixtures/transpile';
import { BUILD_ENV, CHILD_ENTRIES, ROOT } from './child.runner';

/** Makes the children runnable; returns a cleanup function. */
export async function prepareChildren(): Promise<() => Promise<void>> {
  if (__filename.endsWith('.js') || process.env[BUILD_ENV]) return async () => {};
  const out = join(ROOT, '.test-build', `bench-${process.pid}`);
  for (const entry of CHILD_ENTRIES) await transpileForNode(`bench/${entry}.ts`, out);
  process.env[BUILD_ENV] = out;
  return () => rm(out, { recursive: true, force: true });
}
