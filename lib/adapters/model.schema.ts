import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { describe, invalidInput, reasonOf } from '../persistence.messages';
import { assertValidId } from '../storage/file-name.codec';
import { appendPath, copyJsonData, findNonJsonData, NonJsonData } from './json-data.util';
import { deepFreeze } from './revive.util';
import type { JsonPiece } from '../serializers/json-text.util';

/*
 * The schema of each built-in model (Session; Conversation + Message; FocusChain + Focus) drives both
 * directions, so they cannot disagree:
 *   - parseInput(): what a manager method is given (create, update, addMessage, …) — refused at the
 *     call with PERSISTENCE_INVALID_INPUT (PERSISTENCE_INVALID_ID for ids) naming the field path;
 *   - reviveModel(): what an adapter's revive() reads back from a file — a file that does not match
 *     is quarantined. Every value parseInput() accepts is stored in a record that JSON writes and
 *     reviveModel() reads back deep-strict-equal.
 *
 * Why no validation library (zod, valibot, ajv, …): the models are six small records of strings,
 * dates and two metadata objects; what is hard is the JSON-exactness rule of metadata/context (no -0,
 * NaN, cycles, getters, sparse arrays, non-plain prototypes, undefined values; a nested Date is an
 * error, not a coercion), which none of them checks and which needs the custom walk in
 * json-data.util.ts anyway. A library would add a runtime dependency to every user's install, a
 * second error format to translate into PersistenceError messages, and a second place where "valid"
 * is defined — for about a hundred lines of code here.
 */

/** What a field holds. */
export type FieldType =
  /** Any string (lone surrogates included: JSON escapes them). */
  | { readonly kind: 'string' }
  /** One of a fixed list of strings. */
  | { readonly kind: 'oneOf'; readonly values: readonly string[] }
  /** The record's own id: checked with assertValidId on input, equal to the file's id on revive. */
  | { readonly kind: 'ownId' }
  /** The id of an item inside a record (a message, a focus entry): assertValidId. */
  | { readonly kind: 'itemId' }
  /** Made by the manager; stored as an ISO string that must parse back to the same string. */
  | { readonly kind: 'date' }
  /** metadata/context: a plain object of plain JSON data (json-data.util.ts), stored frozen. */
  | { readonly kind: 'json' }
  /** Made by the manager: a list of records of another schema. */
  | { readonly kind: 'list'; readonly of: ModelSchema<object> };

/** One field of a model. */
export interface FieldSpec {
  readonly type: FieldType;
  /** A stored record may lack it (absent, never `null`). @default false */
  readonly optional?: boolean;
  /** Whether callers give it. Absent: the manager makes it, and a caller may not pass it. */
  readonly input?: 'required' | 'optional';
}

/** A model: its name (in messages) and its fields. */
export interface ModelSchema<T extends object> {
  readonly name: string;
  readonly fields: { readonly [K in keyof T]-?: FieldSpec };
}

export const STRING: FieldType = { kind: 'string' };
export const OWN_ID: FieldType = { kind: 'ownId' };
export const ITEM_ID: FieldType = { kind: 'itemId' };
export const DATE: FieldType = { kind: 'date' };
export const JSON_OBJECT: FieldType = { kind: 'json' };
export const oneOf = (values: readonly string[]): FieldType => ({ kind: 'oneOf', values });
export const listOf = <T extends object>(of: ModelSchema<T>): FieldType => ({
  kind: 'list',
  of,
});

/** What revival returns for every empty metadata/context: one frozen `{}` shared, nothing to make. */
const EMPTY_JSON_OBJECT: Readonly<Record<string, unknown>> = Object.freeze({});

/** An empty frozen object: the default metadata/context. */
export const emptyJsonObject = (): Readonly<Record<string, unknown>> => Object.freeze({});

