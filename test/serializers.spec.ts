import { INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzip } from 'node:zlib';
import { isDeepStrictEqual, promisify } from 'node:util';
import {
  AutoSerializer,
  CompactJsonSerializer,
  detectFormat,
  JsonGzipSerializer,
  JsonSerializer,
  MemoryManager,
  MsgpackSerializer,
  PersistenceErrorCode,
  PersistenceStore,
  Serializer,
  SessionManager,
} from 'nestjs-persistence';
import { ItemCipher } from '../lib/encryption/item.cipher';
import { createApp } from './fixtures/app.factory';
import { dumpState, seedState, saveToFiles } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const value = { id: 'x', text: 'héllo "world"', n: [1, 2, 3], nested: { ok: true } };

describe('serializers', () => {
  it('json writes indented JSON and reads it back', async () => {
    const bytes = new JsonSerializer().serialize(value);
    expect(bytes.toString()).toContain('\n  "id": "x"');
    expect(new JsonSerializer().deserialize(bytes)).toEqual(value);
  });

  it('json-compact writes JSON without white space', async () => {
    const bytes = new CompactJsonSerializer().serialize(value);
    expect(bytes.toString()).toBe(JSON.stringify(value));
    expect(new CompactJsonSerializer().deserialize(bytes)).toEqual(value);
    expect(new CompactJsonSerializer().format).toBe('json-compact');
  });

  it('json-gzip writes real gzip that inflates to the JSON, and is smaller on repetitive data', async () => {
    const big = {
      messages: Array.from({ length: 200 }, (_, i) => ({ i, text: 'the same words again' })),
    };
    const serializer = new JsonGzipSerializer();
    const bytes = await serializer.serialize(big);
    expect(bytes[0]).toBe(0x1f);
    expect(bytes[1]).toBe(0x8b);
    expect(JSON.parse((await promisify(gunzip)(bytes)).toString())).toEqual(big);
    expect(await serializer.deserialize(bytes)).toEqual(big);
    expect(bytes.length).toBeLessThan(JSON.stringify(big).length / 5);
  });

  it('rejects bytes it cannot read', async () => {
    expect(() => new JsonSerializer().deserialize(Buffer.from('{oops'))).toThrow(SyntaxError);
    await expect(
      new JsonGzipSerializer().deserialize(Buffer.from([0x1f, 0x8b, 0, 1])),
    ).rejects.toMatchObject({ code: 'Z_DATA_ERROR' });
  });
});

/** What JSON gives back for `value`: what every format must give back. */
const viaJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown;

/** A string of any UTF-16 code units, lone surrogates included. */
const anyString = fc
  .array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 12 })
  .map((units) => String.fromCharCode(...units));

