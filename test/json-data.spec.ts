import { isDeepStrictEqual } from 'node:util';
import { copyJsonData, findNonJsonData, MAX_JSON_DEPTH } from '../lib/adapters/json-data.util';

const strict = { allowToJSON: false } as const;
const lenient = { allowToJSON: true } as const;

const NOT_WRITTEN = Symbol('JSON.stringify returned undefined');

/** What JSON.stringify + JSON.parse give back, or the error JSON.stringify throws. */
function throughJson(value: unknown): unknown {
  try {
    const text = JSON.stringify(value) as string | undefined;
    return text === undefined ? NOT_WRITTEN : JSON.parse(text);
  } catch (error) {
    return error;
  }
}

function nest(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = { end: true };
  for (let i = 1; i < depth; i++) value = { a: value };
  return value;
}

class Point {
  x = 1;
}

const ACCEPTED: Array<[string, unknown]> = [
  ['null', null],
  ['booleans', [true, false]],
  ['strings, lone surrogates included', ['', 'a', '\ud800', 'x\udc00', '\udc00\ud800', '😀']],
  ['finite numbers', [0, 1, -1, 0.1, 5e-324, Number.MAX_VALUE, -Number.MAX_VALUE, 2 ** 53 + 2]],
  ['empty containers', [[], {}, [[]], { a: {} }]],
  ['odd keys', { '': 1, '1': 2, '01': 3, 'a b': 4, '\ud800': 5, constructor: 6, toJSON: 7 }],
  ['an own __proto__ key', JSON.parse('{"__proto__":{"polluted":true},"x":[{"__proto__":[]}]}')],
  ['frozen values', Object.freeze({ a: Object.freeze([1]) })],
  ['a shared (not cyclic) reference', ((o) => ({ a: o, b: [o, o] }))({ k: 1 })],
  ['a long array', Array.from({ length: 10_000 }, (_, i) => ({ i }))],
  ['the deepest accepted nesting', nest(MAX_JSON_DEPTH)],
];

const cyclic = (): unknown => {
  const root: Record<string, unknown> = { list: [{}] };
  (root.list as Array<Record<string, unknown>>)[0].up = root.list;
  return root;
};

