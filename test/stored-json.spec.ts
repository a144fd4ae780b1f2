import { INestApplication } from '@nestjs/common';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { MemoryManager, PersistenceStore } from 'nestjs-persistence';
import { RecordJsonWriter } from '../lib/adapters/list-json.cache';
import { CONVERSATION_SCHEMA } from '../lib/adapters/memory/conversation.schema';
import { Conversation } from '../lib/adapters/memory/conversation.model';
import { MemoryAdapter } from '../lib/adapters/memory/memory.adapter';
import { storedFormsOf } from '../lib/adapters/model.schema';
import { ItemFileCodec } from '../lib/serializers/item-file.codec';
import { jsonAt, joinPieces, JsonPiece, objectPieces } from '../lib/serializers/json-text.util';
import { createSerializer } from '../lib/serializers/serializer.factory';
import { BuiltInFormat } from '../lib/interfaces/serializer.interface';
import { createApp } from './fixtures/app.factory';
import { prng } from './fixtures/prng';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/** A random JSON value (with the odd values JSON.stringify drops or rewrites). */
function randomValue(random: () => number, depth = 0): unknown {
  const pick = Math.floor(random() * (depth > 3 ? 6 : 9));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return random() < 0.5;
    case 2:
      return [0, -0, 1.5, -2e21, 1e-7][Math.floor(random() * 5)];
    case 3:
      return ['', 'plain', 'ünï "q" \\ \n\t \u2028', '\u{1F600}', '\uD800 lone'][
        Math.floor(random() * 5)
      ];
    case 4:
      return undefined;
    case 5: {
      const result = random() < 0.5 ? undefined : 'from toJSON';
      return { toJSON: () => result };
    }
    case 6:
      return Array.from({ length: Math.floor(random() * 4) }, () => randomValue(random, depth + 1));
    default: {
      const out: Record<string, unknown> = {};
      const keys = Math.floor(random() * 4);
      for (let k = 0; k < keys; k++)
        out[`k${k}${k % 2 ? 'é' : ''}`] = randomValue(random, depth + 1);
      return out;
    }
  }
}

describe('JSON text in pieces (json-text.util)', () => {
  it('jsonAt + objectPieces join into exactly what JSON.stringify writes, at any depth and indent', () => {
    const random = prng(3);
    for (let round = 0; round < 400; round++) {
      const value = randomValue(random);
      const other = randomValue(random);
      for (const indent of [0, 1, 2, 4, 10, 12]) {
        // { first: 1, inner: { value, other }, last: "x" }: `value` sits two objects deep.
        const members = (
          entries: Array<[string, unknown]>,
          depth: number,
        ): Array<readonly [string, readonly JsonPiece[]]> =>
          entries.flatMap(([key, v]) => {
            const text = jsonAt(v, indent, depth);
            return text === undefined ? [] : [[key, [text]] as const];
          });
        const inner = objectPieces(
          members(
            [
              ['value', value],
              ['other', other],
            ],
            2,
          ),
          indent,
          1,
        );
        const whole = objectPieces(
          [['first', ['1']], ['inner', inner], ...members([['last', 'x']], 1)],
          indent,
          0,
        );
        const expected = JSON.stringify(
          { first: 1, inner: { value, other }, last: 'x' },
          null,
          indent,
        );
        expect(joinPieces(whole).toString('utf8')).toBe(expected);
      }
    }
  });
});

