import { INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual, types } from 'node:util';
import { deserialize } from 'node:v8';
import {
  FocusManager,
  MemoryManager,
  PersistenceAdapter,
  PersistenceError,
  PersistenceErrorCode,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { ChildApp } from './fixtures/child-process';
import type { DumpedState } from './fixtures/dump-state.main';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The contract, checked with generated inputs (fast-check), including inputs that ignore the
 * TypeScript types: every call of every public method of the built-in managers either throws a typed
 * error at the call, or its value is saved and comes back from a restart exactly. A custom adapter's
 * values either save, or are refused at save as that item's error with its last saved version kept.
 * Each run restarts in this process (so fast-check can shrink a failure); at the end one fresh
 * process loads every run's folder and must see the same state.
 */

/** Generated programs per run of the suite (fixed seed: the same programs every time). */
const RUNS = 60;

/** Codes a manager may refuse a call with. */
const REFUSALS = new Set<string>([
  PersistenceErrorCode.InvalidInput,
  PersistenceErrorCode.InvalidId,
  PersistenceErrorCode.NotFound,
]);

/** Codes a custom adapter's item may be refused with at save. */
const ITEM_REFUSALS = new Set<string>([
  PersistenceErrorCode.SerializeFailed,
  PersistenceErrorCode.InvalidId,
  PersistenceErrorCode.ItemTooLarge,
]);

/**
 * Deep equality of data, whatever realm or prototype the objects have (JSON has no prototypes, and
 * what a child process sends back is built in another realm than Jest's): same own keys, same values,
 * -0 apart from 0, Dates by time.
 */
function sameData(a: unknown, b: unknown): boolean {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) {
    return Object.is(a, b);
  }
  if (types.isDate(a) || types.isDate(b)) {
    return types.isDate(a) && types.isDate(b) && Object.is(a.getTime(), b.getTime());
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Reflect.ownKeys(a).filter((k) => !(Array.isArray(a) && k === 'length'));
  const keysB = Reflect.ownKeys(b).filter((k) => !(Array.isArray(b) && k === 'length'));
  if (keysA.length !== keysB.length) return false;
  return keysA.every(
    (key) =>
      Object.prototype.hasOwnProperty.call(b, key) &&
      sameData((a as Record<PropertyKey, unknown>)[key], (b as Record<PropertyKey, unknown>)[key]),
  );
}

const byId = (items: readonly unknown[]): unknown[] =>
  [...items].sort((x, y) =>
    String((x as { id: string }).id) < String((y as { id: string }).id) ? -1 : 1,
  );

// ---- generated inputs -------------------------------------------------------------------------

/** Anything at all: what a JavaScript caller or a JSON.parse of a request may pass. */
const junk = fc.anything({
  maxDepth: 2,
  maxKeys: 3,
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withNullPrototype: true,
  withObjectString: true,
  withSet: true,
  withSparseArray: true,
  withTypedArray: true,
});

/** JSON data (what should be accepted), with awkward strings and numbers. */
const json = fc.jsonValue({ maxDepth: 3 });
const data = fc.dictionary(fc.string({ maxLength: 6 }), json, { maxKeys: 4 });
const text = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 10 }), // lone surrogates included
  fc.constantFrom('', '__proto__', 'constructor', '\u0000', '😀'),
);
const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 6, arbitrary: arb }, { weight: 1, arbitrary: junk });
const itemId = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom('a', 'b', 'C d', 'ünï', '../x') },
  { weight: 2, arbitrary: text },
  { weight: 1, arbitrary: junk },
);
const input = <T extends Record<string, fc.Arbitrary<unknown>>>(fields: T) =>
  fc.oneof(
    { weight: 8, arbitrary: fc.record(fields, { requiredKeys: [] }) },
    { weight: 1, arbitrary: junk },
  );

