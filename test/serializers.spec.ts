import { INestApplication } from '@nestjs/common';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import {
  CompactJsonSerializer,
  detectFormat,
  JsonGzipSerializer,
  JsonSerializer,
  PersistenceErrorCode,
  PersistenceStore,
  Serializer,
  SessionManager,
} from 'nestjs-persistence';
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

describe('detectFormat', () => {
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
  const open = async (options: Parameters<typeof createApp>[0] = {}): Promise<INestApplication> => {
    for (const previous of apps.splice(0)) await previous.close(); // one writer per folder
    const app = await createApp({ path: dir, saveOnShutdown: false, ...options });
    apps.push(app);
    return app;
  };

  it.each(['json', 'json-compact', 'json-gzip'] as const)(
    'round-trips the whole state in %s',
    async (format) => {
      const first = await open({ format });
      seedState(first);
      const meta = await saveToFiles(first);
      expect(meta.format).toBe(format);
      const extension = format === 'json-gzip' ? '.json.gz' : '.json';
      expect(await readdir(join(dir, 'conversations'))).toEqual([`conv-1${extension}`]);
      const raw = await readFile(join(dir, 'conversations', `conv-1${extension}`));
      expect(detectFormat(raw)).toBe(format === 'json-gzip' ? 'json-gzip' : 'json');
      const expected = dumpState(first);
      const second = await open({ format });
      expect(dumpState(second)).toEqual(expected);
    },
  );

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
