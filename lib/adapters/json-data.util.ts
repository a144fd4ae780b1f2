import { types } from 'node:util';

/*
 * "Plain JSON data": the values JSON.stringify writes and JSON.parse reads back deep-strict-equal.
 *   - null, booleans, strings (any string: lone surrogates are written as \u escapes and read back),
 *     finite numbers other than -0 (JSON writes -0 as 0, NaN and ±Infinity as null);
 *   - arrays: dense, prototype Array.prototype, no property besides the indices and `length`;
 *   - plain objects: prototype Object.prototype or null (null is read back as Object.prototype: JSON
 *     has no prototypes), own enumerable string keys holding data properties (no getters), no symbol
 *     keys; an own key named "__proto__" is ordinary data (JSON.parse and structuredClone both keep
 *     it as an own property);
 *   - nested without cycles, at most MAX_JSON_DEPTH levels (JSON.stringify and structuredClone
 *     overflow the stack a few thousand levels down, depending on the caller's stack).
 * Everything else is changed or dropped by JSON: Date → string, Map/Set/RegExp/Error → {}, undefined
 * and functions → dropped (null in arrays), BigInt and cycles → JSON.stringify throws.
 *
 * The walk allocates nothing per node besides the key list and the property descriptors it must
 * inspect (a getter or a non-enumerable property can only be told from its descriptor); the path
 * string is only built when something is found. Cycle detection scans the current ancestors (the
 * depth, usually a handful). On a 10,000-message conversation it costs about two JSON.stringify's.
 */

/** Deepest nesting accepted (the value itself is level 0). */
export const MAX_JSON_DEPTH = 512;

/** What is wrong with a value, and where. */
export interface NonJsonData {
  /** Where, from the root name: `metadata.tags[2]`, `value["a b"].x`. */
  readonly path: string;
  /** Continues the path: `is a Date, which JSON stores as a string`. */
  readonly problem: string;
  /** What to store instead: `store date.toISOString() instead`. */
  readonly fix: string;
}

/** Options of {@link findNonJsonData}. */
export interface FindNonJsonDataOptions {
  /**
   * Accept objects with a `toJSON()` method (Date, …) and check what it returns instead, as
   * `JSON.stringify` would. For adapters whose `revive()` rebuilds such values. An invalid Date (which
   * JSON writes as null) and a `toJSON()` that returns `undefined` are still refused.
   */
  readonly allowToJSON: boolean;
  /** Name of the value at the start of the path. @default 'value' */
  readonly path?: string;
  /**
   * Refuse Proxy objects (whose traps could answer differently the next time they are read).
   * @default false
   */
  readonly refuseProxies?: boolean;
}

/**
 * The first part of `value` that JSON cannot carry exactly, or `undefined` when it is plain JSON data
 * (see the rule above). Also refuses a top-level value that `JSON.stringify` turns into `undefined`.
 * Never throws unless a `toJSON()` or a Proxy trap does.
 */
export function findNonJsonData(
  value: unknown,
  options: FindNonJsonDataOptions,
): NonJsonData | undefined {
  const walker = new JsonDataWalker(
    options.path ?? 'value',
    options.allowToJSON,
    options.refuseProxies === true,
    false,
  );
  return walker.walk(value, '', 0, options.allowToJSON) === FAIL ? walker.failure() : undefined;
}

/**
 * Checks `value` like {@link findNonJsonData} (no `toJSON()`, Proxies refused) and returns a deep,
 * frozen copy built from the values it checked, each read once, with this realm's prototypes (an
 * object with a `null` prototype is copied as an ordinary object, as JSON reads it back).
 */
export function copyJsonData(
  value: unknown,
  path: string,
): { readonly copy: unknown } | { readonly found: NonJsonData } {
  const walker = new JsonDataWalker(path, false, true, true);
  const copy = walker.walk(value, '', 0, false);
  return copy === FAIL ? { found: walker.failure() } : { copy };
}