/**
 * Checks what a manager method was given and returns the accepted fields (only those given), with
 * metadata/context copied and frozen. `fields` are the ones this method takes. An absent or
 * `undefined` optional field is absent; `null`, a wrong type, a missing required field or a field
 * the method does not take is refused with PERSISTENCE_INVALID_INPUT (ids: PERSISTENCE_INVALID_ID).
 *
 * @param where the method, for messages: `'SessionManager.create()'`
 */
export function parseInput<T extends object, K extends keyof T & string>(
  schema: ModelSchema<T>,
  input: unknown,
  where: string,
  fields: readonly K[],
): { [P in K]?: T[P] } {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw refused(
      where,
      'its argument',
      `is ${kindOf(input)}, not an object`,
      example(schema, fields),
    );
  }
  const given = input as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(fields as readonly string[]).includes(key) && given[key] !== undefined) {
      throw refused(
        where,
        appendPath('', key).replace(/^\./, ''),
        `is not a field it takes`,
        `pass only ${fields.join(', ')}`,
      );
    }
  }
  const out: Record<string, unknown> = {};
  for (const name of fields) {
    const spec = schema.fields[name];
    const value = given[name]; // read once: a getter may answer differently the next time
    if (value === undefined) {
      if (spec.input === 'required') {
        throw refused(where, name, 'is missing', `pass ${expected(spec.type)}`);
      }
      continue;
    }
    out[name] = acceptInput(spec.type, value, where, name);
  }
  return out as { [P in K]?: T[P] };
}

function acceptInput(type: FieldType, value: unknown, where: string, path: string): unknown {
  switch (type.kind) {
    case 'ownId':
    case 'itemId':
      assertValidId(value);
      return value;
    case 'string':
    case 'oneOf': {
      const problem = stringProblem(type, value);
      if (problem) throw refused(where, path, problem, `pass ${expected(type)}`);
      return value;
    }
    case 'json': {
      const wrong = notAnObject(value, path);
      if (wrong) throw refused(where, wrong.path, wrong.problem, wrong.fix);
      // One pass: each value is read once, checked, and copied (frozen) from what was checked.
      const result = copyJsonData(value, path);
      if ('found' in result) {
        throw refused(where, result.found.path, result.found.problem, result.found.fix);
      }
      return result.copy;
    }
    case 'date':
    case 'list':
      throw new Error(`${path} is made by the manager, not given`); // a schema bug, not input
  }
}

/**
 * Reads back one record of `schema` as parsed from a file, throwing (so the file is quarantined) when
 * it is not a record the manager could have made. Keys the schema does not know are ignored. The
 * result is deeply frozen.
 *
 * @param id the file's id, which the record's own id must equal
 * @param path where the record is, for messages
 */
export function reviveModel<T extends object>(
  schema: ModelSchema<T>,
  raw: unknown,
  id: string | undefined,
  path: string = schema.name,
): T {
  return reviveRecord(schema, raw, id, path, -1);
}

/*
 * Revival runs for every stored record at each load, so it allocates nothing it does not return:
 * the path of a field (`conversation.messages[3].createdAt`) is only built for an error message,
 * and dates are checked without formatting them back (see reviveDate).
 */

/** `path`, or `path[index]` for an item of a list (index ≥ 0). */
function pathOf(path: string, index: number): string {
  return index < 0 ? path : `${path}[${index}]`;
}

/** `path.name`, or `path[index].name`. */
function fieldPath(path: string, index: number, name: string): string {
  return `${pathOf(path, index)}.${name}`;
}

function reviveRecord<T extends object>(
  schema: ModelSchema<T>,
  raw: unknown,
  id: string | undefined,
  path: string,
  index: number,
): T {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new TypeError(`${pathOf(path, index)} is ${kindOf(raw)}, not a ${schema.name} object`);
  }
  const stored = raw as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  const fields = fieldList(schema);
  for (let f = 0; f < fields.length; f++) {
    const { name, type, optional, fast } = fields[f];
    const value = hasOwn(stored, name) ? stored[name] : undefined;
    if (value === undefined) {
      if (optional) continue;
      throw new TypeError(`${pathOf(path, index)}.${name} is missing`);
    }
    // The common, valid case of the simple kinds, inline; anything else (and every error) below.
    if (fast === FAST_STRING && typeof value === 'string') {
      out[name] = value;
      continue;
    }
    if (fast === FAST_DATE) {
      const date = reviveDate(value);
      if (date) {
        out[name] = date;
        continue;
      }
    }
    out[name] = reviveField(type, value, id, path, index, name);
  }
  return Object.freeze(out) as T;
}

