import { join } from 'node:path';
import { buildChildren } from './fixtures/child-build';
import { CHILD_BUILD_ENV } from './fixtures/child-process';

/** Jest global setup: compiles what child processes run, once per test run (see child-build.ts). */
export default async function globalSetup(): Promise<void> {
  process.env[CHILD_BUILD_ENV] = await buildChildren(join(__dirname, '..'));
}
