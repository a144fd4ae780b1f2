import { INestApplication } from '@nestjs/common';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import {
  FocusManager,
  MemoryManager,
  PersistenceError,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceStore,
  QUARANTINE_DIR,
  SessionManager,
} from 'nestjs-persistence';
import { MAX_JSON_DEPTH } from '../lib/adapters/json-data.util';
import { isoString, reviveDate, storedForm } from '../lib/adapters/model.schema';
import { CONVERSATION_SCHEMA } from '../lib/adapters/memory/conversation.schema';
import { SESSION_SCHEMA } from '../lib/adapters/session/session.schema';
import { FOCUS_CHAIN_SCHEMA } from '../lib/adapters/focus/focus.schema';
import { prng } from './fixtures/prng';
import { createApp } from './fixtures/app.factory';
import { dumpState, saveToFiles } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/** `depth` objects nested under each other: { a: { a: … { end: true } } }. */
function nest(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = { end: true };
  for (let i = 1; i < depth; i++) value = { a: value };
  return value;
}

/**
 * Deep-strict equality (util.isDeepStrictEqual: prototypes, -0, undefined keys, holes). Not
 * toStrictEqual, whose type check reads `.constructor`, which an own "constructor" key overrides.
 */
function expectExactly(actual: unknown, expected: unknown): void {
  if (!isDeepStrictEqual(actual, expected)) expect(actual).toEqual(expected); // shows the difference
  expect(isDeepStrictEqual(actual, expected)).toBe(true);
}

function refusal(call: () => unknown): PersistenceError {
  try {
    call();
  } catch (error) {
    return error as PersistenceError;
  }
  throw new Error('the call was accepted');
}

/** The call throws a PersistenceError with `code` whose message names `path` (and matches `text`). */
function expectRefused(
  call: () => unknown,
  code: PersistenceErrorCode,
  path: string,
  ...text: RegExp[]
): void {
  const error = refusal(call);
  expect(error).toBeInstanceOf(PersistenceError);
  expect({ code: error.code, message: error.message }).toEqual({
    code,
    message: expect.stringContaining(`: ${path} `) as string,
  });
  for (const pattern of text) expect(error.message).toMatch(pattern);
}

class Point {
  x = 1;
}
class Items extends Array<number> {}
const cycle = (): Record<string, unknown> => {
  const root: Record<string, unknown> = { b: {} };
  (root.b as Record<string, unknown>).back = root;
  return root;
};

/** Each kind of value JSON cannot carry exactly, put at `x`: the path found under it, and why. */
const REFUSED: Array<[string, () => unknown, string, RegExp]> = [
  ['a Date', () => new Date(0), '', /is a Date.*Store date\.toISOString\(\) instead/],
  ['NaN', () => NaN, '', /is NaN, which JSON cannot hold/],
  ['Infinity', () => Infinity, '', /is Infinity, which JSON cannot hold/],
  ['-Infinity', () => -Infinity, '', /is -Infinity, which JSON cannot hold/],
  ['-0', () => -0, '', /is -0, which JSON writes as 0\. Store 0/],
  ['undefined', () => undefined, '', /is undefined, which JSON drops.*Omit the key, or store null/],
  ['undefined in an array', () => [1, undefined], '[1]', /writes as null in an array/],
  ['a Map', () => new Map([['k', 1]]), '', /is a Map.*Object\.fromEntries/],
  ['a Set', () => new Set([1]), '', /is a Set.*\[\.\.\.set\]/],
  ['a RegExp', () => /re/g, '', /is a RegExp/],
  ['an Error', () => new Error('e'), '', /is an Error/],
  ['a BigInt', () => 10n, '', /is a BigInt.*Store it as a string/],
  ['a function', () => () => 1, '', /is a function/],
  ['a symbol', () => Symbol('s'), '', /is a symbol/],
  ['a symbol key', () => ({ [Symbol('k')]: 1 }), '', /has a symbol key \(Symbol\(k\)\)/],
  ['a cycle', cycle, '.b.back', /refers back to (metadata|context)\.x \(a cycle\)/],
  ['a sparse array', () => [1, , 3], '[1]', /hole in a sparse array/], // eslint-disable-line no-sparse-arrays
  ['an array with a property', () => Object.assign([1], { extra: 1 }), '', /extra property/],
  [
    'a getter',
    () => Object.defineProperty({}, 'g', { get: () => 1, enumerable: true }),
    '.g',
    /getter\/setter/,
  ],
  [
    'a non-enumerable property',
    () => Object.defineProperty({}, 'h', { value: 1, enumerable: false }),
    '.h',
    /non-enumerable/,
  ],
  ['a class instance', () => new Point(), '', /is an instance of Point/],
  ['an Array subclass', () => Items.from([1]), '', /Array subclass/],
  ['a Proxy', () => new Proxy({}, {}), '', /is a Proxy/],
  ['a Buffer', () => Buffer.from('a'), '', /binary data/],
  ['a boxed string', () => new String('s'), '', /boxed primitive/],
  ['an odd key path', () => ({ 'a b': [0, { c: NaN }] }), '["a b"][1].c', /NaN/],
  [
    'too deep a value',
    () => nest(MAX_JSON_DEPTH),
    '.a'.repeat(MAX_JSON_DEPTH - 1),
    /nested more than 512 levels/,
  ],
];

