import { Serializer } from '../interfaces/serializer.interface';
import { loadMsgpack } from './msgpack.loader';

/**
 * First bytes of every msgpack item file: 0x89 (never the first byte of UTF-8 text, so never JSON),
 * then "NPM" ("nestjs-persistence msgpack"; the encrypted header starts with "N", gzip with 0x1f).
 * The fifth byte tells the body: {@link BODY_MSGPACK} or {@link BODY_JSON}.
 */
export const MSGPACK_MAGIC = Buffer.from([0x89, 0x4e, 0x50, 0x4d]);
/** Body kind: MessagePack. */
const BODY_MSGPACK = 0x01;
/** Body kind: JSON text (UTF-8), for a value MessagePack cannot carry exactly. */
const BODY_JSON = 0x02;
const HEADER_BYTES = MSGPACK_MAGIC.length + 1;

/** True when `data` starts with the msgpack item header. */
export function isMsgpack(data: Uint8Array): boolean {
  return (
    data.length >= HEADER_BYTES &&
    MSGPACK_MAGIC.every((byte, i) => data[i] === byte) &&
    (data[MSGPACK_MAGIC.length] === BODY_MSGPACK || data[MSGPACK_MAGIC.length] === BODY_JSON)
  );
}

/** Deepest nesting written as MessagePack; deeper values go through JSON (see below). */
const MAX_DEPTH = 512;

/** Thrown inside the walk (made once: never seen outside): this value is written as JSON text. */
const AS_JSON = new Error('written as JSON text');

/**
 * MessagePack (msgpackr, an optional peer dependency loaded at first use) behind a 5-byte header.
 *
 * What comes back is exactly what JSON would give back (the store's values are JSON data): before
 * packing, values are turned into their JSON form (`toJSON()`, so a Date becomes its ISO string;
 * `undefined` and functions dropped, or `null` in arrays; non-finite numbers `null`; -0 → 0). A value
 * MessagePack cannot carry exactly (a string or key with a lone surrogate, which UTF-8 cannot hold; a
 * `__proto__` key; a class instance; very deep nesting) makes that one item's body its JSON text,
 * marked as such by the header's fifth byte. Reading accepts only JSON data (no binary, no extension
 * types, no NaN), so a crafted file cannot hand an adapter anything JSON could not.
 */
export class MsgpackSerializer implements Serializer {
  readonly format = 'msgpack';
  readonly extension = '.msgpack';

  constructor() {
    loadMsgpack(); // fail at configuration time when the package is missing
  }

  serialize(value: unknown): Buffer {
    const msgpack = loadMsgpack();
    let body: unknown;
    try {
      body = jsonView(value, '', 0);
    } catch (error) {
      if (error !== AS_JSON) throw error;
      const json = JSON.stringify(value) as string | undefined;
      if (json === undefined) throw new TypeError('the value has no JSON form');
      return Buffer.concat([MSGPACK_MAGIC, Buffer.from([BODY_JSON]), Buffer.from(json, 'utf8')]);
    }
    return Buffer.concat([MSGPACK_MAGIC, Buffer.from([BODY_MSGPACK]), msgpack.pack(body)]);
  }

  deserialize(data: Buffer): unknown {
    if (!isMsgpack(data)) {
      throw new Error('it does not start with the msgpack item header');
    }
    const body = data.subarray(HEADER_BYTES);
    if (data[MSGPACK_MAGIC.length] === BODY_JSON) {
      return JSON.parse(body.toString('utf8'));
    }
    const value = loadMsgpack().unpack(body);
    if (!isJsonData(value, 0)) {
      throw new Error(
        'it holds MessagePack values that are not JSON data (binary, extension, NaN)',
      );
    }
    return value;
  }
}

/** `value` as JSON.stringify sees it (plain data, copied only where it differs); throws AS_JSON. */
function jsonView(value: unknown, key: string, depth: number): unknown {
  switch (typeof value) {
    case 'string':
      if (!(value as string & { isWellFormed(): boolean }).isWellFormed()) throw AS_JSON;
      return value;
    case 'number':
      return Number.isFinite(value) ? (value === 0 ? 0 : value) : null;
    case 'boolean':
      return value;
    case 'object':
      break;
    default:
      throw AS_JSON; // undefined, function, symbol at the top or through toJSON, bigint
  }
  if (value === null) return null;
  if (depth >= MAX_DEPTH) throw AS_JSON;
  const object = value as Record<string, unknown> & { toJSON?: unknown };
  if (typeof object.toJSON === 'function') {
    return jsonView((object.toJSON as (key: string) => unknown)(key), key, depth);
  }
  if (Array.isArray(object)) {
    if (Object.getPrototypeOf(object) !== Array.prototype) throw AS_JSON;
    let copy: unknown[] | undefined;
    for (let i = 0; i < object.length; i++) {
      const item: unknown = object[i];
      const kind = typeof item;
      const view =
        kind === 'undefined' || kind === 'function' || kind === 'symbol'
          ? null
          : jsonView(item, String(i), depth + 1);
      if (view !== item && !copy) copy = object.slice(0, i);
      if (copy) copy.push(view);
    }
    return copy ?? object;
  }
  const proto: unknown = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) throw AS_JSON;
  const keys = Object.keys(object);
  let copy: Record<string, unknown> | undefined;
  for (let i = 0; i < keys.length; i++) {
    const name = keys[i];
    if (name === '__proto__' || !(name as string & { isWellFormed(): boolean }).isWellFormed()) {
      throw AS_JSON;
    }
    const item = object[name];
    const kind = typeof item;
    const dropped = kind === 'undefined' || kind === 'function' || kind === 'symbol';
    const view = dropped ? undefined : jsonView(item, name, depth + 1);
    if ((dropped || view !== item || proto === null) && !copy) {
      copy = {};
      for (let j = 0; j < i; j++) copy[keys[j]] = object[keys[j]];
    }
    if (copy && !dropped) copy[name] = view;
  }
  return copy ?? object;
}

/** True for plain JSON data as msgpackr reads it: no binary, Date, undefined, NaN or ±Infinity. */
function isJsonData(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (depth >= MAX_DEPTH) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (!isJsonData(value[i], depth + 1)) return false;
    }
    return true;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return false;
  for (const key in value) {
    if (!isJsonData((value as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}