type Op =
  | { kind: 'session.create'; input: unknown }
  | { kind: 'session.update'; id: unknown; patch: unknown }
  | { kind: 'session.delete'; id: unknown }
  | { kind: 'conversation.create'; input: unknown }
  | { kind: 'conversation.add'; id: unknown; input: unknown }
  | { kind: 'conversation.delete'; id: unknown }
  | { kind: 'focus.create'; input: unknown }
  | { kind: 'focus.push'; id: unknown; input: unknown }
  | { kind: 'focus.pop'; id: unknown }
  | { kind: 'focus.delete'; id: unknown }
  | { kind: 'custom.set'; id: string; value: unknown }
  | { kind: 'custom.delete'; id: string }
  | { kind: 'save' };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('session.create' as const),
    input: input({ id: itemId, status: maybe(text), metadata: maybe(data) }),
  }),
  fc.record({
    kind: fc.constant('session.update' as const),
    id: itemId,
    patch: input({ status: maybe(text), metadata: maybe(data) }),
  }),
  fc.record({ kind: fc.constant('session.delete' as const), id: itemId }),
  fc.record({
    kind: fc.constant('conversation.create' as const),
    input: input({ id: itemId, title: maybe(text), sessionId: maybe(text), metadata: maybe(data) }),
  }),
  fc.record({
    kind: fc.constant('conversation.add' as const),
    id: itemId,
    input: input({
      id: maybe(text),
      role: maybe(fc.constantFrom('user', 'assistant', 'system', 'tool')),
      content: maybe(text),
      metadata: maybe(data),
    }),
  }),
  fc.record({ kind: fc.constant('conversation.delete' as const), id: itemId }),
  fc.record({
    kind: fc.constant('focus.create' as const),
    input: input({ id: itemId, name: maybe(text), metadata: maybe(data) }),
  }),
  fc.record({
    kind: fc.constant('focus.push' as const),
    id: itemId,
    input: input({ id: maybe(text), type: maybe(text), target: maybe(text), context: maybe(data) }),
  }),
  fc.record({ kind: fc.constant('focus.pop' as const), id: itemId }),
  fc.record({ kind: fc.constant('focus.delete' as const), id: itemId }),
  fc.record({
    kind: fc.constant('custom.set' as const),
    id: fc.oneof(fc.constantFrom('a', 'b', 'c'), text),
    value: fc.oneof(json, junk),
  }),
  fc.record({ kind: fc.constant('custom.delete' as const), id: fc.constantFrom('a', 'b', 'c') }),
  fc.constant({ kind: 'save' as const }),
);

// ---- the model of the custom adapter's saved state ---------------------------------------------

/** The application's own state behind a custom adapter: values are replaced, never mutated. */
class CustomState implements PersistenceAdapter {
  readonly name = 'custom';
  readonly immutable = true;
  readonly values = new Map<string, unknown>();
  /** What a restart must give back: the last value that saved, per id. */
  readonly saved = new Map<string, unknown>();
  /** Ids set or deleted since the last save. */
  readonly dirty = new Set<string>();
  /** Ids whose current value was refused at save (reported once for each change). */
  readonly failing = new Set<string>();

  snapshot(): ReadonlyMap<string, unknown> {
    return new Map(this.values);
  }

  restore(): void {}

  /** Applies one save's outcome: `refused` holds the ids reported during it. */
  settle(refused: ReadonlySet<string>): void {
    for (const id of this.dirty) {
      if (refused.has(id)) this.failing.add(id);
      else this.failing.delete(id);
    }
    for (const id of [...this.saved.keys()]) {
      if (!this.values.has(id)) this.saved.delete(id);
    }
    for (const [id, value] of this.values) {
      if (!this.failing.has(id)) this.saved.set(id, value);
    }
    this.dirty.clear();
  }
}

// ---- running one generated program --------------------------------------------------------------