/** One field of a schema, as revival walks it. */
interface SchemaField {
  readonly name: string;
  readonly type: FieldType;
  readonly optional: boolean;
  /** {@link FAST_STRING}, {@link FAST_DATE} or 0: which inline check revival tries first. */
  readonly fast: number;
}

const FAST_STRING = 1;
const FAST_DATE = 2;

const FIELD_LISTS = new WeakMap<ModelSchema<object>, readonly SchemaField[]>();

/**
 * The fields of `schema` as an array, in declaration order, made once per schema: revival walks it
 * for every message of every conversation, and an array is walked much sooner than `for…in`.
 */
function fieldList(schema: ModelSchema<object>): readonly SchemaField[] {
  let list = FIELD_LISTS.get(schema);
  if (!list) {
    const fields = schema.fields as Readonly<Record<string, FieldSpec>>;
    list = Object.keys(fields).map((name) => ({
      name,
      type: fields[name].type,
      optional: fields[name].optional === true,
      fast:
        fields[name].type.kind === 'string'
          ? FAST_STRING
          : fields[name].type.kind === 'date'
            ? FAST_DATE
            : 0,
    }));
    FIELD_LISTS.set(schema, list);
  }
  return list;
}

const hasOwn = (object: object, key: string): boolean =>
  Object.prototype.hasOwnProperty.call(object, key);

function reviveField(
  type: FieldType,
  value: unknown,
  id: string | undefined,
  path: string,
  index: number,
  name: string,
): unknown {
  switch (type.kind) {
    case 'ownId':
      if (value !== id) {
        throw new TypeError(
          `${fieldPath(path, index, name)} ${describe(value)} is not the file's id ${describe(id)}`,
        );
      }
      return value;
    case 'itemId':
      try {
        assertValidId(value);
      } catch (error) {
        throw new TypeError(`${fieldPath(path, index, name)}: ${reasonOf(error)}`);
      }
      return value;
    case 'string':
    case 'oneOf': {
      const problem = stringProblem(type, value);
      if (problem) throw new TypeError(`${fieldPath(path, index, name)} ${problem}`);
      return value;
    }
    case 'date': {
      const date = reviveDate(value);
      if (!date) {
        throw new TypeError(
          `${fieldPath(path, index, name)} is ${describe(value)}, not a date in ISO form`,
        );
      }
      return date;
    }
    case 'json': {
      // Most metadata is `{}`: nothing to check, nothing to walk.
      if (isEmptyPlainObject(value)) return EMPTY_JSON_OBJECT;
      const found =
        notAnObject(value, fieldPath(path, index, name)) ??
        findNonJsonData(value, { allowToJSON: false, path: fieldPath(path, index, name) });
      if (found) throw new TypeError(`${found.path} ${found.problem}`);
      return deepFreeze(value);
    }
    case 'list': {
      if (!Array.isArray(value)) {
        throw new TypeError(`${fieldPath(path, index, name)} is ${kindOf(value)}, not an array`);
      }
      const items = new Array<unknown>(value.length);
      const listPath = fieldPath(path, index, name);
      for (let i = 0; i < value.length; i++) {
        items[i] = reviveRecord(type.of, value[i], undefined, listPath, i);
      }
      return Object.freeze(items);
    }
  }
}

/** `YYYY-MM-DDTHH:mm:ss.sssZ`, the form `Date.prototype.toISOString()` gives for years 0–9999. */
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * The Date whose `toISOString()` is exactly `value`, or `undefined`. The common form (years
 * 100–9999) is read field by field and range-checked, without parsing or formatting a date string
 * (most of the cost); anything else takes the exact, slower check.
 */
