/** One entry of a focus chain: what the application is attending to. */
export interface Focus {
  readonly id: string;
  /** A kind of your choosing, e.g. `'file'`, `'task'`, `'symbol'`. */
  readonly type: string;
  /** What is in focus, e.g. a path or an id. */
  readonly target: string;
  readonly context: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
}

/** A stack of focus entries, the last one current, as `FocusManager` hands it out (read-only). */
export interface FocusChain {
  readonly id: string;
  readonly name?: string;
  readonly items: readonly Focus[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/**
 * What `FocusManager.create()` takes.
 * An optional field may be absent or `undefined`; `null`, another type, a missing required field or a
 * field not listed here is refused with `PERSISTENCE_INVALID_INPUT`, naming the field.
 */
export interface CreateFocusChainInput {
  /** @default a random UUID */
  id?: string;
  name?: string;
  /**
   * Plain JSON data only, so it comes back from a restart exactly: `null`, booleans, strings, finite
   * numbers other than `-0`, dense arrays (no extra properties), plain objects (prototype
   * `Object.prototype` or `null`; own enumerable string keys holding data properties; no symbol keys),
   * nested without cycles (at most 512 levels). Anything else — a `Date` (store `toISOString()`), `Map`,
   * `Set`, `RegExp`, `Error`, a class instance, `undefined` (omit the key or use `null`), `NaN`,
   * `±Infinity`, `-0`, a `BigInt` (store it as a string), a function, a cycle — is refused with
   * `PERSISTENCE_INVALID_INPUT` naming its path. An own `__proto__` key is kept as data. The object is
   * copied (a `null` prototype becomes `Object.prototype`, as JSON reads it back) and the copy frozen.
   * @default {}
   */
  metadata?: Record<string, unknown>;
}

/**
 * What `FocusManager.pushFocus()` takes.
 * An optional field may be absent or `undefined`; `null`, another type, a missing required field or a
 * field not listed here is refused with `PERSISTENCE_INVALID_INPUT`, naming the field.
 */
export interface PushFocusInput {
  /** @default a random UUID */
  id?: string;
  type: string;
  target: string;
  /**
   * Plain JSON data only, so it comes back from a restart exactly: `null`, booleans, strings, finite
   * numbers other than `-0`, dense arrays (no extra properties), plain objects (prototype
   * `Object.prototype` or `null`; own enumerable string keys holding data properties; no symbol keys),
   * nested without cycles (at most 512 levels). Anything else — a `Date` (store `toISOString()`), `Map`,
   * `Set`, `RegExp`, `Error`, a class instance, `undefined` (omit the key or use `null`), `NaN`,
   * `±Infinity`, `-0`, a `BigInt` (store it as a string), a function, a cycle — is refused with
   * `PERSISTENCE_INVALID_INPUT` naming its path. An own `__proto__` key is kept as data. The object is
   * copied (a `null` prototype becomes `Object.prototype`, as JSON reads it back) and the copy frozen.
   * @default {}
   */
  context?: Record<string, unknown>;
}