/** Runs the calls; throws (failing the property) when a call breaks the contract. */
async function run(app: INestApplication, custom: CustomState, ops: readonly Op[]): Promise<void> {
  const sessions = app.get(SessionManager);
  const memory = app.get(MemoryManager);
  const focus = app.get(FocusManager);
  const store = app.get(PersistenceStore);
  const refused = new Set<string>();
  store.onError((event) => {
    if (event.adapter !== 'custom') {
      throw new Error(`unexpected error event: ${event.error.code} ${event.error.message}`);
    }
    if (!ITEM_REFUSALS.has(event.error.code)) {
      throw new Error(`custom item refused with ${event.error.code}: ${event.error.message}`);
    }
    refused.add(event.itemId!);
  });
  const save = async (): Promise<void> => {
    refused.clear();
    await store.saveAll().catch((error: PersistenceError) => {
      if (error.code !== PersistenceErrorCode.SaveIncomplete) throw error;
    });
    custom.settle(refused);
  };
  /** A manager call: a typed refusal, or a result whose given fields are what went in. */
  const call = (fn: () => unknown, check: (result: unknown) => void = () => undefined): void => {
    let result: unknown;
    try {
      result = fn();
    } catch (error) {
      if (!(error instanceof PersistenceError) || !REFUSALS.has(error.code)) {
        throw new Error(`a call threw something untyped: ${String(error)}`);
      }
      return;
    }
    check(result);
  };
  const given = (source: unknown, key: string): unknown =>
    typeof source === 'object' && source !== null
      ? (source as Record<string, unknown>)[key]
      : undefined;
  const expectField = (result: unknown, key: string, value: unknown, fallback: unknown): void => {
    const stored = (result as Record<string, unknown>)[key];
    const expected = value === undefined ? fallback : value;
    if (!sameData(stored, expected)) {
      throw new Error(`${key} stored as ${String(stored)}, given ${String(value)}`);
    }
  };
  for (const step of ops) {
    switch (step.kind) {
      case 'session.create':
        call(
          () => sessions.create(step.input as never),
          (r) => {
            expectField(r, 'status', given(step.input, 'status'), 'active');
            expectField(r, 'metadata', given(step.input, 'metadata'), {});
          },
        );
        break;
      case 'session.update':
        call(
          () => sessions.update(step.id as never, step.patch as never),
          (r) => {
            if (given(step.patch, 'metadata') !== undefined) {
              expectField(r, 'metadata', given(step.patch, 'metadata'), {});
            }
          },
        );
        break;
      case 'session.delete':
        call(() => sessions.delete(step.id as never));
        break;
      case 'conversation.create':
        call(
          () => memory.create(step.input as never),
          (r) => {
            expectField(r, 'title', given(step.input, 'title'), undefined);
            expectField(r, 'metadata', given(step.input, 'metadata'), {});
          },
        );
        break;
      case 'conversation.add':
        call(
          () => memory.addMessage(step.id as never, step.input as never),
          (r) => {
            expectField(r, 'content', given(step.input, 'content'), undefined);
            expectField(r, 'metadata', given(step.input, 'metadata'), {});
          },
        );
        break;
      case 'conversation.delete':
        call(() => memory.delete(step.id as never));
        break;
      case 'focus.create':
        call(
          () => focus.create(step.input as never),
          (r) => {
            expectField(r, 'name', given(step.input, 'name'), undefined);
            expectField(r, 'metadata', given(step.input, 'metadata'), {});
          },
        );
        break;
      case 'focus.push':
        call(
          () => focus.pushFocus(step.id as never, step.input as never),
          (r) => {
            expectField(r, 'target', given(step.input, 'target'), undefined);
            expectField(r, 'context', given(step.input, 'context'), {});
          },
        );
        break;
      case 'focus.pop':
        call(() => focus.popFocus(step.id as never));
        break;
      case 'focus.delete':
        call(() => focus.delete(step.id as never));
        break;
      case 'custom.set':
        custom.values.set(step.id, step.value);
        custom.dirty.add(step.id);
        break;
      case 'custom.delete':
        custom.values.delete(step.id);
        custom.dirty.add(step.id);
        break;
      case 'save':
        await save();
        break;
    }
  }
  await save();
}

