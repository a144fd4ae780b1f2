import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ChildApp } from './fixtures/child-process';
import { buildCli, CliResult, runCli } from './fixtures/cli';
import { liveState } from './fixtures/live-state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * `nestjs-persistence backup` beside a running application: a real app in a child process keeps
 * saving (its journal sealed and checkpointed all the while), the CLI backs it up again and again,
 * and every backup restores to exactly one of the app's saves, never a mix of two.
 */
describe('CLI backup of a live store', () => {
  let work: string;
  let main: string;
  let root: string;
  let writer: ChildApp | undefined;

  beforeAll(async () => {
    work = await makeTempDir('persistence-cli-live-build-');
    main = await buildCli(work);
  }, 60_000);
  afterAll(() => removeDir(work));
  beforeEach(async () => {
    root = await makeTempDir('persistence-cli-live-');
  });
  afterEach(async () => {
    writer?.kill('SIGKILL');
    await writer?.exited;
    writer = undefined;
    await removeDir(root);
  });

  const cli = (...args: string[]): Promise<CliResult> => runCli(main, args);
  const saved = (app: ChildApp): number[] =>
    app.lines.filter((l) => l.startsWith('SAVED ')).map((l) => Number(l.slice(6)));

  /** The carts a backup restores to, through the CLI's restore then export. */
  const restoredCarts = async (backup: string, n: number): Promise<Record<string, unknown>> => {
    const fresh = join(root, `restored-${n}`);
    const restored = await cli('restore', fresh, backup);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    const exported = await cli('export', fresh);
    expect(exported.code).toBe(0);
    return JSON.parse(exported.stdout).collections.carts as Record<string, unknown>;
  };

  it('each backup taken while the app keeps saving restores to one whole acknowledged save', async () => {
    const store = join(root, 'store');
    await mkdir(store);
    writer = new ChildApp('test/fixtures/live-writer.main.ts', { PERSISTENCE_PATH: store });
    await writer.waitFor('READY');
    await writer.waitFor('SAVED 3');

    const backups: string[] = [];
    const roundsAtBackup: number[] = [];
    for (let i = 0; i < 6; i++) {
      const into = i % 2 === 1;
      const destination = join(root, into ? `backups-${i}` : `backup-${i}`);
      const made = into
        ? await cli('backup', store, '--into', destination)
        : await cli('backup', store, destination);
      expect(made.stderr).toContain('in use by process');
      expect(made.code).toBe(0);
      if (into) {
        const ids = (await readdir(destination)).filter((name) => !name.startsWith('.')).sort();
        backups.push(join(destination, ids[ids.length - 1]));
      } else {
        backups.push(destination);
      }
      roundsAtBackup.push(saved(writer).length);
    }
    // The app went on saving through the backups, undisturbed.
    expect(roundsAtBackup[roundsAtBackup.length - 1]).toBeGreaterThan(roundsAtBackup[0]);
    const before = saved(writer).length;
    await writer.waitFor(`SAVED ${before + 3}`);
    writer.kill('SIGTERM');
    expect(await writer.exited).toEqual({ code: 0, signal: null });
    const acknowledged = new Set(saved(writer));

    const seen = new Set<number>();
    for (const [n, backup] of backups.entries()) {
      const carts = await restoredCarts(backup, n);
      const round = [...acknowledged].find((r) =>
        isDeepStrictEqual(carts, Object.fromEntries(liveState(r))),
      );
      // Exactly the state after one acknowledged save (else: shown against the nearest round).
      if (round === undefined) {
        const near = Math.max(...Object.values(carts).map((c) => (c as { total: number }).total));
        expect(carts).toEqual(Object.fromEntries(liveState(near)));
      }
      expect(round).toBeDefined();
      seen.add(round!);
    }
    // Backups of different moments, not one state copied six times.
    expect(seen.size).toBeGreaterThan(1);
  }, 120_000);
});