describe('msgpack', () => {
  const msgpack = new MsgpackSerializer();
  const roundTrip = (v: unknown): unknown => msgpack.deserialize(msgpack.serialize(v));

  it('writes the msgpack header, then MessagePack any reader can read', () => {
    const bytes = msgpack.serialize(value);
    expect([...bytes.subarray(0, 5)]).toEqual([0x89, 0x4e, 0x50, 0x4d, 0x01]);
    expect(new Packr({ useRecords: false }).unpack(bytes.subarray(5))).toEqual(value);
    expect(roundTrip(value)).toEqual(value);
    expect(msgpack.format).toBe('msgpack');
    expect(msgpack.extension).toBe('.msgpack');
    // A value MessagePack cannot carry exactly (a lone surrogate) is written as JSON text, byte 4 = 2.
    const lone = msgpack.serialize({ s: '\ud800' });
    expect(lone[4]).toBe(0x02);
    expect(lone.subarray(5).toString()).toBe('{"s":"\\ud800"}');
    expect(detectFormat(lone)).toBe('msgpack');
  });

  it('gives back exactly what JSON gives back', () => {
    const big = 2 ** 53 + 2;
    const cases: unknown[] = [
      { zero: -0, list: [-0, 0] }, // refused by the managers; JSON writes 0, and so must msgpack
      {
        n: [big, -(2 ** 60), Number.MAX_SAFE_INTEGER, 2 ** 32, -(2 ** 31) - 1, 1e300, 5e-324, 0.1],
      },
      { lone: 'a\ud800b', low: '\udfff', pair: '😀', key: { '\ud83d': 1 } },
      { long: `${'x'.repeat(5000)}\ud800${'y'.repeat(70_000)}` },
      { nested: { a: [{ b: [[{ c: null }]] }, true, false, ''] }, empty: {}, list: [] },
      { date: new Date(Date.UTC(2026, 10, 26)), dates: [new Date(0)] }, // where revive exists
      { undef: undefined, fn: () => 1, list: [undefined, () => 1, Symbol('s')] },
      { nan: NaN, inf: -Infinity },
      JSON.parse('{"__proto__": {"x": 1}, "y": 2}'),
      Object.assign(Object.create(null) as object, { a: 1 }),
      { deep: JSON.parse('['.repeat(600) + ']'.repeat(600)) as unknown },
      'just a string',
      [1, 'two', null],
      12.5,
      null,
    ];
    for (const v of cases) {
      const back = roundTrip(v);
      expect(isDeepStrictEqual(back, viaJson(v))).toBe(true);
    }
    expect(Object.is((roundTrip({ z: -0 }) as { z: number }).z, 0)).toBe(true);
    expect(Object.getPrototypeOf(roundTrip(JSON.parse('{"__proto__": 1}')))).toBe(Object.prototype);
    expect(Object.keys(roundTrip(JSON.parse('{"__proto__": 1}')) as object)).toEqual(['__proto__']);
  });

  it('refuses what JSON refuses', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => msgpack.serialize(cyclic)).toThrow(TypeError);
    expect(() => msgpack.serialize({ n: 1n })).toThrow(TypeError);
    expect(() => msgpack.serialize(undefined)).toThrow(TypeError);
  });

  it('round-trips any JSON data exactly (property)', () => {
    const data = fc.anything({
      key: anyString,
      values: [
        anyString,
        fc.double(),
        fc.integer(),
        fc.maxSafeInteger(),
        fc.boolean(),
        fc.constant(null),
        fc.date({ noInvalidDate: true }),
      ],
      withNullPrototype: true,
      maxDepth: 4,
    });
    fc.assert(
      fc.property(data, (v) => isDeepStrictEqual(roundTrip(v), viaJson(v))),
      { numRuns: 300 },
    );
  });

  it('rejects bytes that are not JSON data in MessagePack', () => {
    const packr = new Packr({ useRecords: false });
    const withHeader = (body: Buffer): Buffer =>
      Buffer.concat([msgpack.serialize(0).subarray(0, 5), body]);
    const good = msgpack.serialize({ id: 'x' });
    const bad = [
      Buffer.from(JSON.stringify({ id: 'x' })), // no header
      good.subarray(0, good.length - 1), // truncated
      Buffer.concat([good, Buffer.from([0])]), // trailing bytes
      withHeader(Buffer.from([0xc4, 1, 5])), // binary
      withHeader(packr.pack({ d: new Date(0) })), // timestamp extension
      withHeader(Buffer.from([0x81, 0xa1, 0x61, 0xd4, 0, 0])), // undefined
      withHeader(Buffer.from([0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0])), // NaN
      withHeader(Buffer.from([0xd4, 0x33, 0])), // unknown extension
      Buffer.from([0x89, 0x4e, 0x50, 0x4d, 0x02, 0x7b]), // a JSON body that is not JSON
    ];
    for (const bytes of bad) expect(() => msgpack.deserialize(bytes)).toThrow();
  });

  it('without msgpackr installed: a typed error naming the install command, and no load when unused', () => {
    jest.isolateModules(() => {
      let required = false;
      jest.doMock('msgpackr/index-no-eval', () => {
        required = true;
        throw new Error("Cannot find module 'msgpackr/index-no-eval'");
      });
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const isolated = require('../lib') as typeof import('../lib');
      expect(new isolated.JsonSerializer().format).toBe('json');
      expect(required).toBe(false); // loading the library and using json never loads msgpackr
      let caught: unknown;
      try {
        new isolated.MsgpackSerializer();
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(isolated.PersistenceError);
      expect(caught).toMatchObject({
        code: PersistenceErrorCode.OptionalDependencyMissing,
        message: expect.stringContaining('npm install msgpackr'),
      });
      jest.dontMock('msgpackr/index-no-eval');
    });
  });
});

