import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChildApp } from './fixtures/child-process';
import { createApp } from './fixtures/app.factory';
import { iterationOf, loopAdapters } from './fixtures/crash-loop.state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Real `kill -9`: a child process saves in a loop (8 saves, a checkpoint every third) and kills
 * itself with SIGKILL right after its k-th file-system call that changes the disk, for k spread over
 * the whole run. Each time, a fresh application loads the folder: it must hold exactly one of the
 * loop's complete states S(i) (both collections at the same iteration), and no save that had
 * resolved may be lost: i is the last acknowledged iteration or the one in flight.
 */
const ENTRY = 'test/fixtures/crash-loop.main.ts';

describe('kill -9 while saving (real child processes)', () => {
  let root: string;
  beforeAll(async () => {
    root = await makeTempDir();
  });
  afterAll(async () => {
    await removeDir(root);
  });

  it('every kill point leaves a complete snapshot, and no acknowledged save is lost', async () => {
    const dry = new ChildApp(ENTRY, {
      PERSISTENCE_PATH: join(root, 'dry'),
      PROGRESS_FILE: join(root, 'dry.progress'),
      CRASH_AFTER: '0',
    });
    const total = Number((await dry.waitFor(/^CALLS \d+$/)).split(' ')[1]);
    await dry.exited;
    expect(total).toBeGreaterThan(50);

    const points = [
      ...new Set(Array.from({ length: 16 }, (_, i) => 1 + Math.floor((i * (total - 1)) / 15))),
    ];
    const outcomes: string[] = [];
    for (const k of points) {
      const dir = join(root, `run-${k}`);
      const progress = join(root, `run-${k}.progress`);
      const child = new ChildApp(ENTRY, {
        PERSISTENCE_PATH: dir,
        PROGRESS_FILE: progress,
        CRASH_AFTER: String(k),
      });
      const exit = await child.exited;
      expect(exit.signal).toBe('SIGKILL');
      const acked = (await readFile(progress, 'utf8').catch(() => ''))
        .split('\n')
        .filter(Boolean)
        .map(Number);
      const lastAcked = acked.at(-1) ?? 0;

      const { adapters } = loopAdapters();
      const app = await createApp({
        path: dir,
        builtInAdapters: false,
        adapters,
        saveOnShutdown: false,
      });
      const loaded = iterationOf(adapters);
      await app.close();
      outcomes.push(`k=${k}: acked ${lastAcked}, loaded S(${loaded})`);
      expect({ k, loaded: loaded === undefined ? 'a mix' : 'complete' }).toEqual({
        k,
        loaded: 'complete',
      });
      expect(loaded).toBeGreaterThanOrEqual(lastAcked);
      expect(loaded).toBeLessThanOrEqual(lastAcked + 1);
    }
    console.log(
      `kill -9 runs: ${points.length} of ${points.length} loaded a complete snapshot (${total} disk calls per run)\n${outcomes.join('\n')}`,
    );
  }, 180_000);
});
