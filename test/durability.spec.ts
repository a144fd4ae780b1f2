import { execFileSync, spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isTempFileName } from '../lib/storage/atomic-write';
import { isLockFileName } from '../lib/storage/store.lock';
import { childCommand } from './fixtures/child-process';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/**
 * Proves the durability guarantees of docs/on-disk-format.md on the real system calls of a real
 * process, recorded by strace:
 *  - a small save commits with one journal write (its whole record) through a descriptor opened
 *    with O_DSYNC, which makes it durable when it returns (no separate sync), and touches no
 *    item file (a record larger than the staging buffer is streamed: see journal-stream.spec.ts);
 *  - a checkpoint writes each item file to a temporary file, fsyncs and closes it, renames it over its
 *    target, fsyncs the folder, and only then empties the journal.
 */

interface Call {
  t: number;
  name: string;
  args: string;
  ret: string;
}

function straceProblem(): string | undefined {
  try {
    execFileSync('strace', ['-qq', '-e', 'trace=none', 'true'], { stdio: 'ignore' });
    return undefined;
  } catch (error) {
    return `strace cannot run here (${(error as Error).message.split('\n')[0]}); install it (apt-get install strace) to run this test`;
  }
}

async function readTrace(dir: string): Promise<Call[]> {
  const calls: Call[] = [];
  for (const file of (await readdir(dir)).filter((f) => f.startsWith('trace.'))) {
    for (const line of (await readFile(join(dir, file), 'utf8')).split('\n')) {
      const match = /^(\d+\.\d+) (\w+)\((.*)\)\s+= (-?\d+)/.exec(line);
      if (match) calls.push({ t: Number(match[1]), name: match[2], args: match[3], ret: match[4] });
    }
  }
  return calls.sort((a, b) => a.t - b.t);
}

const firstPath = (args: string): string | undefined => /"([^"]*)"/.exec(args)?.[1];
const fdOf = (args: string): string => args.split(',')[0].trim();
const isSync = (c: Call): boolean => c.name === 'fsync' || c.name === 'fdatasync';

const problem = straceProblem();
const describeWithStrace = problem ? describe.skip : describe;
if (problem) console.warn(`durability.spec skipped: ${problem}`);