describe('model schemas: what the managers accept comes back exactly', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  const open = async (
    format?: 'json' | 'json-compact' | 'json-gzip',
  ): Promise<INestApplication> => {
    const app = await createApp({ path: dir, ...(format ? { format } : {}) });
    apps.push(app);
    return app;
  };
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(dir);
  });

  describe('refused at the call with PERSISTENCE_INVALID_INPUT, naming the path', () => {
    let sessions: SessionManager;
    let memory: MemoryManager;
    let focus: FocusManager;
    let n = 0;
    beforeEach(async () => {
      const app = await open();
      sessions = app.get(SessionManager);
      memory = app.get(MemoryManager);
      focus = app.get(FocusManager);
      sessions.create({ id: 's' });
      memory.create({ id: 'c' });
      focus.create({ id: 'f' });
    });

    /** Every entry point that takes metadata or context: its root name and a call with it. */
    const jsonEntries = (): Array<[string, string, (value: unknown) => unknown]> => [
      ['create', 'metadata', (v) => sessions.create({ id: `s${n++}`, metadata: v as never })],
      ['update', 'metadata', (v) => sessions.update('s', { metadata: v as never })],
      [
        'MemoryManager.create',
        'metadata',
        (v) => memory.create({ id: `c${n++}`, metadata: v as never }),
      ],
      [
        'addMessage',
        'metadata',
        (v) => memory.addMessage('c', { role: 'user', content: 'x', metadata: v as never }),
      ],
      [
        'FocusManager.create',
        'metadata',
        (v) => focus.create({ id: `f${n++}`, metadata: v as never }),
      ],
      [
        'pushFocus',
        'context',
        (v) => focus.pushFocus('f', { type: 't', target: 'x', context: v as never }),
      ],
    ];

    it.each(REFUSED)('%s, nested in metadata/context, at every entry point', (_, make, at, why) => {
      for (const [method, root, call] of jsonEntries()) {
        expectRefused(
          () => call({ ok: 1, x: make() }),
          PersistenceErrorCode.InvalidInput,
          `${root}.x${at}`,
          why,
        );
        expect(method).toBeTruthy();
      }
      // Nothing was stored or changed by the refused calls.
      expect(sessions.list().map((s) => s.id)).toEqual(['s']);
      expect(sessions.get('s')?.metadata).toStrictEqual({});
      expect(memory.list().map((c) => [c.id, c.messages.length])).toEqual([['c', 0]]);
      expect(focus.list().map((c) => [c.id, c.items.length])).toEqual([['f', 0]]);
    });

    it.each([
      ['null', null, /is null, not an object\. Omit it, or pass \{\}/],
      ['a string', 'a string', /is a string \("a string"\), not an object/],
      ['an array', ['a'], /is an array, not an object\. Wrap the array in an object/],
      ['a number', 7, /is a number, not an object/],
      ['a Map', new Map(), /is a Map/],
      ['a Date', new Date(0), /is a Date/],
      ['a Proxy', new Proxy({}, {}), /is a Proxy/],
    ])('metadata/context that is %s, at every entry point', (_, value, why) => {
      for (const [, root, call] of jsonEntries()) {
        expectRefused(() => call(value), PersistenceErrorCode.InvalidInput, root, why);
      }
    });

    it('a wrong type, null or a missing required field, for every other field', () => {
      const invalid = PersistenceErrorCode.InvalidInput;
      const notString = /not a string\. Pass a string/;
      expectRefused(() => sessions.create({ status: 7 as never }), invalid, 'status', notString);
      expectRefused(() => sessions.create({ status: null as never }), invalid, 'status', /is null/);
      expectRefused(() => sessions.update('s', { status: {} as never }), invalid, 'status');
      expectRefused(() => memory.create({ title: null as never }), invalid, 'title');
      expectRefused(() => memory.create({ sessionId: 5 as never }), invalid, 'sessionId');
      expectRefused(() => focus.create({ name: null as never }), invalid, 'name', /is null/);
      const message = (m: object) => () => memory.addMessage('c', m as never);
      expectRefused(
        message({ role: 'robot', content: 'x' }),
        invalid,
        'role',
        /is "robot", not one of user, assistant, system, tool/,
      );
      expectRefused(message({ content: 'x' }), invalid, 'role', /is missing\. Pass one of user/);
      expectRefused(message({ role: 'user' }), invalid, 'content', /is missing/);
      expectRefused(message({ role: 'user', content: 42 }), invalid, 'content', notString);
      expectRefused(message({ role: 'user', content: null }), invalid, 'content', /is null/);
      const entry = (f: object) => () => focus.pushFocus('f', f as never);
      expectRefused(entry({ target: 'x' }), invalid, 'type', /is missing/);
      expectRefused(entry({ type: 't', target: null }), invalid, 'target', /is null/);
      expectRefused(entry({ type: ['t'], target: 'x' }), invalid, 'type', /is an array/);
      expect(memory.get('c')?.messages).toEqual([]);
      expect(focus.get('f')?.items).toEqual([]);
    });

    it('a field the method does not take, and an argument that is not an object', () => {
      const invalid = PersistenceErrorCode.InvalidInput;
      expectRefused(
        () => sessions.create({ stauts: 'x' } as never),
        invalid,
        'stauts',
        /is not a field it takes\. Pass only id, status, metadata/,
      );
      expectRefused(() => sessions.update('s', { id: 'other' } as never), invalid, 'id');
      expectRefused(
        () => memory.addMessage('c', { role: 'user', content: 'x', at: 1 } as never),
        invalid,
        'at',
      );
      expectRefused(
        () => focus.pushFocus('f', { type: 't', target: 'x', 'a b': 1 } as never),
        invalid,
        '["a b"]',
      );
      expectRefused(() => sessions.create(null as never), invalid, 'its argument', /is null/);
      expectRefused(() => sessions.update('s', undefined as never), invalid, 'its argument');
      expectRefused(() => memory.create('c2' as never), invalid, 'its argument');
      expectRefused(
        () => memory.addMessage('c', undefined as never),
        invalid,
        'its argument',
        /Pass an object with role and content/,
      );
      expectRefused(() => focus.create([] as never), invalid, 'its argument', /is an array/);
      expectRefused(() => focus.pushFocus('f', 'x' as never), invalid, 'its argument');
      // An unknown key whose value is undefined is absent, like an undefined optional field.
      expect(sessions.create({ id: 'u', extra: undefined } as never).id).toBe('u');
    });

    it('bad ids keep their PERSISTENCE_INVALID_ID; unknown records PERSISTENCE_NOT_FOUND', () => {
      const code = (call: () => unknown): string => refusal(call).code;
      const invalidId = PersistenceErrorCode.InvalidId;
      expect(code(() => sessions.create({ id: '' }))).toBe(invalidId);
      expect(code(() => sessions.create({ id: 5 as never }))).toBe(invalidId);
      const bareCycle = Object.create(null) as Record<string, unknown>;
      bareCycle.self = bareCycle; // not even String() can describe it
      expect(code(() => sessions.create({ id: bareCycle as never }))).toBe(invalidId);
      expect(code(() => memory.create({ id: null as never }))).toBe(invalidId);
      expect(code(() => focus.create({ id: '\ud800' }))).toBe(invalidId);
      expect(code(() => memory.addMessage('c', { id: '', role: 'user', content: 'x' }))).toBe(
        invalidId,
      );
      expect(code(() => focus.pushFocus('f', { id: 7 as never, type: 't', target: 'x' }))).toBe(
        invalidId,
      );
      expect(code(() => sessions.update('ghost', null as never))).toBe(
        PersistenceErrorCode.NotFound,
      );
      expect(code(() => memory.addMessage('ghost', null as never))).toBe(
        PersistenceErrorCode.NotFound,
      );
    });
  });

  it('the values that used to be accepted and then quarantined are refused, and saving keeps the rest', async () => {
    const app = await open();
    const errors: PersistenceErrorEvent[] = [];
    app.get(PersistenceStore).onError((e) => errors.push(e));
    const focus = app.get(FocusManager);
    const memory = app.get(MemoryManager);
    const sessions = app.get(SessionManager);
    focus.create({ id: 'chain' });
    focus.pushFocus('chain', { type: 't', target: 'kept' });
    memory.create({ id: 'conv', title: 'kept' });
    sessions.create({ id: 'sess', status: 'kept' });
    const invalid = PersistenceErrorCode.InvalidInput;
    expectRefused(
      () => focus.pushFocus('chain', { type: 't', target: 'x', context: 'a string' as never }),
      invalid,
      'context',
    );
    expectRefused(() => memory.create({ id: 'c2', title: null as never }), invalid, 'title');
    expectRefused(() => sessions.update('sess', { status: 42 as never }), invalid, 'status');
    expectRefused(
      () => sessions.update('sess', { metadata: [1, 2] as never }),
      invalid,
      'metadata',
    );
    expectRefused(() => sessions.create({ metadata: { n: 1n } }), invalid, 'metadata.n');
    const before = dumpState(app);
    await app.get(PersistenceStore).saveAll();
    await app.close();
    apps.splice(apps.indexOf(app), 1);
    const next = await open();
    expect(dumpState(next)).toStrictEqual(before);
    expect(
      next
        .get(FocusManager)
        .get('chain')
        ?.items.map((f) => f.target),
    ).toEqual(['kept']);
    expect(errors).toEqual([]);
    expect(await readdir(dir)).not.toContain(QUARANTINE_DIR);
  });

  describe.each(['json', 'json-compact', 'json-gzip'] as const)(
    'every accepted kind round-trips exactly through a save and a load (%s)',
    (format) => {
      it('all six entry points, with every kind of JSON data', async () => {
        const app = await open(format);
        const sessions = app.get(SessionManager);
        const memory = app.get(MemoryManager);
        const focus = app.get(FocusManager);
        const protoKeys = JSON.parse(
          '{"__proto__":{"inner":[1]},"constructor":{"prototype":{"p":1}},"toJSON":"data"}',
        ) as Record<string, unknown>;
        const data = (): Record<string, unknown> => ({
          null: null,
          yes: true,
          no: false,
          zero: 0,
          int: 42,
          negative: -7,
          fraction: 0.1,
          smallest: 5e-324,
          largest: Number.MAX_VALUE,
          beyondSafe: 2 ** 53 + 2,
          tiny: -1.5e-300,
          empty: '',
          loneHigh: '\ud800',
          loneLow: 'a\udc00b',
          reversedPair: '\udc00\ud800',
          emoji: '😀 ünïcödé',
          controls: '\u0000\u001f\u2028\u2029"\\/',
          '\ud83d': 'a lone surrogate key',
          '': 'an empty key',
          'a.b c': 1,
          '1': 'an index-like key',
          '01': 'not an index',
          list: [[], {}, [null, [0, '']], 'x'],
          nested: { deeper: { deepest: [1, { x: 'y' }] } },
          proto: protoKeys,
          deep: nest(MAX_JSON_DEPTH - 1),
        });
        const frozen = Object.freeze({ a: Object.freeze([1, 2]) });
        const inputs = {
          session: data(),
          update: JSON.parse('{"__proto__":{"a":1},"b":[2]}') as Record<string, unknown>,
          conversation: data(),
          message: data(),
          chain: { frozen },
          context: data(),
        };
        sessions.create({ id: 's1', status: '', metadata: inputs.session });
        sessions.create({ id: 's2', status: '\udfff' });
        sessions.update('s2', { metadata: inputs.update, status: undefined });
        memory.create({
          id: 'c1',
          title: 'a\ud800',
          sessionId: '',
          metadata: inputs.conversation,
        });
        memory.create({ id: 'c2', title: undefined, sessionId: undefined });
        memory.addMessage('c1', {
          id: 'm1',
          role: 'tool',
          content: '\udbff',
          metadata: inputs.message,
        });
        memory.addMessage('c1', { role: 'user', content: '', metadata: undefined });
        focus.create({ id: 'f1', name: '', metadata: inputs.chain });
        focus.pushFocus('f1', { id: 'e1', type: '', target: '\ud800x', context: inputs.context });
        focus.pushFocus('f1', { type: 't', target: 'x' });

        const before = dumpState(app);
        await saveToFiles(app); // through the serializer, the journal and the item-file writer
        const extension = { json: '.json', 'json-compact': '.json', 'json-gzip': '.json.gz' }[
          format
        ];
        expect(await readdir(join(dir, 'conversations'))).toEqual([
          `c1${extension}`,
          `c2${extension}`,
        ]);
        await app.close();
        apps.splice(apps.indexOf(app), 1);
        const next = await open(format);
        const after = dumpState(next);

        expectExactly(after, before);
        // What the caller passed is what is stored and what comes back.
        const session = next.get(SessionManager).get('s1')!;
        const conversation = next.get(MemoryManager).get('c1')!;
        const chain = next.get(FocusManager).get('f1')!;
        expectExactly(session.metadata, inputs.session);
        expectExactly(next.get(SessionManager).get('s2')?.metadata, inputs.update);
        expectExactly(conversation.metadata, inputs.conversation);
        expectExactly(conversation.messages[0].metadata, inputs.message);
        expectExactly(chain.metadata, inputs.chain);
        expectExactly(chain.items[0].context, inputs.context);
        expect(next.get(MemoryManager).get('c2')).not.toHaveProperty('title');
        // An own "__proto__" key stays an own data key, and no prototype changed.
        const update = next.get(SessionManager).get('s2')!.metadata;
        expect(Object.getPrototypeOf(update)).toBe(Object.prototype);
        expect(Object.keys(update)).toEqual(['__proto__', 'b']);
        expect(Object.getOwnPropertyDescriptor(update, '__proto__')?.value).toEqual({ a: 1 });
        // Still deeply frozen.
        expect(Object.isFrozen((session.metadata.nested as { deeper: object }).deeper)).toBe(true);
        expect(Object.isFrozen(chain.items[0].context.list)).toBe(true);
        expect(await readdir(dir)).not.toContain(QUARANTINE_DIR);
      });
    },
  );

  it('copies what it is given: later changes to the caller’s object do not reach the store', async () => {
    const app = await open();
    const sessions = app.get(SessionManager);
    const metadata = JSON.parse('{"__proto__":{"n":1},"list":[{"k":1}]}') as {
      list: Array<{ k: number }>;
    };
    const session = sessions.create({ id: 'c', metadata });
    metadata.list[0].k = 2;
    metadata.list.push({ k: 3 });
    expect(session.metadata).toStrictEqual({
      ...JSON.parse('{"__proto__":{"n":1}}'),
      list: [{ k: 1 }],
    });
    expect(Object.getPrototypeOf(session.metadata)).toBe(Object.prototype);
    expect(Object.isFrozen(session.metadata.list)).toBe(true);
    expect(() => (session.metadata.list as number[]).push(1)).toThrow(TypeError);
  });

  it('an object with a null prototype is stored as an ordinary object, as JSON reads it back', async () => {
    const app = await open();
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, {
      a: Object.assign(Object.create(null) as object, { b: 1 }),
    });
    const created = app.get(SessionManager).create({ id: 'n', metadata: bare });
    expect(Object.getPrototypeOf(created.metadata)).toBe(Object.prototype);
    expect(created.metadata).toStrictEqual({ a: { b: 1 } });
    await app.close();
    apps.splice(0);
    const after = (await open()).get(SessionManager).get('n');
    expect(after).toStrictEqual(created);
  });

  it('revive reads files with the same schemas: what the managers refuse is quarantined', async () => {
    const record = (data: Record<string, unknown>): Record<string, unknown> => ({
      id: 'x',
      status: 'active',
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
      metadata: {},
      ...data,
    });
    const files: Array<[string, string, RegExp]> = [
      ['neg-zero', '{"metadata":{"n":-0}}', /session\.metadata\.n is -0/],
      ['status-null', '{"status":null}', /session\.status is null, not a string/],
      [
        'short-date',
        '{"createdAt":"2026-01-01"}',
        /session\.createdAt is "2026-01-01", not a date/,
      ],
      ['meta-array', '{"metadata":[1]}', /session\.metadata is an array/],
      ['no-meta', '{"metadata":null}', /session\.metadata is null/],
      ['other-id', '{"id":"someone-else"}', /session\.id "someone-else" is not the file's id/],
    ];
    await mkdir(join(dir, 'sessions'), { recursive: true });
    for (const [id, data] of files) {
      const value = { ...record({ id }), ...(JSON.parse(data) as object) };
      const text = JSON.stringify({ id, v: 1, data: value }).replace('"n":0', '"n":-0');
      await writeFile(join(dir, 'sessions', `${id}.json`), text);
    }
    await writeFile(
      join(dir, 'sessions', 'fine.json'),
      JSON.stringify({ id: 'fine', v: 1, data: record({ id: 'fine', extra: 'ignored' }) }),
    );
    const app = await createApp({ path: dir, saveOnShutdown: false });
    apps.push(app);
    expect(
      app
        .get(SessionManager)
        .list()
        .map((s) => s.id),
    ).toEqual(['fine']);
    expect(app.get(SessionManager).get('fine')).not.toHaveProperty('extra');
    expect((await readdir(join(dir, QUARANTINE_DIR, 'sessions'))).length).toBe(files.length);
    const store = app.get(PersistenceStore);
    const errors: PersistenceErrorEvent[] = [];
    store.onError((e) => errors.push(e));
    for (const [id, data] of files) {
      const value = { ...record({ id }), ...(JSON.parse(data) as object) };
      await writeFile(
        join(dir, 'sessions', `${id}.json`),
        JSON.stringify({ id, v: 1, data: value }).replace('"n":0', '"n":-0'),
      );
    }
    await store.loadAll();
    const messages = errors.map((e) => e.error.message).join('\n');
    for (const [, , why] of files) expect(messages).toMatch(why);
    expect(errors.every((e) => e.error.code === PersistenceErrorCode.CorruptFile)).toBe(true);
  });
});

