/** Who wrote a message. */
export type MessageRole = 'user' | 'assistant' | 'system' | 'tool';

/** One message of a conversation. */
export interface Message {
  readonly id: string;
  readonly role: MessageRole;
  readonly content: string;
  readonly timestamp: Date;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** A conversation with its messages in order, as `MemoryManager` hands it out (read-only). */
export interface Conversation {
  readonly id: string;
  readonly title?: string;
  /** The session this conversation belongs to, if any. */
  readonly sessionId?: string;
  readonly messages: readonly Message[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/**
 * What `MemoryManager.create()` takes.
 * An optional field may be absent or `undefined`; `null`, another type, a missing required field or a
 * field not listed here is refused with `PERSISTENCE_INVALID_INPUT`, naming the field.
 */
export interface CreateConversationInput {
  /** @default a random UUID */
  id?: string;
  title?: string;
  sessionId?: string;
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
 * What `MemoryManager.addMessage()` takes.
 * An optional field may be absent or `undefined`; `null`, another type, a missing required field or a
 * field not listed here is refused with `PERSISTENCE_INVALID_INPUT`, naming the field.
 */
export interface AddMessageInput {
  /** @default a random UUID */
  id?: string;
  role: MessageRole;
  content: string;
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

export const MESSAGE_ROLES: readonly MessageRole[] = ['user', 'assistant', 'system', 'tool'];