export function reviveDate(value: unknown): Date | undefined {
  if (typeof value !== 'string') return undefined;
  if (value.length === 24 && ISO_DATE.test(value)) {
    const year = twoDigits(value, 0) * 100 + twoDigits(value, 2);
    if (year >= 100) {
      const month = twoDigits(value, 5);
      const day = twoDigits(value, 8);
      const hours = twoDigits(value, 11);
      const minutes = twoDigits(value, 14);
      const seconds = twoDigits(value, 17);
      const ms = twoDigits(value, 20) * 10 + value.charCodeAt(22) - 48;
      if (
        month < 1 ||
        month > 12 ||
        day < 1 ||
        day > daysIn(year, month) ||
        hours > 23 ||
        minutes > 59 ||
        seconds > 59
      ) {
        return undefined;
      }
      return new Date(Date.UTC(year, month - 1, day, hours, minutes, seconds, ms));
    }
  }
  const date = new Date(value);
  return Number.isNaN(date.getTime()) || date.toISOString() !== value ? undefined : date;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
}

function twoDigits(text: string, at: number): number {
  return (text.charCodeAt(at) - 48) * 10 + text.charCodeAt(at + 1) - 48;
}

function stringProblem(type: FieldType, value: unknown): string | undefined {
  if (typeof value !== 'string') return `is ${kindOf(value)}, not a string`;
  if (type.kind === 'oneOf' && !type.values.includes(value)) {
    return `is ${describe(value)}, not one of ${type.values.join(', ')}`;
  }
  return undefined;
}

/** An object with no own enumerable key whose prototype is `Object.prototype`, as JSON reads `{}`. */
function isEmptyPlainObject(value: unknown): value is object {
  if (
    typeof value !== 'object' ||
    value === null ||
    Object.getPrototypeOf(value) !== Object.prototype
  ) {
    return false;
  }
  // Every own key, enumerable or not, string or symbol.
  return Reflect.ownKeys(value).length === 0;
}

/** metadata/context are objects (of plain JSON data, checked next). */
function notAnObject(value: unknown, path: string): NonJsonData | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return {
      path,
      problem: `is ${kindOf(value)}, not an object`,
      fix:
        value === null
          ? 'omit it, or pass {}'
          : Array.isArray(value)
            ? 'wrap the array in an object, e.g. { items: [...] }'
            : 'pass an object of JSON data, e.g. { note: "…" }',
    };
  }
  return undefined;
}

function expected(type: FieldType): string {
  switch (type.kind) {
    case 'oneOf':
      return `one of ${type.values.join(', ')}`;
    case 'json':
      return 'an object of JSON data';
    default:
      return 'a string';
  }
}

function example(schema: ModelSchema<object>, fields: readonly string[]): string {
  const required = fields.filter(
    (name) => (schema.fields as Record<string, FieldSpec>)[name].input === 'required',
  );
  return required.length > 0
    ? `pass an object with ${required.join(' and ')}`
    : `pass an object with any of ${fields.join(', ')}, or nothing`;
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'object':
      return 'an object';
    case 'undefined':
      return 'undefined';
    case 'string':
      return `a string (${describe(value)})`;
    default:
      return `a ${typeof value}`;
  }
}

function refused(where: string, path: string, problem: string, fix: string): PersistenceError {
  return new PersistenceError(
    PersistenceErrorCode.InvalidInput,
    invalidInput(where, path, problem, fix),
  );
}

/**
 * How a built-in adapter hands the writer its records in the form JSON writes them (see
 * {@link storedForm}). Internal: symbol-keyed so it is no part of the public adapter contract.
 */
export const STORED_FORM = Symbol('nestjs-persistence.stored-form');

/**
 * How a built-in adapter writes a record straight to JSON text (the envelope's `data`), reusing text
 * it wrote before (see `RecordJsonWriter`). Internal, like {@link STORED_FORM}.
 */
export const STORED_JSON = Symbol('nestjs-persistence.stored-json');