describe('reviveDate', () => {
  /** The reference: a Date whose toISOString() is the string itself. */
  const exact = (value: string): number | undefined => {
    const date = new Date(value);
    return Number.isNaN(date.getTime()) || date.toISOString() !== value
      ? undefined
      : date.getTime();
  };

  it('accepts exactly the strings toISOString() gives, and their Dates', () => {
    const cases = [
      '2024-02-29T00:00:00.000Z',
      '2026-02-29T00:00:00.000Z',
      '2026-02-30T00:00:00.000Z',
      '1900-02-29T00:00:00.000Z',
      '2000-02-29T12:00:00.000Z',
      '2026-04-31T00:00:00.000Z',
      '2026-13-01T00:00:00.000Z',
      '2026-00-01T00:00:00.000Z',
      '2026-01-00T00:00:00.000Z',
      '2026-01-01T24:00:00.000Z',
      '2026-01-01T23:60:00.000Z',
      '2026-01-01T23:59:60.000Z',
      '0000-01-01T00:00:00.000Z',
      '0099-12-31T23:59:59.999Z',
      '0100-01-01T00:00:00.000Z',
      '9999-12-31T23:59:59.999Z',
      '+275760-09-13T00:00:00.000Z',
      '-000001-01-01T00:00:00.000Z',
      '2026-01-01T00:00:00Z',
      '2026-01-01',
      '2026-1-01T00:00:00.000Z0',
      '２０２６-01-01T00:00:00.000Z',
    ];
    const random = prng(7);
    for (let i = 0; i < 5000; i++) {
      const time = Math.floor((random() * 2 - 1) * 8.64e15);
      const iso = new Date(time).toISOString();
      cases.push(iso);
      // One digit changed: often still well-formed, sometimes out of range.
      const at = Math.floor(random() * iso.length);
      const code = iso.charCodeAt(at);
      if (code >= 48 && code <= 57) {
        cases.push(iso.slice(0, at) + String(Math.floor(random() * 10)) + iso.slice(at + 1));
      }
    }
    const wrong = cases.filter((value) => reviveDate(value)?.getTime() !== exact(value));
    expect(wrong).toEqual([]);
    expect(cases.filter((value) => exact(value) === undefined).length).toBeGreaterThan(20);
    expect(reviveDate(12)).toBeUndefined();
  });
});

