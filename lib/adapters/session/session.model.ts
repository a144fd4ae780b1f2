/** Well-known session states; any other string is allowed too. */
export type SessionStatus = 'active' | 'paused' | 'completed' | 'failed' | (string & {});

/** A session, as `SessionManager` hands it out: read-only, replaced on every change. */
export interface Session {
  readonly id: string;
  readonly status: SessionStatus;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/**
 * What `SessionManager.create()` takes.
 * An optional field may be absent or `undefined`; `null`, another type, a missing required field or a
 * field not listed here is refused with `PERSISTENCE_INVALID_INPUT`, naming the field.
 */
export interface CreateSessionInput {
  /** @default a random UUID */
  id?: string;
  /** @default 'active' */
  status?: SessionStatus;
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
 * What `SessionManager.update()` takes; `metadata` replaces the old metadata.
 * An optional field may be absent or `undefined`; `null`, another type, a missing required field or a
 * field not listed here is refused with `PERSISTENCE_INVALID_INPUT`, naming the field.
 */
export interface UpdateSessionInput {
  status?: SessionStatus;
  /** Replaces the old metadata; same rule as {@link CreateSessionInput.metadata}. */
  metadata?: Record<string, unknown>;
}
