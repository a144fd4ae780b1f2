import { INestApplication } from '@nestjs/common';
import { appendFile, cp, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { PersistenceModuleOptions, PersistenceStore, SessionManager } from 'nestjs-persistence';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { CartAdapter, CartModule, CartService } from './fixtures/cart.adapter';
import { buildCli, CliResult, runCli, unresolvedRequires } from './fixtures/cli';
import { dumpState, saveToFiles, seedState } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';
import { createHash } from 'node:crypto';
import { decodeRecords, JOURNAL_HEADER_BYTES } from '../lib/storage/journal';

/**
 * A journal as the releases before format 3 wrote it: no file header, records "NPJ" 0x02 (files'
 * bytes, header JSON, its length; prefix: magic, length, first 8 bytes of SHA-256(payload)).
 */
function formatTwoJournal(id: string, body: string): Buffer {
  const file = Buffer.from(body);
  const header = Buffer.from(
    JSON.stringify({ ops: [{ c: 'sessions', f: `${id}.json`, n: file.length }] }),
  );
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  const payload = Buffer.concat([file, header, length]);
  const prefix = Buffer.alloc(16);
  Buffer.from([0x4e, 0x50, 0x4a, 0x02]).copy(prefix);
  prefix.writeUInt32LE(payload.length, 4);
  createHash('sha256').update(payload).digest().copy(prefix, 8, 0, 8);
  return Buffer.concat([prefix, payload]);
}

/** Every file and folder under `root` with its bytes: for "the CLI wrote nothing" checks. */
async function tree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        out[`${relative(root, path)}/`] = '';
        await walk(path);
      } else {
        out[relative(root, path)] = (await readFile(path)).toString('base64');
      }
    }
  };
  await walk(root);
  return out;
}

const KEY = 'a1'.repeat(32);

/** util-linux `script` runs a command on a pseudo-terminal: how a user's shell runs the CLI. */
const SCRIPT = ['/usr/bin/script', '/bin/script'].find((p) => existsSync(p));

/*
 * The CLI as users run it: lib compiled once, each command a real child process, against stores
 * written by real Nest applications (built-in managers and a custom cart adapter).
 */
