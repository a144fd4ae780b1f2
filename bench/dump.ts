/*
 * The normalized dump every reload is checked against: per collection, the item count and a SHA-256 of
 * the canonical JSON (sorted keys) of every item, sorted by id. Two dumps are equal exactly when the
 * two states are deep-equal as JSON data.
 */
import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every level (Dates through toJSON, as JSON.stringify does), so two
 * values that load to the same data give the same string whatever their key order.
 */
export function canonicalJson(value: unknown): string {
  const normalize = (v: unknown): unknown => {
    if (v !== null && typeof v === 'object') {
      const withJson = v as { toJSON?: () => unknown };
      if (typeof withJson.toJSON === 'function') return normalize(withJson.toJSON());
      if (Array.isArray(v)) return v.map(normalize);
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(v).sort()) {
        const field = (v as Record<string, unknown>)[key];
        if (field !== undefined) out[key] = normalize(field);
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(normalize(value));
}

/** Per collection: item count and SHA-256 of the canonical JSON of every item, sorted by id. */
export type Dump = Record<string, { count: number; sha256: string }>;

/** The normalized dump of a set of items (what a reload must reproduce exactly). */
export function dumpOf(items: Iterable<[string, string, unknown]>): Dump {
  const byCollection = new Map<string, Array<[string, string]>>();
  for (const [collection, id, value] of items) {
    let list = byCollection.get(collection);
    if (!list) byCollection.set(collection, (list = []));
    list.push([id, canonicalJson(value)]);
  }
  const dump: Dump = {};
  for (const collection of [...byCollection.keys()].sort()) {
    const list = byCollection.get(collection)!.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const hash = createHash('sha256');
    for (const [id, json] of list) hash.update(`${id}\0${json}\n`);
    dump[collection] = { count: list.length, sha256: hash.digest('hex') };
  }
  return dump;
}

/** Throws, naming the collection, when a reload did not give back exactly what was saved. */
export function assertSameDump(label: string, expected: Dump, actual: Dump): void {
  const names = new Set([...Object.keys(expected), ...Object.keys(actual)]);
  for (const name of names) {
    const e = expected[name];
    const a = actual[name];
    if (!e || !a || e.count !== a.count || e.sha256 !== a.sha256) {
      throw new Error(
        `VERIFY FAILED: ${label}: collection "${name}" loaded ${a ? `${a.count} items (sha256 ${a.sha256.slice(0, 12)})` : 'nothing'}, saved ${e ? `${e.count} items (sha256 ${e.sha256.slice(0, 12)})` : 'nothing'}`,
      );
    }
  }
}