describe('auto', () => {
  it('writes small items as compact JSON and larger ones as gzip, at the threshold', async () => {
    const auto = new AutoSerializer(64);
    const small = { a: 'x'.repeat(10) };
    const large = { a: 'x'.repeat(200) };
    expect((await auto.serialize(small)).toString()).toBe(JSON.stringify(small));
    const packed = await auto.serialize(large);
    expect(detectFormat(packed)).toBe('json-gzip');
    expect(await auto.deserialize(packed)).toEqual(large);
    expect(await auto.deserialize(await auto.serialize(small))).toEqual(small);
    const exact = { a: 'x'.repeat(64 - 8) }; // 64 bytes of JSON: not above the threshold
    expect(JSON.stringify(exact)).toHaveLength(64);
    expect(detectFormat(await auto.serialize(exact))).toBe('json');
    expect(new AutoSerializer().compressAbove).toBe(4096);
    expect(detectFormat(await new AutoSerializer(0).serialize({}))).toBe('json-gzip');
  });
});

describe('detectFormat', () => {
  it('tells msgpack apart from JSON, gzip and encrypted files, also encrypted', async () => {
    const bytes = new MsgpackSerializer().serialize(value);
    expect(detectFormat(bytes)).toBe('msgpack');
    expect(detectFormat(Buffer.from([0x89, 0x4e, 0x50, 0x4d]))).toBe('binary'); // header cut short
    const cipher = ItemCipher.create({ key: randomBytes(32).toString('base64') }, () => {
      throw new Error('bad key');
    });
    expect(detectFormat(cipher.encrypt(bytes, 'sessions', 'x'))).toBe('encrypted');
    for (const other of [
      new JsonSerializer().serialize(value),
      await new JsonGzipSerializer().serialize(value),
      Buffer.from('"\u0089NPM"'),
    ]) {
      expect(detectFormat(other)).not.toBe('msgpack');
    }
  });

  it('tells gzip, JSON (indented or compact) and anything else', async () => {
    expect(detectFormat(await new JsonGzipSerializer().serialize(value))).toBe('json-gzip');
    expect(detectFormat(new JsonSerializer().serialize(value))).toBe('json');
    expect(detectFormat(new CompactJsonSerializer().serialize(value))).toBe('json');
    expect(detectFormat(Buffer.from('  [1, 2]\n'))).toBe('json');
    expect(detectFormat(Buffer.from('{"truncated": '))).toBe('binary');
    expect(detectFormat(Buffer.from([0x00, 0xff, 0x10]))).toBe('binary');
    expect(detectFormat(Buffer.alloc(0))).toBe('binary');
    expect(detectFormat(new Uint8Array([0x1f, 0x8b, 8]))).toBe('json-gzip');
  });
});