/** What the store must give back after a restart. */
interface Expected {
  sessions: unknown[];
  conversations: unknown[];
  focus: unknown[];
  custom: Map<string, unknown>;
}

function compare(
  label: string,
  loaded: DumpedState | Expected,
  expected: Expected,
  equal: (a: unknown, b: unknown) => boolean,
): void {
  for (const key of ['sessions', 'conversations', 'focus'] as const) {
    if (!equal(byId(loaded[key]), byId(expected[key]))) {
      throw new Error(`${label}: ${key} differ after the restart`);
    }
  }
  const custom = new Map(loaded.custom);
  if (custom.size !== expected.custom.size) {
    throw new Error(`${label}: custom has ${custom.size} items, expected ${expected.custom.size}`);
  }
  for (const [id, value] of expected.custom) {
    if (!custom.has(id) || !sameData(custom.get(id), value)) {
      throw new Error(`${label}: custom item ${JSON.stringify(id)} differs after the restart`);
    }
  }
}

describe('property: every accepted value comes back from a restart exactly', () => {
  const dirs: string[] = [];
  const expectations: Expected[] = [];
  afterAll(async () => {
    for (const dir of dirs) await removeDir(dir);
  });

  it('generated calls of every manager method and a custom adapter (in-process restarts)', async () => {
    let runs = 0;
    let calls = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 60 }), async (ops) => {
        runs++;
        calls += ops.length;
        const dir = await makeTempDir('persistence-property-');
        const custom = new CustomState();
        const app = await createApp({ path: dir, saveOnShutdown: false, adapters: [custom] });
        try {
          await run(app, custom, ops);
        } finally {
          await app.close();
        }
        const expected: Expected = {
          sessions: app.get(SessionManager).list(),
          conversations: app.get(MemoryManager).list(),
          focus: app.get(FocusManager).list(),
          custom: new Map(custom.saved),
        };
        let restored: ReadonlyMap<string, unknown> = new Map();
        const again = await createApp({
          path: dir,
          saveOnShutdown: false,
          adapters: [
            { name: 'custom', snapshot: () => new Map(), restore: (i) => void (restored = i) },
          ],
        });
        try {
          compare(
            'in-process restart',
            {
              sessions: again.get(SessionManager).list(),
              conversations: again.get(MemoryManager).list(),
              focus: again.get(FocusManager).list(),
              custom: new Map(restored),
            },
            expected,
            isDeepStrictEqual,
          );
        } finally {
          await again.close();
        }
        expect(await readdir(dir)).not.toContain('.quarantine');
        dirs.push(dir);
        expectations.push(expected);
      }),
      { numRuns: RUNS, seed: 20261125 },
    );
    console.log(`property: ${runs} generated programs, ${calls} calls`);
    expect(runs).toBe(RUNS);
  }, 300_000); // two Nest applications per program: about 0.5 s each on an idle machine

  it('a fresh process loads every folder of the generated runs exactly', async () => {
    expect(dirs.length).toBeGreaterThan(0);
    const out = join(dirs[0], '..', `dump-${process.pid}.v8`);
    const child = new ChildApp('test/fixtures/dump-state.main.ts', {
      PERSISTENCE_DIRS: JSON.stringify(dirs),
      PERSISTENCE_OUT: out,
    });
    await child.waitFor('DONE', 60_000);
    await child.exited;
    const states = deserialize(await readFile(out)) as DumpedState[];
    await removeDir(out);
    expect(states).toHaveLength(dirs.length);
    states.forEach((state, i) =>
      compare(`fresh process, run ${i}`, state, expectations[i], sameData),
    );
  }, 120_000);
});