describe('storedForm: the built-in records as JSON writes them', () => {
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

  it('gives exactly the bytes JSON.stringify gives for the record, compact and indented', async () => {
    app = await createApp({ path: dir });
    const random = prng(7);
    const sessions = app.get(SessionManager);
    const memory = app.get(MemoryManager);
    const focus = app.get(FocusManager);
    const metadata = (): Record<string, unknown> => ({
      z: random() < 0.5 ? 'ünïcødé \u2028 "quoted"' : null,
      a: [1, 2.5, { nested: true, __proto__: 'kept' }],
      '0': 'numeric key first',
    });
    for (let i = 0; i < 20; i++) {
      sessions.create({ id: `s${i}`, ...(i % 2 ? { metadata: metadata() } : {}) });
      memory.create({ id: `c${i}`, ...(i % 3 ? { title: `t${i}`, sessionId: `s${i}` } : {}) });
      for (let m = 0; m < i % 5; m++) {
        memory.addMessage(`c${i}`, {
          role: m % 2 ? 'assistant' : 'user',
          content: `message ${m} \u{1F600}`,
          ...(m % 2 ? { metadata: metadata() } : {}),
        });
      }
      focus.create({ id: `f${i}`, ...(i % 2 ? { name: `chain ${i}` } : {}) });
      for (let f = 0; f < i % 4; f++) {
        focus.pushFocus(`f${i}`, {
          type: 'file',
          target: `target ${f}`,
          ...(f % 2 ? { context: metadata() } : {}),
        });
      }
    }
    const records: Array<[unknown, unknown]> = [
      ...sessions.list().map((s) => [s, storedForm(SESSION_SCHEMA, s)] as [unknown, unknown]),
      ...memory.list().map((c) => [c, storedForm(CONVERSATION_SCHEMA, c)] as [unknown, unknown]),
      ...focus.list().map((f) => [f, storedForm(FOCUS_CHAIN_SCHEMA, f)] as [unknown, unknown]),
    ];
    expect(records.length).toBe(60);
    for (const [record, stored] of records) {
      for (const indent of [0, 2]) {
        expect(JSON.stringify(stored, null, indent)).toBe(JSON.stringify(record, null, indent));
      }
    }
  });

  it('is what a save writes: each built-in item file holds JSON.stringify of its record', async () => {
    app = await createApp({ path: dir, format: 'json-compact' });
    app.get(SessionManager).create({ id: 's1', metadata: { when: 'now' } });
    const conversation = app.get(MemoryManager).create({ id: 'c1', title: 't' });
    app.get(MemoryManager).addMessage('c1', { role: 'user', content: 'hello' });
    await app.get(PersistenceStore).saveAll();
    await app.get(PersistenceStore).checkpoint();
    const written = JSON.parse(await readFile(join(dir, 'conversations', 'c1.json'), 'utf8')) as {
      data: unknown;
    };
    const current = app.get(MemoryManager).get('c1');
    expect(current).not.toBe(conversation);
    expect(JSON.stringify(written.data)).toBe(JSON.stringify(current));
  });
});

describe('isoString', () => {
  it('gives exactly what toISOString() gives, across days, years and the edges of the range', () => {
    const random = prng(11);
    const times = [
      0,
      -1,
      1,
      86_399_999,
      86_400_000,
      -86_400_000,
      -62_198_755_200_000, // year 0
      -62_198_755_200_001,
      253_402_300_799_999, // 9999-12-31T23:59:59.999Z
      253_402_300_800_000, // +010000
      8.64e15, // the last valid time
      -8.64e15, // the first
      Date.UTC(2024, 1, 29, 12, 0, 0, 5), // a leap day
    ];
    for (let i = 0; i < 20_000; i++) {
      times.push(Math.round((random() * 2 - 1) * 8.64e15));
      times.push(1.7e12 + Math.floor(random() * 1e10)); // days near each other, as in a conversation
    }
    for (const time of times) {
      const date = new Date(time);
      expect(isoString(date)).toBe(date.toISOString());
    }
  });
});
