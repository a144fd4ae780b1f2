import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ChildApp } from './fixtures/child-process';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The second sample (sample/001-config-and-custom-adapter) as real processes, as `npm run sample:001`
 * runs it: options from the environment through @nestjs/config and forRootAsync(), a custom adapter
 * found through @PersistedState(), saved on SIGTERM and back at the next start.
 */
const MAIN = 'sample/001-config-and-custom-adapter/src/main.ts';

describe('sample 001: forRootAsync with @nestjs/config and a custom adapter (real child processes)', () => {
  let dir: string;
  const children: ChildApp[] = [];
  const run = (action = ''): ChildApp => {
    const child = new ChildApp(MAIN, {
      STATE_DIR: dir,
      STATE_FORMAT: 'json-gzip',
      SAMPLE_ACTION: action,
    });
    children.push(child);
    return child;
  };
  const read = async (child: ChildApp, prefix: string): Promise<unknown> =>
    JSON.parse((await child.waitFor(new RegExp(`^${prefix} `))).slice(prefix.length + 1));

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.kill('SIGKILL');
      await child.exited;
    }
    await removeDir(dir);
  });

  it('to-dos created before SIGTERM are back, dates revived, in the configured format and folder', async () => {
    const first = run('create');
    expect(await read(first, 'STATE')).toEqual([]);
    const created = await read(first, 'CREATED');
    expect(created).toEqual([
      { id: 'docs', title: 'Write the docs', done: true, createdAt: expect.any(String) },
      { id: 'milk', title: 'Buy milk', done: false, createdAt: expect.any(String) },
      { id: 'ship', title: 'Ship 0.2', done: false, createdAt: expect.any(String) },
    ]);
    await first.waitFor('READY');
    first.kill('SIGTERM');
    expect((await first.exited).signal).toBe('SIGTERM');

    // STATE_DIR and STATE_FORMAT reached the module through ConfigService; builtInAdapters: false.
    expect((await readdir(dir)).filter((name) => !name.startsWith('.'))).toEqual(['todos']);
    expect((await readdir(join(dir, 'todos'))).sort()).toEqual([
      'docs.json.gz',
      'milk.json.gz',
      'ship.json.gz',
    ]);

    const second = run();
    expect(await read(second, 'STATE')).toEqual(created);
  }, 60_000);
});