/** An adapter with {@link STORED_FORM}, and maybe {@link STORED_JSON}. */
interface WithStoredForm {
  [STORED_FORM](record: unknown): unknown;
  [STORED_JSON]?(id: string, record: unknown, indent: number): JsonPiece[];
}

/** A built-in adapter's faster ways to write its records, for the built-in serializers. */
export interface StoredForms {
  /** The record as JSON writes it (see {@link storedForm}). */
  form: (record: unknown) => unknown;
  /** The record's JSON text, as `JSON.stringify` gives it for the envelope's `data` with `indent`. */
  json?: (id: string, record: unknown, indent: number) => JsonPiece[];
}

/** The adapter's stored forms, when it has them (the built-in adapters). */
export function storedFormsOf(adapter: object): StoredForms | undefined {
  const withForm = adapter as Partial<WithStoredForm>;
  const form = withForm[STORED_FORM];
  if (typeof form !== 'function') return undefined;
  const json = withForm[STORED_JSON];
  return {
    form: (record) => form.call(adapter, record),
    ...(typeof json === 'function'
      ? {
          json: (id: string, record: unknown, indent: number) =>
            json.call(adapter, id, record, indent),
        }
      : {}),
  };
}

/**
 * A record of `schema` as JSON writes it: each date as the string its `toJSON()` gives, each list
 * mapped, every other value shared. Same keys in the same order, so `JSON.stringify` of it gives
 * exactly the bytes of `JSON.stringify(record)` (indented or not), about 15% sooner: a `Date` is
 * the one object that makes JSON.stringify call back into JavaScript (its `toJSON`), for every
 * message of every conversation.
 */
export function storedForm<T extends object>(schema: ModelSchema<T>, record: T): unknown {
  const fields = schema.fields as Readonly<Record<string, FieldSpec>>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(record)) {
    out[key] = storedValue(fields[key]?.type, (record as Record<string, unknown>)[key]);
  }
  return out;
}

/** One field's value as JSON writes it (see {@link storedForm}); `type` undefined: as it is. */
export function storedValue(type: FieldType | undefined, value: unknown): unknown {
  if (type?.kind === 'date' && value instanceof Date) {
    return Number.isFinite(value.getTime()) ? isoString(value) : null;
  }
  if (type?.kind === 'list' && Array.isArray(value)) {
    const list = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) list[i] = storedItem(type.of, value[i]);
    return list;
  }
  return value;
}

/** An item of a list of `schema` records as JSON writes it. */
export function storedItem(schema: ModelSchema<object>, item: unknown): unknown {
  return typeof item === 'object' && item !== null && !Array.isArray(item)
    ? storedForm(schema, item)
    : item;
}

const MS_PER_DAY = 86_400_000;
const TWO_DIGITS = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, '0'));
const THREE_DIGITS = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));
/** The day of the last date formatted, and its `toISOString()` up to and including the `T`. */
let lastDay = Number.NaN;
let lastDayPrefix = '';

/**
 * `date.toISOString()` for a valid date, about five times sooner: the date part comes from
 * `toISOString()` once per day (the messages of a conversation mostly share one), the time of day
 * from integer arithmetic and tables. A save formats every timestamp of every changed record.
 */
export function isoString(date: Date): string {
  const time = date.getTime();
  const day = Math.floor(time / MS_PER_DAY);
  if (day !== lastDay) {
    const full = date.toISOString();
    lastDayPrefix = full.slice(0, full.indexOf('T') + 1);
    lastDay = day;
  }
  let ms = time - day * MS_PER_DAY;
  const hours = Math.floor(ms / 3_600_000);
  ms -= hours * 3_600_000;
  const minutes = Math.floor(ms / 60_000);
  ms -= minutes * 60_000;
  const seconds = Math.floor(ms / 1000);
  ms -= seconds * 1000;
  return `${lastDayPrefix}${TWO_DIGITS[hours]}:${TWO_DIGITS[minutes]}:${TWO_DIGITS[seconds]}.${THREE_DIGITS[ms]}Z`;
}
