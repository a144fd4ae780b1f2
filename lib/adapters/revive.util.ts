/** Reads back a date written by JSON (an ISO string); throws on anything else. */
export function reviveDate(value: unknown, field: string): Date {
  const date = value instanceof Date ? value : new Date(value as string);
  if (typeof value !== 'string' && !(value instanceof Date)) {
    throw new TypeError(`"${field}" is not a date`);
  }
  if (Number.isNaN(date.getTime())) {
    throw new TypeError(`"${field}" is not a valid date`);
  }
  return date;
}

/** Reads back a plain object (metadata, context); `undefined` and `null` become `{}`. */
export function reviveRecord(value: unknown, field: string): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`"${field}" is not an object`);
  }
  return value as Record<string, unknown>;
}

/** Reads back a string field. */
export function reviveString(value: unknown, field: string): string {
  if (typeof value !== 'string') {
    throw new TypeError(`"${field}" is not a string`);
  }
  return value;
}

/** Deeply freezes a value made of plain objects and arrays, so a returned record cannot be changed. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) {
      deepFreeze((value as Record<string, unknown>)[key]);
    }
  }
  return value;
}

/** A private, frozen copy of caller-owned data (metadata, context). */
export function ownCopy(
  value: Record<string, unknown> | undefined,
): Readonly<Record<string, unknown>> {
  return deepFreeze(structuredClone(value ?? {}));
}