/** Appends one key to a path: `.name`, `["odd key"]` or `[3]`. */
export function appendPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
// eslint-disable-next-line @typescript-eslint/unbound-method -- compared by identity, never called unbound
const DATE_TO_JSON = Date.prototype.toJSON;

/*
 * Another realm's Object.prototype or Array.prototype (data made by structuredClone under a test
 * runner's vm context, or by a vm/worker) is as plain as this realm's: JSON writes it the same way.
 */
function isObjectPrototype(prototype: object): boolean {
  return (
    Object.getPrototypeOf(prototype) === null &&
    Object.prototype.hasOwnProperty.call(prototype, 'hasOwnProperty') &&
    (prototype as { constructor?: { name?: string } }).constructor?.name === 'Object'
  );
}

function isArrayPrototype(prototype: object | null): boolean {
  return prototype !== null && Array.isArray(prototype);
}

/** Objects of a built-in kind whose content JSON.stringify drops or changes. */
function isBuiltInKind(value: object): boolean {
  return (
    types.isMap(value) ||
    types.isSet(value) ||
    types.isWeakMap(value) ||
    types.isWeakSet(value) ||
    types.isRegExp(value) ||
    types.isNativeError(value) ||
    value instanceof Error ||
    types.isAnyArrayBuffer(value) ||
    ArrayBuffer.isView(value) ||
    types.isPromise(value) ||
    types.isBoxedPrimitive(value)
  );
}
/** Returned by the walk when it found a problem (`undefined` is a value it may return). */
const FAIL: unique symbol = Symbol('fail');
type Walked = unknown;

class JsonDataWalker {
  /** Keys from the root to the failure (pushed on the way down, left in place on failure). */
  private readonly keys: Array<string | number> = [];
  /** The objects and arrays being walked, root first (cycle detection). */
  private readonly ancestors: object[] = [];
  private problem = '';
  private fix = '';

  /**
   * @param copying return a frozen copy of what was walked (else the value itself, no allocation)
   */
  constructor(
    private readonly root: string,
    private readonly allowToJSON: boolean,
    private readonly refuseProxies: boolean,
    private readonly copying: boolean,
  ) {}

  failure(): NonJsonData {
    return { path: this.path(this.keys.length), problem: this.problem, fix: this.fix };
  }

  /** The path of the first `count` keys (only built on failure). */
  private path(count: number): string {
    let path = this.root;
    for (let i = 0; i < count; i++) path = appendPath(path, this.keys[i]);
    return path;
  }