describeWithStrace('durability (strace of a real process)', () => {
  let work: string;
  let store: string;
  let calls: Call[];
  const marks: Record<string, number> = {};
  let journalFd: string;
  /** The journal opened a second time, with O_DSYNC: the commits of small records. */
  let syncedFd: string;
  const between = (from: string, to: string): Call[] =>
    calls.filter((c) => c.t > marks[from] && c.t < marks[to]);

  beforeAll(async () => {
    work = await makeTempDir();
    store = join(work, 'store');
    const result = spawnSync(
      'strace',
      [
        '-f',
        '-ff',
        '-ttt',
        '-qq',
        '-e',
        'signal=none',
        '-e',
        'trace=openat,fsync,fdatasync,close,rename,renameat,renameat2,write,pwrite64,ftruncate,unlink',
        '-o',
        join(work, 'trace'),
        ...childCommand('test/fixtures/save-once.main.ts'),
      ],
      {
        cwd: join(__dirname, '..'),
        env: { ...process.env, PERSISTENCE_PATH: store },
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(result.stdout).toContain('CHECKPOINT-END');
    calls = await readTrace(work);
    for (const mark of ['SAVE-START', 'SAVE-END', 'CHECKPOINT-START', 'CHECKPOINT-END']) {
      marks[mark] = calls.find(
        (c) => c.name === 'write' && c.args.startsWith('1,') && c.args.includes(mark),
      )!.t;
    }
    const journalOpens = calls.filter(
      (c) => c.name === 'openat' && firstPath(c.args) === join(store, '.journal'),
    );
    journalFd = journalOpens.find((c) => !c.args.includes('O_DSYNC'))!.ret;
    syncedFd = journalOpens.find((c) => c.args.includes('O_DSYNC'))!.ret;
  }, 90_000);
  afterAll(async () => {
    await removeDir(work);
  });

  it('a small save commits with one write of its whole record, prefix first, durable when it returns (O_DSYNC)', () => {
    const save = between('SAVE-START', 'SAVE-END');
    const onJournal = (c: Call): boolean => fdOf(c.args) === journalFd || fdOf(c.args) === syncedFd;
    const writes = save.filter(
      (c) => (c.name === 'pwrite64' || c.name === 'write') && onJournal(c),
    );
    expect(writes).toHaveLength(1);
    const [record] = writes;
    expect(fdOf(record.args)).toBe(syncedFd);
    expect(record.args).toMatch(/^\d+, "NPJ\\3/); // magic "NPJ" + record version 3
    expect(Number(record.ret)).toBeGreaterThan(16);
    // Nothing else of the save touched the journal, and no sync was needed after that write.
    expect(save.filter((c) => isSync(c) && onJournal(c))).toEqual([]);
  });

  it('a save touches no item file: no rename, no file opened for writing, no removal', () => {
    const save = between('SAVE-START', 'SAVE-END');
    expect(save.filter((c) => c.name.startsWith('rename') || c.name === 'unlink')).toEqual([]);
    expect(save.filter((c) => c.name === 'openat' && /O_WRONLY|O_RDWR/.test(c.args))).toEqual([]);
  });

  it('the checkpoint writes each item file by rename from a temporary file', () => {
    const renames = between('CHECKPOINT-START', 'CHECKPOINT-END').filter((c) =>
      c.name.startsWith('rename'),
    );
    const targets = renames.map(
      (c) => /"[^"]*", "([^"]*)"/.exec(c.args)?.[1] ?? /, AT_FDCWD, "([^"]*)"/.exec(c.args)?.[1],
    );
    expect(targets.sort()).toEqual(
      [
        join(store, 'conversations', 'conv-a.json'),
        join(store, 'sessions', 'sess-a.json'),
        join(store, 'sessions', 'sess-b.json'),
      ].sort(),
    );
    for (const rename of renames)
      expect(isTempFileName(basename(firstPath(rename.args)!))).toBe(true);
  });

  it('only temporary files, the journal and the lock (with its own temporary file) are ever opened for writing', () => {
    const writable = calls.filter(
      (c) =>
        c.name === 'openat' &&
        /O_WRONLY|O_RDWR/.test(c.args) &&
        firstPath(c.args)?.startsWith(store),
    );
    for (const open of writable) {
      const name = basename(firstPath(open.args)!);
      expect({
        name,
        allowed: isTempFileName(name) || name === '.journal' || isLockFileName(name),
      }).toEqual({ name, allowed: true });
    }
  });

  it('fsyncs and closes each temporary file before renaming it', () => {
    const renames = between('CHECKPOINT-START', 'CHECKPOINT-END').filter((c) =>
      c.name.startsWith('rename'),
    );
    for (const rename of renames) {
      const temp = firstPath(rename.args)!;
      const open = calls.find((c) => c.name === 'openat' && firstPath(c.args) === temp)!;
      const close = calls.find(
        (c) => c.name === 'close' && fdOf(c.args) === open.ret && c.t > open.t,
      )!;
      const sync = calls.find(
        (c) => isSync(c) && fdOf(c.args) === open.ret && c.t > open.t && c.t < close.t,
      );
      expect(sync).toBeDefined();
      expect(close.t).toBeLessThan(rename.t);
    }
  });

  it('fsyncs every folder it renamed into, then empties and fsyncs the journal, in that order', () => {
    const checkpoint = between('CHECKPOINT-START', 'CHECKPOINT-END');
    const renames = checkpoint.filter((c) => c.name.startsWith('rename'));
    const truncate = checkpoint.find((c) => c.name === 'ftruncate' && fdOf(c.args) === journalFd)!;
    expect(truncate).toBeDefined();
    for (const folder of new Set(renames.map((c) => dirname(firstPath(c.args)!)))) {
      const lastRename = Math.max(
        ...renames.filter((c) => dirname(firstPath(c.args)!) === folder).map((c) => c.t),
      );
      const synced = checkpoint.some(
        (open) =>
          open.name === 'openat' &&
          firstPath(open.args) === folder &&
          open.t > lastRename &&
          checkpoint.some(
            (c) => isSync(c) && fdOf(c.args) === open.ret && c.t > open.t && c.t < truncate.t,
          ),
      );
      expect({ folder, synced }).toEqual({ folder, synced: true });
    }
    expect(
      checkpoint.some((c) => isSync(c) && fdOf(c.args) === journalFd && c.t > truncate.t),
    ).toBe(true);
  });
});