/** Refused: the value, the path, a pattern of the problem, a pattern of the fix. */
const REFUSED: Array<[string, unknown, string, RegExp, RegExp]> = [
  ['a Date', { due: new Date(0) }, 'value.due', /^is a Date/, /toISOString/],
  ['NaN', { n: [1, NaN] }, 'value.n[1]', /^is NaN, which JSON cannot hold/, /null/],
  ['Infinity', { n: Infinity }, 'value.n', /^is Infinity/, /null/],
  ['-Infinity', { n: -Infinity }, 'value.n', /^is -Infinity/, /null/],
  ['-0', { n: -0 }, 'value.n', /^is -0, which JSON writes as 0/, /^store 0$/],
  ['undefined in an object', { x: undefined }, 'value.x', /drops with its key/, /omit the key/],
  ['undefined in an array', [undefined], 'value[0]', /writes as null in an array/, /null/],
  ['undefined at the top', undefined, 'value', /cannot write/, /null/],
  ['a function at the top', () => 1, 'value', /^is a function, which JSON cannot write/, /null/],
  ['a symbol at the top', Symbol('s'), 'value', /^is a symbol/, /null/],
  ['a function in an object', { f: () => 1 }, 'value.f', /^is a function/, /omit the key/],
  ['a Map', { m: new Map() }, 'value.m', /^is a Map, which JSON stores as \{\}/, /fromEntries/],
  ['a Set', { s: new Set() }, 'value.s', /^is a Set/, /\[\.\.\.set\]/],
  ['a RegExp', { r: /x/ }, 'value.r', /^is a RegExp/, /source/],
  ['an Error', { e: new TypeError('x') }, 'value.e', /^is an Error/, /message/],
  ['a BigInt', { b: 1n }, 'value.b', /^is a BigInt/, /as a string/],
  ['a cycle', cyclic(), 'value.list[0].up', /^refers back to value\.list \(a cycle\)/, /reference/],
  [
    'a self-cycle',
    ((o: Record<string, unknown>) => ((o.me = o), o))({}),
    'value.me',
    /refers back to value \(/,
    /./,
  ],
  ['a sparse array', [1, , 2], 'value[1]', /hole in a sparse array/, /null/], // eslint-disable-line no-sparse-arrays
  [
    'an array with a named property',
    Object.assign([1], { k: 1 }),
    'value',
    /extra property \("k"\)/,
    /only the elements/,
  ],
  ['a symbol key', { [Symbol('k')]: 1 }, 'value', /symbol key \(Symbol\(k\)\)/, /string key/],
  ['a class instance', { p: new Point() }, 'value.p', /^is an instance of Point/, /plain object/],
  ['binary data', { b: new Uint8Array(1) }, 'value.b', /binary data/, /base64/],
];

/**
 * Refused although JSON would read back something deep-equal: the rule asks for data properties only,
 * and a nesting that JSON.stringify still writes from a shallow stack (but not from any stack).
 */
const REFUSED_BY_RULE: Array<[string, unknown, string, RegExp]> = [
  [
    'a getter',
    Object.defineProperty({}, 'g', { get: () => 1, enumerable: true }),
    'value.g',
    /getter\/setter/,
  ],
  [
    'a non-enumerable key',
    Object.defineProperty({}, 'h', { value: 1 }),
    'value.h',
    /non-enumerable/,
  ],
  [
    'a getter element',
    Object.defineProperty([0], 0, { get: () => 1, enumerable: true }),
    'value[0]',
    /getter\/setter/,
  ],
  [
    'too deep a nesting',
    nest(MAX_JSON_DEPTH + 1),
    `value${'.a'.repeat(MAX_JSON_DEPTH)}`,
    /nested more than 512/,
  ],
];

describe('findNonJsonData', () => {
  it.each(ACCEPTED)('accepts %s, which JSON reads back deep-strict-equal', (_, value) => {
    expect(findNonJsonData(value, strict)).toBeUndefined();
    expect(findNonJsonData(value, lenient)).toBeUndefined();
    expect(isDeepStrictEqual(throughJson(value), value)).toBe(true);
  });

  it('accepts an object with a null prototype (JSON reads it back as an ordinary object)', () => {
    const bare = Object.assign(Object.create(null) as object, { a: 1 });
    expect(findNonJsonData({ bare }, strict)).toBeUndefined();
  });

  it.each(REFUSED)(
    'refuses %s, which JSON changes or cannot write',
    (_, value, path, problem, fix) => {
      const found = findNonJsonData(value, strict);
      expect(found?.path).toBe(path);
      expect(found?.problem).toMatch(problem);
      expect(found?.fix).toMatch(fix);
      expect(isDeepStrictEqual(throughJson(value), value)).toBe(false);
    },
  );

  it.each(REFUSED_BY_RULE)('refuses %s (data properties only)', (_, value, path, problem) => {
    expect(findNonJsonData(value, strict)).toMatchObject({
      path,
      problem: expect.stringMatching(problem) as string,
    });
  });

  it('names the path from the given root, quoting keys that are not identifiers', () => {
    expect(
      findNonJsonData({ 'a b': [{ 'é-x': [0, NaN] }] }, { allowToJSON: false, path: 'metadata' })
        ?.path,
    ).toBe('metadata["a b"][0]["é-x"][1]');
    expect(
      findNonJsonData({ tags: ['a', 'b', new Date()] }, { allowToJSON: false, path: 'metadata' })
        ?.path,
    ).toBe('metadata.tags[2]');
  });

  describe('allowToJSON', () => {
    it('accepts a valid Date and checks what other toJSON() methods return', () => {
      class Money {
        constructor(private readonly cents: number) {}
        toJSON(): unknown {
          return { cents: this.cents };
        }
      }
      class Broken {
        toJSON(): unknown {
          return { when: new Map() };
        }
      }
      expect(findNonJsonData({ at: new Date(0), price: new Money(5) }, lenient)).toBeUndefined();
      expect(findNonJsonData(new Date(0), lenient)).toBeUndefined();
      expect(findNonJsonData({ at: new Date(0) }, strict)?.problem).toMatch(/^is a Date/);
      expect(findNonJsonData({ x: [new Broken()] }, lenient)).toMatchObject({
        path: 'value.x[0].when',
        problem: expect.stringMatching(/^is a Map/) as string,
      });
      expect(findNonJsonData({ price: new Money(NaN) }, lenient)?.path).toBe('value.price.cents');
    });

    it('refuses an invalid Date and a toJSON() that returns undefined, at any level', () => {
      const nothing = { toJSON: (): undefined => undefined };
      expect(findNonJsonData({ d: new Date(NaN) }, lenient)).toMatchObject({
        path: 'value.d',
        problem: 'is an invalid Date, which JSON writes as null',
      });
      expect(findNonJsonData(nothing, lenient)?.problem).toMatch(
        /toJSON\(\) returns undefined, which JSON cannot write/,
      );
      expect(findNonJsonData({ k: nothing }, lenient)?.problem).toMatch(/drops with its key/);
      expect(findNonJsonData([nothing], lenient)?.problem).toMatch(/writes as null in an array/);
      expect(throughJson({ k: nothing })).toEqual({});
    });

    it('passes toJSON() its key as JSON.stringify does', () => {
      const keys: string[] = [];
      const probe = {
        toJSON(key: string): string {
          keys.push(key);
          return key;
        },
      };
      expect(findNonJsonData({ a: probe, list: [probe] }, lenient)).toBeUndefined();
      JSON.stringify({ a: probe, list: [probe] });
      expect(keys).toEqual(['a', '0', 'a', '0']);
    });
  });

  it('sees through a Proxy unless refuseProxies is set', () => {
    const proxy = new Proxy({ a: [1] }, {});
    expect(findNonJsonData({ p: proxy }, strict)).toBeUndefined();
    expect(
      findNonJsonData({ p: proxy }, { allowToJSON: false, refuseProxies: true })?.problem,
    ).toMatch(/^is a Proxy/);
    expect(findNonJsonData({ p: new Proxy({ n: -0 }, {}) }, strict)?.path).toBe('value.p.n');
  });
});

describe('copyJsonData', () => {
  it('returns a deeply frozen copy that keeps an own __proto__ key and drops a null prototype', () => {
    const input = JSON.parse('{"__proto__":{"a":[1]},"list":[{"k":1}]}') as Record<string, unknown>;
    const bare = Object.assign(Object.create(null) as object, { z: 1 });
    input.bare = bare;
    const result = copyJsonData(input, 'metadata');
    if (!('copy' in result)) throw new Error(result.found.problem);
    const copy = result.copy as Record<string, { list?: unknown }>;
    expect(copy).not.toBe(input);
    expect(copy.list).not.toBe(input.list);
    expect(Object.keys(copy)).toEqual(['__proto__', 'list', 'bare']);
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(copy, '__proto__')?.value).toEqual({ a: [1] });
    expect(Object.getPrototypeOf(copy.bare)).toBe(Object.prototype);
    expect(isDeepStrictEqual(copy, throughJson(input))).toBe(true);
    expect(Object.isFrozen(copy.list)).toBe(true);
    expect(Object.isFrozen((copy.list as object[])[0])).toBe(true);
  });

  it('refuses like findNonJsonData, and a Proxy', () => {
    expect(copyJsonData({ a: { b: -0 } }, 'context')).toEqual({
      found: { path: 'context.a.b', problem: 'is -0, which JSON writes as 0', fix: 'store 0' },
    });
    expect(copyJsonData({ p: new Proxy({}, {}) }, 'm')).toMatchObject({ found: { path: 'm.p' } });
  });
});