  /**
   * The value (or its copy), or FAIL.
   * @param key the key of `value` in its parent: a string in an object, a number in an array, ''
   *   at the top.
   */
  walk(value: unknown, key: string | number, depth: number, applyToJSON: boolean): Walked {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value;
      case 'number':
        if (value !== value || value === Infinity || value === -Infinity) {
          return this.fail(
            `is ${value}, which JSON cannot hold (it writes null)`,
            'store null, or a string such as "NaN"',
          );
        }
        if (value === 0 && 1 / value < 0) {
          return this.fail('is -0, which JSON writes as 0', 'store 0');
        }
        return value;
      case 'bigint':
        if (applyToJSON && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
          return this.replace(value, key, depth);
        }
        return this.fail(
          'is a BigInt, which JSON cannot hold',
          'store it as a string (value.toString())',
        );
      case 'undefined':
        return this.dropped('undefined', key, depth);
      case 'function':
        return this.dropped('a function', key, depth);
      case 'symbol':
        return this.dropped('a symbol', key, depth);
      default:
        return value === null ? null : this.object(value as object, key, depth, applyToJSON);
    }
  }

  private object(value: object, key: string | number, depth: number, applyToJSON: boolean): Walked {
    if (this.refuseProxies && types.isProxy(value)) {
      return this.fail(
        'is a Proxy, which could answer differently when it is read again',
        'pass a plain copy of its data',
      );
    }
    if (applyToJSON) {
      const toJSON = (value as { toJSON?: unknown }).toJSON;
      if (toJSON === DATE_TO_JSON && types.isDate(value)) {
        return Number.isNaN(value.getTime())
          ? this.fail('is an invalid Date, which JSON writes as null', 'store a valid date or null')
          : value;
      }
      if (typeof toJSON === 'function') {
        return this.replace(value, key, depth);
      }
    }
    if (depth >= MAX_JSON_DEPTH) {
      return this.fail(
        `is nested more than ${MAX_JSON_DEPTH} levels deep, too deep to write and read back safely`,
        'store it flatter',
      );
    }
    if (this.ancestors.includes(value)) {
      return this.fail(
        `refers back to ${this.path(this.ancestors.indexOf(value))} (a cycle), which JSON cannot hold`,
        'store the cycle as a reference (an id or a path string)',
      );
    }
    const prototype = Object.getPrototypeOf(value) as object | null;
    if (Array.isArray(value)) {
      return prototype === Array.prototype || isArrayPrototype(prototype)
        ? this.array(value as unknown[], depth)
        : this.fail(...nonPlain(value));
    }
    if (
      prototype !== Object.prototype &&
      prototype !== null &&
      !isObjectPrototype(prototype) &&
      // With a revive() (allowToJSON), an instance of the application's own class is written as its
      // own fields, which revive() turns back into the class; built-in kinds whose content JSON
      // drops (Map, Set, RegExp, Error, binary, boxed primitives, promises) are refused even then.
      (!this.allowToJSON || isBuiltInKind(value))
    ) {
      return this.fail(...nonPlain(value));
    }
    this.ancestors.push(value);
    const copy: Record<string, unknown> | undefined = this.copying ? {} : undefined;
    for (const name of Reflect.ownKeys(value)) {
      if (typeof name === 'symbol') {
        return this.fail(
          `has a symbol key (${String(name)}), which JSON drops`,
          'use a string key, or keep it out of the data',
        );
      }
      const descriptor = Object.getOwnPropertyDescriptor(value, name);
      if (descriptor === undefined) continue; // a Proxy may list keys it does not have
      this.keys.push(name);
      if (!descriptor.enumerable) {
        return this.fail('is a non-enumerable property, which JSON drops', 'make it enumerable');
      }
      if (!('value' in descriptor)) {
        return this.fail(
          'is a getter/setter property, which JSON replaces by the value it returns once',
          'store the value itself',
        );
      }
      const walked = this.walk(descriptor.value, name, depth + 1, this.allowToJSON);
      if (walked === FAIL) return FAIL;
      if (copy !== undefined) {
        if (name === '__proto__') {
          // An own "__proto__" key is data (as JSON.parse makes it); assigning would set the prototype.
          Object.defineProperty(copy, name, {
            value: walked,
            writable: true,
            enumerable: true,
            configurable: true,
          });
        } else {
          copy[name] = walked;
        }
      }
      this.keys.pop();
    }
    this.ancestors.pop();
    return copy === undefined ? value : Object.freeze(copy);
  }

  private array(value: unknown[], depth: number): Walked {
    this.ancestors.push(value);
    const length = value.length;
    const copy: unknown[] | undefined = this.copying ? [] : undefined;
    for (let index = 0; index < length; index++) {
      const descriptor = Object.getOwnPropertyDescriptor(value, index);
      this.keys.push(index);
      if (descriptor === undefined) {
        return this.fail('is a hole in a sparse array, which JSON writes as null', 'store null');
      }
      if (!descriptor.enumerable || !('value' in descriptor)) {
        return this.fail(
          'is a non-enumerable or getter/setter element, which JSON cannot keep',
          'store the value itself',
        );
      }
      const walked = this.walk(descriptor.value, index, depth + 1, this.allowToJSON);
      if (walked === FAIL) return FAIL;
      copy?.push(walked);
      this.keys.pop();
    }
    const names = Reflect.ownKeys(value);
    if (names.length !== length + 1) {
      // Every index is present, so some other key is there too.
      const extra = names.find(
        (name) => name !== 'length' && (typeof name === 'symbol' || !isIndex(name, length)),
      );
      return this.fail(
        `is an array with an extra property (${typeof extra === 'symbol' ? String(extra) : JSON.stringify(extra)}), which JSON drops`,
        'keep only the elements, or use an object',
      );
    }
    this.ancestors.pop();
    return copy === undefined ? value : Object.freeze(copy);
  }

  /** Checks what `toJSON()` returns, as `JSON.stringify` writes it in place of `value`. */
  private replace(value: unknown, key: string | number, depth: number): Walked {
    const toJSON = (value as { toJSON: (key: string) => unknown }).toJSON;
    const replaced = toJSON.call(value, typeof key === 'number' ? String(key) : key);
    if (replaced === undefined) {
      return this.dropped('an object whose toJSON() returns undefined', key, depth);
    }
    return this.walk(replaced, key, depth, false);
  }

  /** A value JSON.stringify leaves out: the key is dropped, an array element becomes null. */
  private dropped(what: string, key: string | number, depth: number): typeof FAIL {
    if (depth === 0) {
      return this.fail(`is ${what}, which JSON cannot write`, 'store null, or a JSON value');
    }
    if (typeof key === 'number') {
      return this.fail(`is ${what}, which JSON writes as null in an array`, 'store null');
    }
    return this.fail(
      `is ${what}, which JSON drops with its key`,
      what === 'undefined' ? 'omit the key, or store null' : 'omit the key, or store JSON data',
    );
  }

  private fail(problem: string, fix: string): typeof FAIL {
    this.problem = problem;
    this.fix = fix;
    return FAIL;
  }
}