describe('formats in the store', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(dir);
  });
  const removeAll = async (): Promise<void> => {
    for (const previous of apps.splice(0)) await previous.close();
  };
  const open = async (options: Parameters<typeof createApp>[0] = {}): Promise<INestApplication> => {
    for (const previous of apps.splice(0)) await previous.close(); // one writer per folder
    const app = await createApp({ path: dir, saveOnShutdown: false, ...options });
    apps.push(app);
    return app;
  };

  const EXTENSIONS = {
    json: '.json',
    'json-compact': '.json',
    'json-gzip': '.json.gz',
    msgpack: '.msgpack',
    auto: '.jsonz',
  } as const;
  const DETECTED = {
    json: 'json',
    'json-compact': 'json',
    'json-gzip': 'json-gzip',
    msgpack: 'msgpack',
    auto: 'json', // the seeded conversation is under compressAbove
  } as const;

  it.each(['json', 'json-compact', 'json-gzip', 'msgpack', 'auto'] as const)(
    'round-trips the whole state in %s through a restart',
    async (format) => {
      const first = await open({ format });
      seedState(first);
      const meta = await saveToFiles(first);
      expect(meta.format).toBe(format);
      const extension = EXTENSIONS[format];
      expect(await readdir(join(dir, 'conversations'))).toEqual([`conv-1${extension}`]);
      const raw = await readFile(join(dir, 'conversations', `conv-1${extension}`));
      expect(detectFormat(raw)).toBe(DETECTED[format]);
      const expected = dumpState(first);
      const second = await open({ format });
      expect(dumpState(second)).toEqual(expected);
      // Nothing changed: the next save writes nothing (the loaded bytes are the current format's).
      const again = await second.get(PersistenceStore).saveAll();
      expect(again).toMatchObject({ changed: 0 });
    },
  );

  it.each(['msgpack', 'auto'] as const)(
    'round-trips the state in %s encrypted, with no plaintext on disk',
    async (format) => {
      const encryption = { key: randomBytes(32).toString('base64') };
      const first = await open({ format, encryption, compressAbove: 100 });
      seedState(first);
      await saveToFiles(first);
      const expected = dumpState(first);
      const name = `conv-1${EXTENSIONS[format]}.enc`;
      expect(await readdir(join(dir, 'conversations'))).toEqual([name]);
      const raw = await readFile(join(dir, 'conversations', name));
      expect(detectFormat(raw)).toBe('encrypted');
      expect(raw.includes('Hello')).toBe(false);
      const second = await open({ format, encryption, compressAbove: 100 });
      expect(dumpState(second)).toEqual(expected);
    },
  );

  it('auto compresses the items above compressAbove only', async () => {
    const first = await open({ format: 'auto', compressAbove: 1500 });
    seedState(first);
    first.get(MemoryManager).create({ id: 'long' });
    first.get(MemoryManager).addMessage('long', { role: 'user', content: 'words '.repeat(400) });
    await saveToFiles(first);
    const conversations = join(dir, 'conversations');
    expect(detectFormat(await readFile(join(conversations, 'long.jsonz')))).toBe('json-gzip');
    expect(detectFormat(await readFile(join(conversations, 'conv-1.jsonz')))).toBe('json');
    expect(detectFormat(await readFile(join(dir, 'sessions', 'sess-1.jsonz')))).toBe('json');
    const expected = dumpState(first);
    const second = await open({ format: 'auto', compressAbove: 1500 });
    expect(dumpState(second)).toEqual(expected);
    await expect(open({ format: 'auto', compressAbove: -1 })).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidOptions,
    });
  });

  it('auto refuses an item that would inflate past maxInflatedBytes, as json-gzip does', async () => {
    const app = await open({
      format: 'auto',
      compressAbove: 100,
      limits: { maxInflatedBytes: 4096 },
    });
    app.get(MemoryManager).create({ id: 'big' });
    app.get(MemoryManager).addMessage('big', { role: 'user', content: 'a'.repeat(8000) });
    const errors: unknown[] = [];
    app.get(PersistenceStore).onError((event) => errors.push(event.error.code));
    await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.SaveIncomplete,
    });
    expect(errors).toEqual([PersistenceErrorCode.ItemTooLarge]);
  });

  it('switches json → msgpack → auto → json-gzip → json: each loads the last and rewrites every file', async () => {
    const first = await open({ format: 'json' });
    seedState(first);
    await saveToFiles(first);
    const expected = dumpState(first);
    for (const format of ['msgpack', 'auto', 'json-gzip', 'json'] as const) {
      const app = await open({ format });
      expect(dumpState(app)).toEqual(expected);
      await saveToFiles(app);
      expect((await readdir(join(dir, 'sessions'))).sort()).toEqual([
        `sess-1${EXTENSIONS[format]}`,
        `sess-2${EXTENSIONS[format]}`,
      ]);
    }
    const last = await open({ format: 'msgpack' });
    expect(dumpState(last)).toEqual(expected);
  });

  it('reads each file by its bytes, and quarantines a crafted msgpack file', async () => {
    const first = await open({ format: 'json' });
    seedState(first);
    await saveToFiles(first);
    await removeAll();
    const sessions = join(dir, 'sessions');
    // A msgpack body under a .json name still loads (the bytes decide), and is written as JSON once
    // it changes.
    const envelope = JSON.parse(await readFile(join(sessions, 'sess-1.json'), 'utf8')) as unknown;
    await writeFile(join(sessions, 'sess-1.json'), new MsgpackSerializer().serialize(envelope));
    // A msgpack header over MessagePack that is not JSON data (a timestamp extension).
    const crafted = Buffer.concat([
      Buffer.from([0x89, 0x4e, 0x50, 0x4d, 0x01]),
      new Packr({ useRecords: false }).pack({ id: 'evil', v: 1, data: { at: new Date(0) } }),
    ]);
    await writeFile(join(sessions, 'evil.msgpack'), crafted);
    const app = await open({ format: 'json' });
    expect(app.get(SessionManager).get('sess-1')?.metadata).toEqual({
      user: 'ann',
      tags: ['a', 'b'],
    });
    expect(app.get(SessionManager).get('evil')).toBeUndefined();
    expect(app.get(PersistenceStore).getLastError()?.code).toBe(PersistenceErrorCode.CorruptFile);
    expect((await readdir(join(dir, '.quarantine', 'sessions')))[0]).toMatch(/-evil\.msgpack$/);
    app.get(SessionManager).update('sess-1', { status: 'paused' });
    await saveToFiles(app);
    expect(detectFormat(await readFile(join(sessions, 'sess-1.json')))).toBe('json');
  });

  it('a msgpack file in a store without msgpackr: reported with the install command, left in place', async () => {
    const first = await open({ format: 'msgpack' });
    seedState(first);
    await saveToFiles(first);
    await removeAll();
    await jest.isolateModulesAsync(async () => {
      jest.doMock('msgpackr/index-no-eval', () => {
        throw new Error("Cannot find module 'msgpackr/index-no-eval'");
      });
      /* eslint-disable @typescript-eslint/no-require-imports */
      const fixture = require('./fixtures/app.factory') as typeof import('./fixtures/app.factory');
      const lib = require('../lib') as typeof import('../lib');
      /* eslint-enable @typescript-eslint/no-require-imports */
      const app = await fixture.createApp({
        path: dir,
        saveOnShutdown: false,
        format: 'json',
        onUnreadable: 'start',
      });
      try {
        const store = app.get(lib.PersistenceStore);
        const last = store.getLastError();
        expect(last?.code).toBe(PersistenceErrorCode.OptionalDependencyMissing);
        expect(last?.message).toContain('npm install msgpackr');
        expect(app.get(lib.SessionManager).list()).toEqual([]);
        app.get(lib.SessionManager).create({ id: 'new' });
        await store.saveAll().catch(() => undefined);
        await store.checkpoint();
      } finally {
        await app.close();
        jest.dontMock('msgpackr/index-no-eval');
      }
    });
    expect((await readdir(join(dir, 'sessions'))).sort()).toEqual([
      'new.json',
      'sess-1.msgpack',
      'sess-2.msgpack',
    ]);
    expect(await readdir(dir)).not.toContain('.quarantine');
    const again = await open({ format: 'msgpack' });
    expect(again.get(SessionManager).get('sess-1')).toBeDefined();
  });

  it('loads files of the old format after a switch and rewrites them in the new one', async () => {
    const first = await open({ format: 'json' });
    seedState(first);
    await saveToFiles(first);
    const expected = dumpState(first);

    const second = await open({ format: 'json-gzip' });
    expect(dumpState(second)).toEqual(expected);
    await saveToFiles(second);
    expect((await readdir(join(dir, 'sessions'))).sort()).toEqual([
      'sess-1.json.gz',
      'sess-2.json.gz',
    ]);

    const third = await open({ format: 'json-compact' });
    expect(dumpState(third)).toEqual(expected);
  });

  it('where one item has files in two formats (a crash between writing one and removing the other), the current format wins', async () => {
    const first = await open({ format: 'json' });
    first.get(SessionManager).create({ id: 'both', status: 'in-json' });
    await saveToFiles(first);
    const jsonFile = await readFile(join(dir, 'sessions', 'both.json'));
    const second = await open({ format: 'json-gzip' });
    second.get(SessionManager).update('both', { status: 'in-json-gzip' });
    await saveToFiles(second); // writes both.json.gz, removes both.json
    await writeFile(join(dir, 'sessions', 'both.json'), jsonFile); // as a crash would leave it
    // Many other files around it, so the order of reading is not an accident of the listing.
    for (let i = 0; i < 300; i++) {
      second.get(SessionManager).create({ id: `other-${i}` });
    }
    await saveToFiles(second);
    await writeFile(join(dir, 'sessions', 'both.json'), jsonFile);
    expect((await open({ format: 'json-gzip' })).get(SessionManager).get('both')?.status).toBe(
      'in-json-gzip',
    );
    expect((await open({ format: 'json' })).get(SessionManager).get('both')?.status).toBe(
      'in-json',
    );
  });

  it('setSerializer() switches the format of the next save, and rejects unknown formats', async () => {
    const app = await open();
    seedState(app);
    const store = app.get(PersistenceStore);
    await store.saveAll();
    store.setSerializer('json-gzip');
    const meta = await store.saveAll();
    await store.checkpoint();
    expect(meta.format).toBe('json-gzip');
    expect(await readdir(join(dir, 'focus'))).toEqual(['chain-1.json.gz']);
    expect(() => store.setSerializer('xml' as never)).toThrow(
      expect.objectContaining({ code: PersistenceErrorCode.InvalidOptions }),
    );
    expect(store.getSerializer().format).toBe('json-gzip');
  });

  it('uses a custom serializer with its own extension, and still reads the built-in formats', async () => {
    // A reversible toy format: base64 of the JSON.
    const base64: Serializer = {
      format: 'base64-json',
      extension: '.b64',
      serialize: (v) => Buffer.from(Buffer.from(JSON.stringify(v)).toString('base64')),
      deserialize: (data): unknown => JSON.parse(Buffer.from(data.toString(), 'base64').toString()),
    };
    const first = await open({ format: 'json' });
    first.get(SessionManager).create({ id: 'old' });
    await saveToFiles(first);

    const second = await open({ format: base64 });
    expect(second.get(SessionManager).get('old')).toBeDefined();
    second.get(SessionManager).create({ id: 'new' });
    const meta = await saveToFiles(second);
    expect(meta.format).toBe('base64-json');
    expect((await readdir(join(dir, 'sessions'))).sort()).toEqual(['new.b64', 'old.b64']);
    expect(detectFormat(await readFile(join(dir, 'sessions', 'new.b64')))).toBe('binary');

    const third = await open({ format: base64 });
    expect(
      third
        .get(SessionManager)
        .list()
        .map((s) => s.id)
        .sort(),
    ).toEqual(['new', 'old']);
  });
});