describe('CLI (nestjs-persistence bin)', () => {
  let work: string;
  let main: string;
  let root: string;
  const apps: INestApplication[] = [];

  beforeAll(async () => {
    work = await makeTempDir('persistence-cli-build-');
    main = await buildCli(work);
  }, 60_000);
  afterAll(() => removeDir(work));
  beforeEach(async () => {
    root = await makeTempDir('persistence-cli-');
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(root);
  });

  const cli = (...args: string[]): Promise<CliResult> => runCli(main, args);

  const openApp = async (
    path: string,
    options: PersistenceModuleOptions = {},
  ): Promise<INestApplication> => {
    const app = await createApp(
      { path, adapters: [CartAdapter], ...options },
      { imports: [CartModule] },
    );
    apps.push(app);
    return app;
  };
  const dump = (app: INestApplication): unknown => ({
    ...(dumpState(app) as object),
    carts: Object.fromEntries(app.get(CartService).entries()),
  });
  const closeApp = async (app: INestApplication): Promise<void> => {
    apps.splice(apps.indexOf(app), 1);
    await app.close();
  };
  /** A store with 2 sessions, 1 conversation, 1 focus chain, 1 cart, all in item files; closed. */
  const makeStore = async (
    path: string,
    options: PersistenceModuleOptions = {},
  ): Promise<unknown> => {
    const app = await openApp(path, options);
    seedState(app);
    app.get(CartService).set('cart-1', { items: ['apple', 'pear'], total: 5 });
    await saveToFiles(app);
    const state = dump(app);
    await closeApp(app);
    return state;
  };

  it('compiles to a runnable bin: imports resolve, --help exits 0, usage errors exit 2', async () => {
    expect(await unresolvedRequires(join(work, 'dist'))).toEqual([]);
    expect((await readFile(main, 'utf8')).startsWith('#!/usr/bin/env node\n')).toBe(true);
    const [help, version, noPath, unknown, badFormat, missing] = await Promise.all([
      cli('--help'),
      cli('--version'),
      cli('verify'),
      cli('frobnicate'),
      cli('import', join(root, 's'), join(root, 'doc.json'), '--format', 'xml'),
      cli('inspect', join(root, 'nothing-here')),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--version');
    const { version: packaged } = JSON.parse(await readFile('package.json', 'utf8')) as {
      version: string;
    };
    expect(version).toEqual({ code: 0, stdout: `${packaged}\n`, stderr: '' });
    for (const command of [
      'inspect',
      'verify',
      'export',
      'import',
      'migrate',
      'backup',
      'restore',
    ]) {
      expect(help.stdout).toContain(`  ${command} `);
    }
    expect(help.stdout).toContain('quarantine');
    expect(help.stdout).toContain('backups');
    expect(noPath).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('Give the store folder'),
    });
    expect(unknown).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("unknown command 'frobnicate'"),
    });
    expect(badFormat).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('Unknown --format "xml"'),
    });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      `No store at ${join(root, 'nothing-here')}: it does not exist`,
    );
  });

  it('inspect reports collections, counts, formats, sizes, versions, journal, quarantine and lock', async () => {
    const store = join(root, 'store');
    await makeStore(store);
    // One file in another format, and one file in quarantine.
    const sess2 = join(store, 'sessions', 'sess-2.json');
    await writeFile(`${sess2}.gz`, gzipSync(await readFile(sess2)));
    await rm(sess2);
    await mkdir(join(store, '.quarantine', 'focus'), { recursive: true });
    await writeFile(
      join(store, '.quarantine', 'focus', '2026-01-02T03-04-05-006Z-0a1b2c3d-chain-9.json'),
      '{"id":',
    );

    const [json, text] = await Promise.all([
      cli('inspect', store, '--json'),
      cli('inspect', store),
    ]);
    expect(json.code).toBe(0);
    expect(json.stderr).toBe(''); // no progress bar when stderr is not a terminal
    const report = JSON.parse(json.stdout);
    expect(report.lock).toBeNull();
    expect(report.journal).toEqual({ records: 0, changes: 0, bytes: 0, tornBytes: 0 });
    expect(report.collections.map((c: { name: string }) => c.name)).toEqual([
      'carts',
      'conversations',
      'focus',
      'sessions',
    ]);
    const sessions = report.collections.find((c: { name: string }) => c.name === 'sessions');
    expect(sessions).toMatchObject({
      items: 2,
      files: 2,
      formats: { json: 1, 'json-gzip': 1 },
      versions: { '1': 2 },
      ignored: 0,
    });
    expect(sessions.bytes).toBe(
      (await readFile(join(store, 'sessions', 'sess-1.json'))).length +
        (await readFile(`${sess2}.gz`)).length,
    );
    expect(report.quarantine).toMatchObject({
      files: 1,
      list: [
        {
          file: 'focus/2026-01-02T03-04-05-006Z-0a1b2c3d-chain-9.json',
          quarantinedAt: '2026-01-02T03:04:05.006Z',
        },
      ],
    });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('Lock        free');
    expect(text.stdout).toContain('Journal     empty');
    expect(text.stdout).toMatch(/sessions\s+2\s+2\s+\d+ B\s+json 1, json-gzip 1\s+v1 2/);
    expect(text.stdout).toContain('Quarantine  1 file');
  });

  it('verify exits 0 on a good store, and 1 listing each damaged file and a torn journal, changing nothing', async () => {
    const store = join(root, 'store');
    await makeStore(store);
    const good = await cli('verify', store);
    expect(good).toMatchObject({ code: 0, stderr: '' });
    expect(good.stdout).toContain('5 item files in 4 collections');
    expect(good.stdout).toContain('no problems');

    await writeFile(join(store, 'sessions', 'sess-1.json'), '{"id": "sess-1", "v": 1, "da');
    await writeFile(
      join(store, 'sessions', 'sess-3.json'),
      await readFile(join(store, 'sessions', 'sess-2.json')),
    );
    await appendFile(join(store, '.journal'), Buffer.from('NPJ\u0001torn'));
    const before = await tree(store);
    const bad = await cli('verify', store);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('3 problems');
    expect(bad.stdout).toMatch(/^ {2}sessions\/sess-1\.json: .*JSON/m);
    expect(bad.stdout).toContain(
      'sessions/sess-3.json: the id inside ("sess-2") does not match the file name',
    );
    expect(bad.stdout).toContain(
      '  .journal: the last 8 byte(s) are not a complete record: a save interrupted by a crash; ' +
        'it was never acknowledged; the next start of the application cuts them off',
    );
    expect(bad.stdout).not.toContain('sess-2.json:');
    expect(await tree(store)).toEqual(before); // nothing quarantined, nothing cut off
  });

  it('verify exits 1 on a journal whose middle record is damaged, in the words of the start that copies it aside', async () => {
    // Three acknowledged saves still in the journal, copied as a crash would leave the folder.
    const source = join(root, 'source');
    const app = await openApp(source, {
      checkpointBytes: Number.MAX_SAFE_INTEGER,
      saveOnShutdown: false,
    });
    for (const id of ['s1', 's2', 's3']) {
      app.get(SessionManager).create({ id });
      await app.get(PersistenceStore).saveAll();
    }
    const store = join(root, 'store');
    await cp(source, store, { recursive: true, filter: (path) => !path.endsWith('.lock') });
    await closeApp(app);
    const journal = await readFile(join(store, '.journal'));
    // Where the second record starts: after the file header and the first record (28-byte prefix).
    const second = JOURNAL_HEADER_BYTES + 28 + journal.readUInt32LE(JOURNAL_HEADER_BYTES + 4);
    journal[second + 40] ^= 0xff; // in its payload
    await writeFile(join(store, '.journal'), journal);

    const before = await tree(store);
    const [text, json] = await Promise.all([cli('verify', store), cli('verify', store, '--json')]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('(PERSISTENCE_JOURNAL_DAMAGED)');
    const { problems } = JSON.parse(json.stdout) as {
      problems: Array<{ file: string; problem: string; code: string }>;
    };
    expect(problems).toEqual([
      {
        file: '.journal',
        code: 'PERSISTENCE_JOURNAL_DAMAGED',
        problem: expect.stringContaining('2 committed save(s) before and after the damage'),
      },
    ]);
    expect(await tree(store)).toEqual(before);

    // The application, started on the same bytes, reports the same problem of the same file.
    const logger = new RecordingLogger();
    const started = await createApp(
      { path: store, adapters: [CartAdapter] },
      { imports: [CartModule], logger },
    );
    apps.push(started);
    expect(logger.lines).toContainEqual(
      expect.stringContaining(
        `error The journal ${join(store, '.journal')} is damaged: ${problems[0].problem}.`,
      ),
    );
  });

  it('a journal of the earlier format 2: verify lists it, the start fails in the same words, both leave it as it is', async () => {
    const store = join(root, 'store');
    const app = await openApp(store, { saveOnShutdown: false });
    app.get(SessionManager).create({ id: 's1' });
    await app.get(PersistenceStore).saveAll();
    await closeApp(app);
    // A save of the earlier release, still in its journal (not yet in the item files).
    const session = {
      id: 's2',
      status: 'active',
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
      metadata: {},
    };
    const old = formatTwoJournal('s2', JSON.stringify({ id: 's2', v: 1, data: session }));
    await writeFile(join(store, '.journal'), old);
    const before = await tree(store);

    const [text, json] = await Promise.all([cli('verify', store), cli('verify', store, '--json')]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('(PERSISTENCE_JOURNAL_FORMAT_UNSUPPORTED)');
    const { problems } = JSON.parse(json.stdout) as {
      problems: Array<{ file: string; problem: string; code: string }>;
    };
    expect(problems).toEqual([
      {
        file: '.journal',
        code: 'PERSISTENCE_JOURNAL_FORMAT_UNSUPPORTED',
        problem: expect.stringContaining('journal format 2, written by an earlier version'),
      },
    ]);
    for (const readOnly of [false, true]) {
      await expect(openApp(store, { readOnly })).rejects.toMatchObject({
        code: 'PERSISTENCE_JOURNAL_FORMAT_UNSUPPORTED',
        message: expect.stringContaining(
          `The journal ${join(store, '.journal')}: ${problems[0].problem}. The store did not start`,
        ),
      });
    }
    // inspect does not call it empty.
    const inspected = await cli('inspect', store, '--json');
    expect(JSON.parse(inspected.stdout).journal).toMatchObject({
      records: 0,
      unsupported: [{ file: '.journal', format: 2 }],
    });
    expect((await cli('inspect', store)).stdout).toContain(
      '.journal is in journal format 2, which this version does not read',
    );
    // Never dropped, cut or overwritten: the save it holds is still there for the version that reads it.
    expect((await readFile(join(store, '.journal'))).equals(old)).toBe(true);
    expect(await tree(store)).toEqual(before);
  });

  it('a store reached through a symbolic link: every command works on it as the application does', async () => {
    const store = join(root, 'store');
    await makeStore(store);
    const link = join(root, 'link');
    await symlink(store, link);
    const [inspect, verify, exported] = await Promise.all([
      cli('inspect', link, '--json'),
      cli('verify', link),
      cli('export', link),
    ]);
    expect(inspect.code).toBe(0);
    expect(JSON.parse(inspect.stdout).collections).toHaveLength(4);
    expect(verify).toMatchObject({ code: 0, stdout: expect.stringContaining('no problems') });
    expect(exported.code).toBe(0);
    expect(Object.keys(JSON.parse(exported.stdout).collections.sessions)).toEqual([
      'sess-1',
      'sess-2',
    ]);
    const backup = join(root, 'backup');
    expect((await cli('backup', link, backup)).code).toBe(0);
    expect((await cli('restore', link, backup)).code).toBe(0);
    // A link to something that is not a folder is still refused.
    await writeFile(join(root, 'file'), 'x');
    await symlink(join(root, 'file'), join(root, 'file-link'));
    expect((await cli('verify', join(root, 'file-link'))).stderr).toContain('it is not a folder');
  });

  it('export --out into the store is refused through any symbolic link; nothing is written there', async () => {
    const store = join(root, 'store');
    await makeStore(store, { encryption: { key: KEY } });
    await symlink(store, join(root, 'to-store'));
    await symlink(root, join(root, 'to-parent'));
    await mkdir(join(root, 'elsewhere'));
    await symlink(join(store, 'sessions'), join(root, 'elsewhere', 'to-sessions'));
    const before = await tree(store);
    for (const out of [
      join(root, 'to-store', 'export.json'),
      join(root, 'to-parent', 'store', 'export.json'),
      join(root, 'elsewhere', 'to-sessions', 'export.json'),
    ]) {
      for (const path of [store, join(root, 'to-store')]) {
        const result = await cli('export', path, '--out', out, '--key', KEY);
        expect({ out, path, code: result.code }).toEqual({ out, path, code: 2 });
        expect(result.stderr).toContain('is inside the store folder');
      }
    }
    expect(await tree(store)).toEqual(before);
    // Elsewhere it is written as before, and the store starts with nothing to quarantine.
    const fine = join(root, 'elsewhere', 'export.json');
    expect((await cli('export', join(root, 'to-store'), '--out', fine, '--key', KEY)).code).toBe(0);
    expect((await readFile(fine, 'utf8')).length).toBeGreaterThan(0);
    const app = await openApp(store, { encryption: { key: KEY } });
    expect(app.get(PersistenceStore).listUnloaded()).toEqual([]);
    expect(Object.keys(await tree(store)).filter((k) => k.startsWith('.quarantine'))).toEqual([]);
    await closeApp(app);
    // A backup or a restore through a link into the store is refused the same way.
    const backup = await cli('backup', store, join(root, 'to-store', 'backup'));
    expect(backup.code).toBe(1);
    expect(backup.stderr).toContain('inside the store folder');
    const restore = await cli('restore', store, join(root, 'to-store', 'sessions'), '--key', KEY);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toContain('it is the store folder, inside it, or contains it');
    expect(await tree(store)).toEqual(before);
  });

  (SCRIPT ? it : it.skip)(
    'shows a progress bar on stderr when it is a terminal (needs util-linux script)',
    async () => {
      const store = join(root, 'store');
      await makeStore(store);
      const { stdout } = await promisify(execFile)(SCRIPT!, [
        '-qec',
        `"${process.execPath}" "${main}" verify "${store}" > "${join(root, 'out.txt')}"`,
        '/dev/null',
      ]);
      expect(stdout).toContain('verify [');
      expect(stdout).toContain('0/5');
      expect(await readFile(join(root, 'out.txt'), 'utf8')).toContain('no problems');
    },
  );

  it('reads an encrypted store with the key from --key or NESTJS_PERSISTENCE_KEY', async () => {
    const store = join(root, 'store');
    await makeStore(store, { encryption: { key: KEY } });
    const [noKey, withEnv, inspect] = await Promise.all([
      cli('verify', store),
      runCli(main, ['verify', store], { NESTJS_PERSISTENCE_KEY: KEY }),
      cli('inspect', store, '--json', '--key', KEY),
    ]);
    expect(noKey.code).toBe(1);
    expect(noKey.stdout).toContain('sessions/sess-1.json.enc: it is encrypted (key "default")');
    expect(noKey.stdout).toContain('pass the key with --key');
    expect(withEnv).toMatchObject({ code: 0, stdout: expect.stringContaining('no problems') });
    const sessions = JSON.parse(inspect.stdout).collections.find(
      (c: { name: string }) => c.name === 'sessions',
    );
    expect(sessions).toMatchObject({ formats: { encrypted: 2 }, versions: { '1': 2 } });
    expect(`${noKey.stdout}${noKey.stderr}${inspect.stdout}`).not.toContain(KEY);
  });

  it('export then import into a fresh store gives the same state; import never overwrites by surprise', async () => {
    const source = join(root, 'source');
    const state = await makeStore(source);
    const file = join(root, 'export.json');
    const exported = await cli('export', source, '--out', file);
    expect(exported).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('Exported 5 items'),
    });
    const doc = JSON.parse(await readFile(file, 'utf8'));
    expect(doc).toMatchObject({ format: 'nestjs-persistence-export', version: 1, itemVersion: 1 });
    expect(doc.collections.carts).toEqual({ 'cart-1': { items: ['apple', 'pear'], total: 5 } });
    expect(Object.keys(doc.collections.sessions)).toEqual(['sess-1', 'sess-2']);

    const target = join(root, 'target');
    const imported = await cli('import', target, file);
    expect(imported).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('Imported 5 items'),
    });
    expect((await readdir(target)).sort()).toEqual(
      ['.journal', 'carts', 'conversations', 'focus', 'sessions'].sort(),
    );
    expect(decodeRecords(await readFile(join(target, '.journal'))).records).toEqual([]); // checkpointed
    const app = await openApp(target);
    expect(dump(app)).toEqual(state);
    await closeApp(app);

    // A second import into collections that hold items is refused unless --replace.
    const before = await tree(target);
    const again = await cli('import', target, file);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(
      'already holds items in "carts", "conversations", "focus", "sessions"',
    );
    expect(await tree(target)).toEqual(before);
    delete doc.collections.sessions['sess-2'];
    delete doc.collections.carts;
    await writeFile(file, JSON.stringify(doc));
    expect((await cli('import', target, file, '--replace', '--format', 'json-gzip')).code).toBe(0);
    expect(await readdir(join(target, 'sessions'))).toEqual(['sess-1.json.gz']);
    const replaced = await openApp(target);
    expect(
      replaced
        .get(SessionManager)
        .list()
        .map((s) => s.id),
    ).toEqual(['sess-1']);
    expect(replaced.get(CartService).get('cart-1')).toEqual({ items: ['apple', 'pear'], total: 5 });
  });

  it('import --format msgpack and auto: inspect reports the formats, verify reads them, the app loads them', async () => {
    const source = join(root, 'source');
    const state = await makeStore(source);
    const file = join(root, 'export.json');
    expect((await cli('export', source, '--out', file)).code).toBe(0);
    for (const [format, extension, detected] of [
      ['msgpack', '.msgpack', 'msgpack'],
      ['auto', '.jsonz', 'json'],
    ] as const) {
      const target = join(root, `target-${format}`);
      expect((await cli('import', target, file, '--format', format)).code).toBe(0);
      expect((await readdir(join(target, 'sessions'))).sort()).toEqual([
        `sess-1${extension}`,
        `sess-2${extension}`,
      ]);
      const inspect = await cli('inspect', target, '--json');
      const sessions = JSON.parse(inspect.stdout).collections.find(
        (c: { name: string }) => c.name === 'sessions',
      );
      expect(sessions).toMatchObject({ formats: { [detected]: 2 }, versions: { '1': 2 } });
      expect(await cli('verify', target)).toMatchObject({
        code: 0,
        stdout: expect.stringContaining('no problems'),
      });
      const app = await openApp(target, { format });
      expect(dump(app)).toEqual(state);
      await closeApp(app);
    }
  });

  it('backup, then restore, brings the backed-up state back', async () => {
    const store = join(root, 'store');
    const state = await makeStore(store);
    const backup = join(root, 'backup');
    const made = await cli('backup', store, backup);
    expect(made).toMatchObject({ code: 0, stdout: expect.stringContaining('Backed up 5 files') });
    expect(await readdir(backup)).toContain('persistence-backup.json');
    const twice = await cli('backup', store, backup);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('already holds files');

    const app = await openApp(store);
    app.get(SessionManager).delete('sess-1');
    app.get(CartService).set('cart-2', { items: [], total: 0 });
    await closeApp(app); // saves on shutdown
    const restored = await cli('restore', store, backup);
    expect(restored).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('Restored 5 files'),
    });
    const after = await openApp(store);
    expect(dump(after)).toEqual(state);
  });

  it('backup --into keeps differential backups; backups list shows their sizes; each restores alone', async () => {
    const store = join(root, 'store');
    const first = await makeStore(store);
    const backups = join(root, 'backups');
    const usage = await cli('backup', store, join(root, 'b'), '--into', backups);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('either a destination folder');
    expect((await cli('backup', store, '--into', backups)).code).toBe(0);

    const app = await openApp(store);
    app.get(CartService).set('cart-2', { items: ['fig'], total: 1 });
    await closeApp(app); // saves on shutdown
    const second = await cli('backup', store, '--into', backups);
    expect(second).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('new, the rest shared'),
    });

    const listed = await cli('backups', 'list', backups, '--json');
    expect(listed.code).toBe(0);
    const list = JSON.parse(listed.stdout) as Array<{
      id: string;
      files: number;
      bytes: number;
      newBytes: number;
      base: string | null;
    }>;
    expect(list).toHaveLength(2);
    const [newer, older] = list; // newest first
    expect(older).toMatchObject({ files: 5, base: null });
    expect(older.newBytes).toBe(older.bytes);
    expect(newer).toMatchObject({ files: 6, base: older.id });
    expect(newer.newBytes).toBeLessThan(newer.bytes / 2); // only the new cart was stored anew
    const table = await cli('backups', 'list', backups);
    expect(table.stdout).toContain('SHARES WITH');
    expect(table.stdout).toContain(older.id);
    expect((await cli('backups', 'list', join(root, 'none'))).stderr).toContain(
      'No backups folder',
    );

    // The older one restores on its own, after the newer one was removed by hand.
    await rm(join(backups, newer.id), { recursive: true });
    expect((await cli('restore', store, join(backups, older.id))).code).toBe(0);
    expect(dump(await openApp(store))).toEqual(first);
  });

  /** A compiled application module, as `nest build` leaves it, whose carts adapter is at schema 2. */
  const writeModuleV2 = async (file: string, storePath: string): Promise<void> => {
    await writeFile(
      file,
      `const { Module } = require('@nestjs/common');
const { PersistenceModule } = require(${JSON.stringify(join(work, 'dist', 'index.js'))});
const carts = new Map();
const cartsV2 = {
  name: 'carts',
  version: 2,
  migrations: { 2: (old) => ({ ...old, currency: 'EUR' }) },
  snapshot: () => new Map(carts),
  restore: (items) => { carts.clear(); for (const [id, cart] of items) carts.set(id, cart); },
};
class AppModule {}
Module({ imports: [PersistenceModule.forRoot({ path: ${JSON.stringify(storePath)}, adapters: [cartsV2] })] })(AppModule);
exports.AppModule = AppModule;
`,
    );
  };

  it('migrate boots the application module, rewrites old items in the current schema, and refuses another store', async () => {
    const store = join(root, 'store');
    await makeStore(store); // carts at schema 1
    const cartFile = async (): Promise<{ sv?: number; data: unknown }> =>
      JSON.parse(await readFile(join(store, 'carts', 'cart-1.json'), 'utf8')) as {
        sv?: number;
        data: unknown;
      };
    expect((await cartFile()).sv).toBeUndefined();
    const moduleFile = join(work, 'app.module.js');
    await writeModuleV2(moduleFile, store);

    const missing = await cli('migrate', store, '--module', moduleFile, '--export', 'Nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('exports no class "Nope" (it exports AppModule)');

    const migrated = await cli('migrate', store, '--module', moduleFile);
    expect(migrated.stderr).not.toMatch(/problem|error/);
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toMatch(/carts\s+1\s+v1 1\s+v2 1/);
    expect(await cartFile()).toMatchObject({
      sv: 2,
      data: { items: ['apple', 'pear'], total: 5, currency: 'EUR' },
    });
    const inspected = JSON.parse((await cli('inspect', store, '--json')).stdout) as {
      collections: Array<{ name: string; schemaVersions: Record<string, number> }>;
      journal: { records: number };
    };
    expect(inspected.journal.records).toBe(0); // checkpointed
    expect(inspected.collections.find((c) => c.name === 'carts')?.schemaVersions).toEqual({
      '2': 1,
    });
    expect((await cli('migrate', store, '--module', moduleFile)).stdout).toContain(
      'saved 0 changed items',
    );
    // The store named through a symbolic link is the module's store, as the application sees it.
    await symlink(store, join(root, 'link'));
    const throughLink = await cli('migrate', join(root, 'link'), '--module', moduleFile);
    expect(throughLink).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('saved 0 changed items'),
    });

    // A module whose store is another folder: refused before anything is opened.
    const other = join(root, 'other');
    await writeModuleV2(moduleFile, other);
    const before = await tree(store);
    const wrong = await cli('migrate', store, '--module', moduleFile);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`but this module's store is ${other}`);
    expect(await tree(store)).toEqual(before);
    expect(existsSync(other)).toBe(false);
  });

  it('quarantine list, restore (only when it parses and never over an item) and discard (only with --yes)', async () => {
    const store = join(root, 'store');
    await makeStore(store);
    const sess2 = join(store, 'sessions', 'sess-2.json');
    const good = await readFile(sess2);
    await writeFile(sess2, good.subarray(0, 20));
    await writeFile(join(store, 'carts', 'cart-1.json'), 'not json');
    await closeApp(await openApp(store)); // the load quarantines both

    const listed = await cli('quarantine', 'list', store, '--json');
    expect(listed.code).toBe(0);
    const files = JSON.parse(listed.stdout) as Array<{ file: string; itemFile: string }>;
    expect(files.map((f) => f.itemFile)).toEqual(['cart-1.json', 'sess-2.json']);
    const [cart, session] = files.map((f) => f.file);
    expect(session).toMatch(/^sessions\/\d{4}-.+-sess-2\.json$/);

    const broken = await cli('quarantine', 'restore', store, session);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(`${session} still does not parse`);
    expect(await readdir(join(store, 'sessions'))).toEqual(['sess-1.json']);

    await writeFile(join(store, '.quarantine', session), good); // repaired by hand
    const fixed = await cli('quarantine', 'restore', store, session.split('/')[1]);
    expect(fixed).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('as sessions/sess-2.json'),
    });
    expect(await readFile(sess2)).toEqual(good);

    const copy = 'sessions/2026-01-02T03-04-05-006Z-0a1b2c3d-sess-2.json';
    await writeFile(join(store, '.quarantine', copy), good);
    const clash = await cli('quarantine', 'restore', store, copy);
    expect(clash.code).toBe(1);
    expect(clash.stderr).toContain('already has a file (sessions/sess-2.json)');
    expect(await readFile(join(store, '.quarantine', copy))).toEqual(good);

    const unconfirmed = await cli('quarantine', 'discard', store, cart);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain('add --yes');
    expect(await readdir(join(store, '.quarantine', 'carts'))).toHaveLength(1);
    expect((await cli('quarantine', 'discard', store, cart, '--yes')).code).toBe(0);
    expect(await readdir(join(store, '.quarantine', 'carts'))).toEqual([]);

    const app = await openApp(store);
    expect(app.get(SessionManager).get('sess-2')?.status).toBe('paused');
  });

  it('while an application holds the store: reads and backs it up read-only, writes nothing, refuses writes', async () => {
    const store = join(root, 'store');
    await makeStore(store);
    const app = await openApp(store);
    const backup = join(root, 'backup');
    await app.get(PersistenceStore).backup(backup);
    app.get(SessionManager).create({ id: 'sess-new' });
    await app.get(PersistenceStore).saveAll(); // in the journal, not yet in the item files
    const doc = join(root, 'doc.json');
    await writeFile(
      doc,
      JSON.stringify({
        format: 'nestjs-persistence-export',
        version: 1,
        itemVersion: 1,
        collections: { carts: { x: { items: [], total: 0 } } },
      }),
    );
    const before = await tree(store);

    const [inspect, exported, verify, imported, restored, backedUp] = await Promise.all([
      cli('inspect', store, '--json'),
      cli('export', store),
      cli('verify', store),
      cli('import', store, doc),
      cli('restore', store, backup),
      cli('backup', store, join(root, 'backup-2')),
    ]);
    const report = JSON.parse(inspect.stdout);
    expect(report.lock).toMatchObject({ pid: process.pid, running: true, sameHost: true });
    expect(report.journal).toMatchObject({ records: 1, changes: 1 });
    expect(exported.code).toBe(0);
    expect(exported.stderr).toContain(`in use by process ${process.pid}`);
    expect(exported.stderr).toContain('read-only');
    expect(Object.keys(JSON.parse(exported.stdout).collections.sessions)).toEqual([
      'sess-1',
      'sess-2',
      'sess-new',
    ]);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toContain('1 journal record');
    // A backup beside the running app: a consistent snapshot (the journal's record included), read-only.
    expect(backedUp.stderr).toContain('read-only (no lock taken, nothing written into the store)');
    expect(backedUp.code).toBe(0);
    const copy = join(root, 'restored-copy');
    expect((await cli('restore', copy, join(root, 'backup-2'))).code).toBe(0);
    expect(
      Object.keys(JSON.parse((await cli('export', copy)).stdout).collections.sessions),
    ).toEqual(['sess-1', 'sess-2', 'sess-new']);
    for (const [refused, command] of [
      [imported, 'import'],
      [restored, 'restore'],
    ] as const) {
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        `Cannot ${command}: the store ${store} is in use by process ${process.pid}`,
      );
      expect(refused.stderr).toContain('Nothing was changed.');
    }
    expect(await tree(store)).toEqual(before);
  });
});