function isIndex(name: string, length: number): boolean {
  const index = Number(name);
  return Number.isInteger(index) && index >= 0 && index < length && String(index) === name;
}

/** Problem and fix for an object that is not a plain object or array (only called on failure). */
function nonPlain(value: object): [string, string] {
  if (types.isDate(value)) {
    return ['is a Date, which JSON stores as a string', 'store date.toISOString() instead'];
  }
  if (types.isMap(value)) {
    return [
      'is a Map, which JSON stores as {}',
      'convert it to an object (Object.fromEntries(map)) or an array of [key, value] pairs',
    ];
  }
  if (types.isSet(value)) {
    return ['is a Set, which JSON stores as {}', 'convert it to an array ([...set])'];
  }
  if (types.isRegExp(value)) {
    return [
      'is a RegExp, which JSON stores as {}',
      'store regexp.source and regexp.flags as strings',
    ];
  }
  if (types.isNativeError(value) || value instanceof Error) {
    return [
      'is an Error, which JSON stores as {}',
      'store its name and message (and stack) as strings',
    ];
  }
  if (types.isTypedArray(value) || types.isAnyArrayBuffer(value) || types.isDataView(value)) {
    return [
      'is binary data (a Buffer, typed array or ArrayBuffer), which JSON does not keep',
      'store it as a base64 string or an array of numbers',
    ];
  }
  if (types.isBoxedPrimitive(value)) {
    return ['is a boxed primitive (new String/Number/Boolean)', 'store the primitive value'];
  }
  if (types.isPromise(value)) {
    return ['is a Promise, which JSON stores as {}', 'await it and store its result'];
  }
  if (Array.isArray(value)) {
    return [
      'is an instance of an Array subclass, which JSON reads back as a plain array',
      'store a plain array (Array.from(value))',
    ];
  }
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } })?.constructor
    ?.name;
  return [
    `is an instance of ${typeof name === 'string' && name ? name : 'a class'}, which JSON reads back as a plain object without its class`,
    'store a plain object ({ ...value }) or convert it to JSON data',
  ];
}
