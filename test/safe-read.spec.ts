import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PersistenceFile, PersistenceFileSystem } from '../lib/storage/file-system.interface';
import { decodeRecords, Journal } from '../lib/storage/journal';
import { NodeFileSystem } from '../lib/storage/node-file-system';
import { readRegularFile, UnsafeFileError } from '../lib/storage/safe-read';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * readRegularFile() is how the store reads every item file. On the local file system it takes a
 * fast path (open, read to the end, close, with shared scratch buffers) and falls back to the
 * careful path (open, stat, read, close) whenever that must decide. Whatever the path, a caller
 * gets exactly the file's bytes, or the refusal with its reason.
 */
describe('readRegularFile', () => {
  let dir: string;
  const fs = new NodeFileSystem();

  beforeEach(async () => {
    dir = await makeTempDir();
  });

  afterEach(async () => {
    await removeDir(dir);
  });

  const KiB = 1024;
  const sizes = [
    1,
    100,
    64 * KiB - 1,
    64 * KiB,
    64 * KiB + 1,
    1024 * KiB,
    1024 * KiB + 1,
    3000 * KiB,
  ];

  it.each(sizes)('returns exactly the bytes of a %i-byte file', async (size) => {
    const bytes = randomBytes(size);
    await writeFile(join(dir, 'f.json'), bytes);
    const read = await readRegularFile(fs, join(dir, 'f.json'), Number.MAX_SAFE_INTEGER);
    expect(read.equals(bytes)).toBe(true);
  });

  it('returns each file its own bytes when hundreds are read at once (scratch buffers are shared)', async () => {
    const files = Array.from({ length: 300 }, (_, i) => ({
      path: join(dir, `f${i}.json`),
      bytes: randomBytes([10, 5000, 70_000, 200_000][i % 4] + i),
    }));
    await Promise.all(files.map((file) => writeFile(file.path, file.bytes)));
    const read = await Promise.all(
      files.map((file) => readRegularFile(fs, file.path, Number.MAX_SAFE_INTEGER)),
    );
    read.forEach((bytes, i) => expect(bytes.equals(files[i].bytes)).toBe(true));
    // Read again: buffers handed out earlier must not change under their owners.
    const again = await Promise.all(
      files.map((file) => readRegularFile(fs, file.path, Number.MAX_SAFE_INTEGER)),
    );
    again.forEach((bytes, i) => expect(bytes.equals(files[i].bytes)).toBe(true));
    read.forEach((bytes, i) => expect(bytes.equals(files[i].bytes)).toBe(true));
  });

  it('returns an empty buffer for an empty file', async () => {
    await writeFile(join(dir, 'empty.json'), '');
    expect((await readRegularFile(fs, join(dir, 'empty.json'), 10)).length).toBe(0);
  });

  it.each([
    [100, 101],
    [100, 70_000],
    [64 * KiB, 64 * KiB + 1],
    [2 * 1024 * KiB, 2 * 1024 * KiB + 1],
  ])(
    'refuses a file over the limit (limit %i, file %i bytes) with its size',
    async (limit, size) => {
      await writeFile(join(dir, 'big.json'), randomBytes(size));
      await expect(readRegularFile(fs, join(dir, 'big.json'), limit)).rejects.toThrow(
        new UnsafeFileError(
          `it is ${size} bytes, more than limits.maxFileBytes (${limit}); raise the limit to read it`,
        ),
      );
    },
  );

  it('reads a file of exactly the limit', async () => {
    const bytes = randomBytes(70_000);
    await writeFile(join(dir, 'f.json'), bytes);
    expect((await readRegularFile(fs, join(dir, 'f.json'), 70_000)).equals(bytes)).toBe(true);
  });

  it('refuses a symbolic link, a folder and a FIFO, without blocking on the FIFO', async () => {
    await writeFile(join(dir, 'target.json'), '{}');
    await symlink(join(dir, 'target.json'), join(dir, 'link.json'));
    await mkdir(join(dir, 'folder.json'));
    execFileSync('mkfifo', [join(dir, 'pipe.json')]);
    await expect(readRegularFile(fs, join(dir, 'link.json'), 1000)).rejects.toThrow(
      new UnsafeFileError('it is a symbolic link'),
    );
    await expect(readRegularFile(fs, join(dir, 'folder.json'), 1000)).rejects.toThrow(
      new UnsafeFileError('it is not a regular file'),
    );
    await expect(readRegularFile(fs, join(dir, 'pipe.json'), 1000)).rejects.toThrow(
      new UnsafeFileError('it is not a regular file'),
    );
  });

  it('refuses a hard link when asked to, though the fast path would read it', async () => {
    await writeFile(join(dir, 'a.json'), '{}');
    execFileSync('ln', [join(dir, 'a.json'), join(dir, 'b.json')]);
    await expect(
      readRegularFile(fs, join(dir, 'b.json'), 1000, { singleLink: true }),
    ).rejects.toThrow(new UnsafeFileError('it is a hard link to another file'));
    expect((await readRegularFile(fs, join(dir, 'b.json'), 1000)).toString()).toBe('{}');
  });

  it('reports a missing file as ENOENT', async () => {
    await expect(readRegularFile(fs, join(dir, 'gone.json'), 1000)).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});

describe('the journal commit', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeDir(dir);
  });
  const opened = async (fs: PersistenceFileSystem): Promise<Journal> => {
    const journal = new Journal(fs, join(dir, '.journal'), 0o600);
    await journal.open();
    return journal;
  };
  const small = { collection: 'sessions', fileName: 'a.json', data: Buffer.from('{"id":"a"}') };
  /** The real file system, with the calls on opened files recorded as `<how> <call>`. */
  const recordingFs = (calls: string[], synced: boolean): PersistenceFileSystem => {
    const inner = new NodeFileSystem();
    const recorded = (how: string, file: PersistenceFile): PersistenceFile => ({
      stat: () => file.stat(),
      read: (...args) => file.read(...args),
      write: (data, position) => (calls.push(`${how} write`), file.write(data, position)),
      truncate: (length) => file.truncate(length),
      chmod: (m) => file.chmod(m),
      sync: () => (calls.push(`${how} sync`), file.sync()),
      datasync: () => (calls.push(`${how} datasync`), file.datasync!()),
      close: () => file.close(),
    });
    return Object.assign(Object.create(inner) as NodeFileSystem, {
      open: async (path: string, how: 'read' | 'create' | 'append' | 'directory', mode?: number) =>
        recorded(how, await inner.open(path, how, mode)),
      openSyncedAppend: synced
        ? async (path: string, mode?: number) =>
            recorded('synced', await inner.openSyncedAppend(path, mode))
        : undefined,
    });
  };

  it('makes a small record durable with one write through the O_DSYNC handle, and no sync', async () => {
    const calls: string[] = [];
    const journal = await opened(recordingFs(calls, true));
    calls.length = 0;
    await journal.append([{ ...small }]);
    expect(calls).toEqual(['synced write']);
    // A record larger than the staging buffer streams through the other handle: it ends with
    // the prefix and one fdatasync of all of it.
    calls.length = 0;
    await journal.append([
      { collection: 'sessions', fileName: 'b.json', data: Buffer.alloc(3 * 1024 * 1024, 98) },
    ]);
    expect(calls.filter((call) => call.startsWith('synced'))).toEqual([]);
    expect(calls.slice(-2)).toEqual(['append write', 'append datasync']);
    await journal.close();
    expect(decodeRecords(await readFile(join(dir, '.journal'))).records).toHaveLength(2);
  });

  it('through a NodeFileSystem subclass that overrides open() only, every journal write goes through that open()', async () => {
    const seen: string[] = [];
    class Watched extends NodeFileSystem {
      override async open(
        path: string,
        how: 'read' | 'create' | 'append' | 'directory',
        mode?: number,
      ): Promise<PersistenceFile> {
        const file = await super.open(path, how, mode);
        const write = file.write.bind(file);
        file.write = (data, position) => (seen.push(`${how} write`), write(data, position));
        return file;
      }
    }
    const fs = new Watched();
    await expect(fs.openSyncedAppend(join(dir, 'x'))).rejects.toMatchObject({ code: 'ENOTSUP' });
    const journal = await opened(fs);
    expect(seen).toEqual(['append write']); // the new journal's header
    seen.length = 0;
    await journal.append([{ ...small }]);
    expect(seen).toEqual(['append write']);
    await journal.close();
  });

  it('without O_DSYNC handles, makes its record durable with one fdatasync where the file system has it', async () => {
    const calls: string[] = [];
    const journal = await opened(recordingFs(calls, false));
    calls.length = 0;
    await journal.append([{ ...small }]);
    expect(calls).toEqual(['append write', 'append datasync']);
    await journal.close();
  });
});