describe('a conversation written straight to JSON text (RecordJsonWriter)', () => {
  let dir: string;
  let app: INestApplication | undefined;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    await removeDir(dir);
  });

  const FORMATS: BuiltInFormat[] = ['json', 'json-compact', 'json-gzip', 'auto'];
  const plainJson = (format: BuiltInFormat, bytes: Buffer): string =>
    (bytes[0] === 0x1f ? gunzipSync(bytes) : bytes).toString('utf8');

  it('gives the very bytes of the envelope JSON.stringify writes, as messages are appended, in every JSON format', async () => {
    app = await createApp({ path: dir });
    const memory = app.get(MemoryManager);
    const adapter = app.get(MemoryAdapter);
    const forms = storedFormsOf(adapter)!;
    expect(forms.json).toBeDefined();
    const codecs = FORMATS.map(
      (format) =>
        [
          format,
          new ItemFileCodec(createSerializer(format, { compressAbove: 600 }), undefined, 1 << 30),
        ] as const,
    );
    memory.create({ id: 'empty' });
    const check = async (
      format: BuiltInFormat,
      id: string,
      schemaVersion: number,
    ): Promise<void> => {
      const codec = codecs.find(([name]) => name === format)![1];
      const record = memory.get(id)!;
      const fast = await codec.serialize(id, record, schemaVersion, forms);
      const envelope =
        schemaVersion > 1
          ? { id, v: 1, sv: schemaVersion, data: record }
          : { id, v: 1, data: record };
      expect(plainJson(format, fast)).toBe(
        JSON.stringify(envelope, null, format === 'json' ? 2 : 0),
      );
    };
    // One conversation per format, as a store has one format: each append reuses the text kept by
    // the save before, in that format's indent.
    for (const format of FORMATS) {
      await check(format, 'empty', 1); // no messages: "messages": []
      const id = `c-${format}`;
      memory.create({ id, title: 'ünïcødé "t"', metadata: { tags: ['a', { b: null }], n: 1.5 } });
      for (let m = 0; m < 40; m++) {
        memory.addMessage(id, {
          role: m % 2 ? 'assistant' : 'user',
          content: m % 3 ? `message ${m} \u{1F600} \u2028 "x"` : '',
          ...(m % 4 === 1 ? { metadata: { nested: { deep: [m, 'é'] } } } : {}),
        });
        await check(format, id, m % 5 === 4 ? 3 : 1);
        if (m % 3 === 2) await check(format, id, 1); // nothing appended since: the kept text as it is
      }
    }
  });

  it('reuses the text of the messages saved before: after an append, only the new message is stringified', async () => {
    app = await createApp({ path: dir });
    const memory = app.get(MemoryManager);
    const forms = storedFormsOf(app.get(MemoryAdapter))!;
    memory.create({ id: 'c1' });
    for (let m = 0; m < 30; m++) memory.addMessage('c1', { role: 'user', content: `old ${m}` });
    forms.json!('c1', memory.get('c1'), 2);
    memory.addMessage('c1', { role: 'assistant', content: 'the new one' });
    const stringify = jest.spyOn(JSON, 'stringify');
    try {
      forms.json!('c1', memory.get('c1'), 2);
      const values = stringify.mock.calls.map(([value]) => {
        let inner = value as unknown;
        while (inner && typeof inner === 'object' && Object.keys(inner).join() === 'a') {
          inner = (inner as { a: unknown }).a;
        }
        return inner;
      });
      expect(values.some((v) => Array.isArray(v) && v.length > 1)).toBe(false);
      expect(values.some((v) => (v as { content?: string })?.content === 'the new one')).toBe(true);
    } finally {
      stringify.mockRestore();
    }
  });

  it('stays exact when a list is replaced by one that is not an extension of it, and when a text finds no room', async () => {
    app = await createApp({ path: dir });
    const memory = app.get(MemoryManager);
    const writer = new RecordJsonWriter<Conversation>(CONVERSATION_SCHEMA, 'messages', 2000);
    const text = (id: string): string =>
      joinPieces(objectPieces([['data', writer.pieces(id, memory.get(id)!, 2)]], 2, 0)).toString();
    const expected = (id: string): string => JSON.stringify({ data: memory.get(id) }, null, 2);
    for (const id of ['a', 'b', 'c']) {
      memory.create({ id });
      for (let m = 0; m < 8; m++)
        memory.addMessage(id, { role: 'user', content: `${id}${m}`.repeat(20) });
      expect(text(id)).toBe(expected(id)); // a 2,000-char cache: room for the first text only
    }
    for (const id of ['a', 'b', 'c']) {
      memory.addMessage(id, { role: 'user', content: 'kept or not' });
      expect(text(id)).toBe(expected(id));
    }
    // A load replaces every record: the same id, other message objects (fewer of them here).
    const shorter = new Map(memory.entries());
    const a = shorter.get('a')!;
    shorter.set(
      'a',
      Object.freeze({
        ...a,
        messages: Object.freeze(a.messages.slice(0, 3).map((m) => Object.freeze({ ...m }))),
      }),
    );
    memory.replaceAll(shorter);
    expect(text('a')).toBe(expected('a'));
  });

  it('keeps at most its per-save budget of new text in one save; the others are kept by later saves', async () => {
    app = await createApp({ path: dir });
    const memory = app.get(MemoryManager);
    const writer = new RecordJsonWriter<Conversation>(CONVERSATION_SCHEMA, 'messages', 1e9, 5000);
    /** The ids whose messages were stringified whole (not taken from the kept text). */
    const wholeLists = (ids: string[]): string[] => {
      const rewritten: string[] = [];
      for (const id of ids) {
        const expected = JSON.stringify({ data: memory.get(id) }, null, 2);
        const stringify = jest.spyOn(JSON, 'stringify');
        let text: string;
        let calls: unknown[][];
        try {
          text = joinPieces(
            objectPieces([['data', writer.pieces(id, memory.get(id)!, 2)]], 2, 0),
          ).toString();
        } finally {
          calls = [...stringify.mock.calls];
          stringify.mockRestore();
        }
        expect(text).toBe(expected);
        const whole = calls.some(([value]) => {
          let inner = value;
          while (inner && typeof inner === 'object' && Object.keys(inner).join() === 'a') {
            inner = (inner as { a: unknown }).a;
          }
          return Array.isArray(inner) && inner.length > 1;
        });
        if (whole) rewritten.push(id);
      }
      return rewritten;
    };
    for (const id of ['a', 'b', 'c']) {
      memory.create({ id });
      for (let m = 0; m < 10; m++)
        memory.addMessage(id, { role: 'user', content: 'x'.repeat(200) });
    }
    writer.nextSave();
    expect(wholeLists(['a', 'b', 'c'])).toEqual(['a', 'b', 'c']); // ~3,400 characters each: room for one
    for (const id of ['a', 'b', 'c']) memory.addMessage(id, { role: 'user', content: 'new' });
    writer.nextSave();
    expect(wholeLists(['a', 'b', 'c'])).toEqual(['b', 'c']); // a's kept text reused; b kept now
    for (const id of ['a', 'b', 'c']) memory.addMessage(id, { role: 'user', content: 'newer' });
    writer.nextSave();
    expect(wholeLists(['a', 'b', 'c'])).toEqual(['c']);
  });

  it('is what a save writes, and a restart reads back each message appended between saves', async () => {
    app = await createApp({ path: dir });
    const memory = app.get(MemoryManager);
    memory.create({ id: 'c1', title: 't' });
    for (let save = 0; save < 4; save++) {
      memory.addMessage('c1', { role: 'user', content: `message ${save}` });
      await app.get(PersistenceStore).saveAll();
    }
    await app.get(PersistenceStore).checkpoint();
    const file = await readFile(join(dir, 'conversations', 'c1.json'), 'utf8');
    expect(file).toBe(JSON.stringify({ id: 'c1', v: 1, data: memory.get('c1') }, null, 2));
    const before = memory.get('c1');
    await app.close();
    app = await createApp({ path: dir });
    expect(JSON.stringify(app.get(MemoryManager).get('c1'))).toBe(JSON.stringify(before));
    expect(
      app
        .get(MemoryManager)
        .get('c1')!
        .messages.map((m) => m.content),
    ).toEqual(['message 0', 'message 1', 'message 2', 'message 3']);
  });
});
