import { INestApplication } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  detectFormat,
  MemoryManager,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceModuleOptions,
  PersistenceStore,
  QUARANTINE_DIR,
  SessionManager,
} from 'nestjs-persistence';
import { ItemCipher } from '../lib/encryption/item.cipher';
import { JsonSerializer } from '../lib/serializers/json.serializer';
import { ItemFileCodec } from '../lib/serializers/item-file.codec';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { dumpState, seedState, saveToFiles } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const KEY_A = randomBytes(32);
const KEY_B_HEX = randomBytes(32).toString('hex');
const KEY_C_B64 = randomBytes(32).toString('base64');

describe('encryption at rest', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  let logger: RecordingLogger;
  let errors: PersistenceErrorEvent[];
  const open = async (options: PersistenceModuleOptions): Promise<INestApplication> => {
    for (const previous of apps.splice(0)) await previous.close(); // one writer per folder
    const app = await createApp({ path: dir, saveOnShutdown: false, ...options }, { logger });
    app.get(PersistenceStore).onError((e) => errors.push(e));
    apps.push(app);
    return app;
  };
  beforeEach(async () => {
    dir = await makeTempDir();
    logger = new RecordingLogger();
    errors = [];
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(dir);
  });

  it.each(['json', 'json-gzip'] as const)(
    'round-trips the state in %s, with no plaintext on disk',
    async (format) => {
      const first = await open({ format, encryption: { key: KEY_A } });
      seedState(first);
      await saveToFiles(first);
      const expected = dumpState(first);
      const extension = format === 'json' ? '.json.enc' : '.json.gz.enc';
      expect(await readdir(join(dir, 'conversations'))).toEqual([`conv-1${extension}`]);
      const raw = await readFile(join(dir, 'conversations', `conv-1${extension}`));
      expect(detectFormat(raw)).toBe('encrypted');
      expect(raw.includes('Hello')).toBe(false);
      expect(raw.includes('Be brief')).toBe(false);
      const second = await open({ format, encryption: { key: KEY_A } });
      expect(dumpState(second)).toEqual(expected);
    },
  );

  it('uses a fresh IV per file: the same item encrypted twice gives different bytes', async () => {
    const codec = new ItemFileCodec(
      new JsonSerializer(),
      ItemCipher.create({ key: KEY_A }, () => {
        throw new Error('bad key');
      }),
      1024,
    );
    const one = await codec.encode('sessions', 's', { same: true });
    const two = await codec.encode('sessions', 's', { same: true });
    expect(one.data.equals(two.data)).toBe(false);
    expect(one.data.subarray(6, 18).equals(two.data.subarray(6, 18))).toBe(false); // the IVs
    for (const encoded of [one, two]) {
      const { envelope } = await codec.decode(
        'sessions',
        { stem: 's', extension: '.json.enc' },
        encoded.data,
      );
      expect(envelope.data).toEqual({ same: true });
    }
  });

  it('encrypts a plain store at the next save once a key is configured', async () => {
    const plain = await open({});
    seedState(plain);
    await saveToFiles(plain);
    const expected = dumpState(plain);
    const encrypted = await open({ encryption: { key: KEY_A } });
    expect(dumpState(encrypted)).toEqual(expected);
    await saveToFiles(encrypted);
    expect((await readdir(join(dir, 'sessions'))).sort()).toEqual([
      'sess-1.json.enc',
      'sess-2.json.enc',
    ]);
  });

  it('with onUnreadable: start, a wrong key gives a clear error, quarantines nothing, and no save removes the file', async () => {
    const first = await open({ encryption: { key: KEY_A } });
    first.get(SessionManager).create({ id: 'secret' });
    await saveToFiles(first);
    const bytes = await readFile(join(dir, 'sessions', 'secret.json.enc'));

    const wrong = await open({ encryption: { key: KEY_B_HEX }, onUnreadable: 'start' });
    expect(wrong.get(SessionManager).list()).toEqual([]);
    await wrong.get(PersistenceStore).loadAll();
    expect(errors.at(-1)).toMatchObject({
      adapter: 'sessions',
      itemId: 'secret',
      operation: 'load',
    });
    expect(errors.at(-1)?.error.code).toBe(PersistenceErrorCode.DecryptionFailed);
    expect(errors.at(-1)?.error.message).toMatch(
      /does not authenticate with key "default".*left in place/,
    );
    wrong.get(SessionManager).create({ id: 'other' });
    await saveToFiles(wrong);
    expect(await readFile(join(dir, 'sessions', 'secret.json.enc'))).toEqual(bytes);
    await expect(readdir(join(dir, QUARANTINE_DIR))).rejects.toThrow(/ENOENT/);

    // "other" was written with the wrong key: the right one cannot read it.
    const right = await open({ encryption: { key: KEY_A }, onUnreadable: 'start' });
    expect(right.get(SessionManager).get('secret')).toBeDefined();
  });

  /** Every file under the store folder (relative path → bytes), dot-files and folders included. */
  const snapshotFolder = async (): Promise<Map<string, string>> => {
    const files = new Map<string, string>();
    const walk = async (sub: string): Promise<void> => {
      for (const entry of await readdir(join(dir, sub), { withFileTypes: true })) {
        const path = join(sub, entry.name);
        if (entry.isDirectory()) {
          files.set(`${path}/`, '');
          await walk(path);
        } else {
          files.set(path, (await readFile(join(dir, path))).toString('base64'));
        }
      }
    };
    await walk('');
    return files;
  };

  it('a wrong key fails app.init() with one summary line (not one per file) and changes nothing: no quarantine, the lock released', async () => {
    const first = await open({ encryption: { key: KEY_A } });
    for (let i = 0; i < 50; i++) first.get(MemoryManager).create({ id: `c-${i}` });
    await saveToFiles(first);
    await first.close();
    apps.splice(0);
    // A corrupt file too: it would be moved to .quarantine by a start that goes ahead.
    await writeFile(join(dir, 'sessions', 'broken.json.enc'), 'not an item file');
    const before = await snapshotFolder();

    const refused = await createApp({ path: dir, encryption: { key: KEY_B_HEX } }, { logger }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toMatchObject({
      code: PersistenceErrorCode.UnreadableItems,
      message: expect.stringMatching(
        /50 stored item\(s\) could not be used\. 50 item\(s\) could not be decrypted with the configured keys, a wrong or missing key \(conversations: 50; e\.g\. "c-\d+", "c-\d+", "c-\d+", …\): add the key they were written with to encryption\.keys/,
      ),
    });
    expect(logger.lines.filter((line) => /^(error|warn)/.test(line))).toEqual([
      `error ${(refused as Error).message}`,
    ]);
    expect(await snapshotFolder()).toEqual(before); // no .quarantine, no .lock, not a byte changed

    const right = await open({ encryption: { key: KEY_A } });
    expect(right.get(MemoryManager).list()).toHaveLength(50);
    expect((await readdir(join(dir, QUARANTINE_DIR, 'sessions')))[0]).toContain('broken.json.enc');
  });

  it("with onUnreadable: 'start', one line per kind of problem; health stays down after a save until discardUnloaded()", async () => {
    const first = await open({ encryption: { key: KEY_A } });
    for (let i = 0; i < 5; i++) first.get(SessionManager).create({ id: `s-${i}` });
    await saveToFiles(first);
    await writeFile(join(dir, 'sessions', 'broken.json.enc'), 'not an item file');
    logger.lines.length = 0;

    const app = await open({ encryption: { key: KEY_B_HEX }, onUnreadable: 'start' });
    const store = app.get(PersistenceStore);
    const lines = logger.lines.filter((line) => /^(error|warn)/.test(line));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^error .*5 item\(s\) could not be decrypted .*\(sessions: 5; e\.g\./);
    expect(lines[1]).toMatch(
      /^warn .*1 item\(s\) are not valid items \(corrupt\) and were moved to \.quarantine/,
    );
    logger.lines.length = 0;
    await store.loadAll(); // a later load: the same, one line per kind, and one event per item
    expect(
      errors.filter((e) => e.error.code === PersistenceErrorCode.DecryptionFailed),
    ).toHaveLength(5);
    expect(logger.lines.filter((line) => /^(error|warn)/.test(line))).toEqual([
      expect.stringMatching(/^error .*5 item\(s\) could not be decrypted/),
    ]);
    expect(store.listUnloaded().map((u) => u.kind)).toEqual(Array(5).fill('wrong-key'));

    await saveToFiles(app);
    expect((await store.getStatus()).unresolved).toEqual({ items: 5, kinds: { 'wrong-key': 5 } });
    for (const { adapter, id } of store.listUnloaded()) await store.discardUnloaded(adapter, id);
    expect((await store.getStatus()).unresolved).toEqual({ items: 0, kinds: {} });
  });

  it('a read-only store counts saves still in the journal that its key cannot read as unloaded (wrong key), not as corrupt', async () => {
    const writer = await open({ encryption: { key: KEY_A } });
    writer.get(SessionManager).create({ id: 'in-journal' }); // committed, not checkpointed
    await writer.get(PersistenceStore).saveAll();
    const reader = { path: dir, readOnly: true, encryption: { key: KEY_B_HEX } };
    await expect(createApp(reader, { logger })).rejects.toMatchObject({
      code: PersistenceErrorCode.UnreadableItems,
      message: expect.stringContaining('1 item(s) could not be decrypted'),
    });
    const started = await createApp({ ...reader, onUnreadable: 'start' }, { logger });
    try {
      expect(started.get(PersistenceStore).listUnloaded()).toMatchObject([
        { adapter: 'sessions', id: 'in-journal', kind: 'wrong-key' },
      ]);
    } finally {
      await started.close();
    }
  });

  it('the logger option receives every line of the library; logger: false silences them (events still arrive)', async () => {
    const first = await open({ encryption: { key: KEY_A } });
    first.get(SessionManager).create({ id: 's' });
    await saveToFiles(first);
    const own = new RecordingLogger();
    await open({ encryption: { key: KEY_B_HEX }, onUnreadable: 'start', logger: own });
    expect(own.lines).toEqual([expect.stringMatching(/^error .*could not be decrypted/)]);
    logger.lines.length = 0;
    errors = [];
    await open({ encryption: { key: KEY_B_HEX }, onUnreadable: 'start', logger: false });
    expect(logger.lines.filter((line) => line.includes(dir))).toEqual([]);
    expect(errors.map((e) => e.error.code)).toEqual([]); // onError() was attached after the boot
    const silent = apps[0].get(PersistenceStore);
    expect(silent.getLastError()?.code).toBe(PersistenceErrorCode.DecryptionFailed);
  });

  it('a tampered byte is detected and the file kept', async () => {
    const app = await open({ encryption: { key: KEY_A } });
    app.get(SessionManager).create({ id: 's' });
    await saveToFiles(app);
    const path = join(dir, 'sessions', 's.json.enc');
    const bytes = await readFile(path);
    bytes[bytes.length - 20] ^= 0x01;
    await writeFile(path, bytes);
    await app.get(PersistenceStore).loadAll();
    expect(errors.at(-1)?.error.code).toBe(PersistenceErrorCode.DecryptionFailed);
    expect(app.get(SessionManager).list()).toEqual([]);
    expect(await readFile(path)).toEqual(bytes);
  });

  it('a file swapped between items or adapters does not decrypt', async () => {
    const app = await open({ encryption: { key: KEY_A } });
    app.get(SessionManager).create({ id: 'alice', metadata: { role: 'user' } });
    app.get(SessionManager).create({ id: 'mallory', metadata: { role: 'user' } });
    app.get(MemoryManager).create({ id: 'mallory' });
    await saveToFiles(app);
    // An attacker with write access replaces mallory's files with alice's.
    await copyFile(
      join(dir, 'sessions', 'alice.json.enc'),
      join(dir, 'sessions', 'mallory.json.enc'),
    );
    await copyFile(
      join(dir, 'sessions', 'alice.json.enc'),
      join(dir, 'conversations', 'mallory.json.enc'),
    );
    await app.get(PersistenceStore).loadAll();
    expect(
      app
        .get(SessionManager)
        .list()
        .map((s) => s.id),
    ).toEqual(['alice']);
    expect(app.get(MemoryManager).list()).toEqual([]);
    expect(
      errors
        .filter((e) => e.error.code === PersistenceErrorCode.DecryptionFailed)
        .map((e) => `${e.adapter}/${e.itemId}`)
        .sort(),
    ).toEqual(['conversations/mallory', 'sessions/mallory']);
  });

  it('rotates keys: old files are read with the ring and re-encrypted with the current key', async () => {
    const first = await open({ encryption: { keys: { k1: KEY_A }, current: 'k1' } });
    seedState(first);
    await saveToFiles(first);
    const expected = dumpState(first);
    const keyIdOf = async (file: string): Promise<string> => {
      const bytes = await readFile(join(dir, file));
      return bytes.subarray(5, 5 + bytes[4]).toString();
    };
    expect(await keyIdOf('sessions/sess-1.json.enc')).toBe('k1');

    const rotated = await open({
      encryption: { keys: { k1: KEY_A, k2: KEY_C_B64 }, current: 'k2' },
    });
    expect(dumpState(rotated)).toEqual(expected);
    await saveToFiles(rotated);
    expect(await keyIdOf('sessions/sess-1.json.enc')).toBe('k2');
    expect(await keyIdOf('focus/chain-1.json.enc')).toBe('k2');

    const newOnly = await open({ encryption: { keys: { k2: KEY_C_B64 }, current: 'k2' } });
    expect(dumpState(newOnly)).toEqual(expected);
  });

  it('a file encrypted with a key missing from the ring names the key id', async () => {
    const first = await open({ encryption: { keys: { old: KEY_A }, current: 'old' } });
    first.get(SessionManager).create({ id: 's' });
    await saveToFiles(first);
    const next = await open({
      encryption: { keys: { new: KEY_C_B64 }, current: 'new' },
      onUnreadable: 'start',
    });
    await next.get(PersistenceStore).loadAll();
    expect(errors.at(-1)?.error.message).toContain(
      'encrypted with key "old", which is not in encryption.keys',
    );
  });

  it('an encrypted store opened without a key reports it and keeps the files', async () => {
    const first = await open({ encryption: { key: KEY_A } });
    first.get(SessionManager).create({ id: 's' });
    await saveToFiles(first);
    const plain = await open({ onUnreadable: 'start' });
    await plain.get(PersistenceStore).loadAll();
    await saveToFiles(plain);
    expect(errors.at(-1)?.error.message).toContain('no encryption option is set');
    expect(await readdir(join(dir, 'sessions'))).toEqual(['s.json.enc']);
  });

  it.each([
    [{ key: Buffer.alloc(16) }, 'encryption.key', /32 bytes \(got 16\)/],
    [{ key: 'too-short' }, 'encryption.key', /64 hex digits or the base64 of 32 bytes/],
    [
      { key: KEY_A, keys: { a: KEY_A }, current: 'a' },
      'encryption',
      /either \{ key \} or \{ keys, current \}/,
    ],
    [
      { keys: { a: KEY_A }, current: 'b' },
      'encryption.current',
      /Name the id of one of encryption.keys/,
    ],
    [{ keys: { 'bad id!': KEY_A }, current: 'bad id!' }, 'encryption.keys', /Key id/],
  ])(
    'rejects bad encryption options without printing a key (%#)',
    async (encryption, option, fix) => {
      const error = (await createApp({ path: dir, encryption: encryption }).catch(
        (e: unknown) => e,
      )) as Error;
      expect(error).toMatchObject({ code: PersistenceErrorCode.InvalidOptions });
      expect(error.message).toContain(`option "${option}" is invalid (got "<hidden>")`);
      expect(error.message).toMatch(fix);
      expect(error.message).not.toContain(KEY_A.toString('hex'));
      expect(error.message).not.toContain(KEY_A.toString('base64'));
    },
  );

  it('never puts a key in a log line or an event', async () => {
    const app = await open({ encryption: { keys: { a: KEY_B_HEX, b: KEY_C_B64 }, current: 'a' } });
    seedState(app);
    await saveToFiles(app);
    await writeFile(
      join(dir, 'sessions', 'bad.json.enc'),
      Buffer.from('NPE\u0001\u0001xgarbage-garbage-garbage-garbage'),
    );
    await app.get(PersistenceStore).loadAll();
    await app
      .get(PersistenceStore)
      .backup(join(dir, '..', `${dir.split('/').pop()}-bk`))
      .finally(() => removeDir(join(dir, '..', `${dir.split('/').pop()}-bk`)));
    const everything = JSON.stringify([
      logger.lines,
      errors.map((e) => [e.error.message, e.error.stack, e.path]),
    ]);
    expect(errors.length).toBeGreaterThan(0);
    for (const secret of [KEY_B_HEX, KEY_C_B64, Buffer.from(KEY_B_HEX, 'hex').toString('base64')]) {
      expect(everything).not.toContain(secret);
    }
  });
});
