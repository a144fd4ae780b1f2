import { execFileSync, spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isTempFileName } from '../lib/storage/atomic-write';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/**
 * Proves the durability guarantee of docs/on-disk-format.md with the real system calls of a real save,
 * recorded by strace in a child process: every item file is written to a temporary file, fsynced,
 * closed, renamed over its target, and its folder is fsynced before saveAll() resolves.
 */

interface Call {
  t: number;
  name: string;
  args: string;
  ret: string;
}

function straceAvailable(): string | undefined {
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

const unavailable = straceAvailable();
const describeWithStrace = unavailable ? describe.skip : describe;
if (unavailable) {
  console.warn(`durability.spec skipped: ${unavailable}`);
}

describeWithStrace('durability of a save (strace of a real process)', () => {
  let work: string;
  let store: string;
  let calls: Call[];
  let saveStart: number;
  let saveEnd: number;

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
        'trace=openat,fsync,fdatasync,close,rename,renameat,renameat2,write',
        '-o',
        join(work, 'trace'),
        process.execPath,
        '-r',
        'ts-node/register/transpile-only',
        '-r',
        'tsconfig-paths/register',
        join(__dirname, 'fixtures', 'save-once.main.ts'),
      ],
      {
        cwd: join(__dirname, '..'),
        env: { ...process.env, PERSISTENCE_PATH: store },
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(result.stdout).toContain('SAVE-END');
    calls = await readTrace(work);
    const marker = (text: string): number =>
      calls.find((c) => c.name === 'write' && c.args.startsWith('1,') && c.args.includes(text))!.t;
    saveStart = marker('SAVE-START');
    saveEnd = marker('SAVE-END');
  }, 90_000);
  afterAll(async () => {
    await removeDir(work);
  });

  it('writes three item files, each by rename from a temporary file', () => {
    const renames = calls.filter(
      (c) => c.name.startsWith('rename') && c.t > saveStart && c.t < saveEnd,
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
    for (const rename of renames) {
      expect(isTempFileName(basename(firstPath(rename.args)!))).toBe(true);
    }
  });

  it('never opens an item file itself for writing: only temporary files are written', () => {
    const writable = calls.filter(
      (c) =>
        c.name === 'openat' &&
        /O_WRONLY|O_RDWR/.test(c.args) &&
        firstPath(c.args)?.startsWith(store),
    );
    expect(writable.length).toBe(3);
    for (const open of writable) expect(isTempFileName(basename(firstPath(open.args)!))).toBe(true);
  });

  it('fsyncs and closes each temporary file before renaming it', () => {
    const renames = calls.filter(
      (c) => c.name.startsWith('rename') && c.t > saveStart && c.t < saveEnd,
    );
    for (const rename of renames) {
      const temp = firstPath(rename.args)!;
      const open = calls.find((c) => c.name === 'openat' && firstPath(c.args) === temp)!;
      const fd = open.ret;
      const close = calls.find((c) => c.name === 'close' && fdOf(c.args) === fd && c.t > open.t)!;
      const sync = calls.find(
        (c) =>
          (c.name === 'fsync' || c.name === 'fdatasync') &&
          fdOf(c.args) === fd &&
          c.t > open.t &&
          c.t < close.t,
      );
      expect(sync).toBeDefined();
      expect(close.t).toBeLessThan(rename.t);
    }
  });

  it('fsyncs every folder it renamed into after the renames and before saveAll() resolves', () => {
    const renames = calls.filter(
      (c) => c.name.startsWith('rename') && c.t > saveStart && c.t < saveEnd,
    );
    const folders = new Set(renames.map((c) => dirname(firstPath(c.args)!)));
    for (const folder of folders) {
      const lastRename = Math.max(
        ...renames.filter((c) => dirname(firstPath(c.args)!) === folder).map((c) => c.t),
      );
      const synced = calls.some((open) => {
        if (open.name !== 'openat' || firstPath(open.args) !== folder || open.t < lastRename)
          return false;
        return calls.some(
          (c) => c.name === 'fsync' && fdOf(c.args) === open.ret && c.t > open.t && c.t < saveEnd,
        );
      });
      expect({ folder, synced }).toEqual({ folder, synced: true });
    }
  });
});
