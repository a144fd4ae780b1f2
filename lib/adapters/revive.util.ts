/**
 * Deeply freezes a value made of plain objects and arrays, so a returned record cannot be changed.
 * Own keys only (`Object.keys`), so an own `__proto__` key is frozen as the data it is.
 */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) {
      deepFreeze((value as Record<string, unknown>)[key]);
    }
  }
  return value;
}
