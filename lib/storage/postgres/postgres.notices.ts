import type { WatchedChange } from '../../interfaces/storage-driver.interface';

/*
 * The notices of commits over LISTEN/NOTIFY. A NOTIFY payload must stay under 8000 bytes, so the
 * notice of a large commit is split into parts, all sent inside the commit's transaction (delivered
 * together, and only if it commits): `{ o: origin, r: revision, p: part, n: parts, c: [[collection,
 * id, deleted], …] }`. An entry too large for any part is left out and the part says `x: 1`: the
 * listener then asks for a resync instead of reporting an incomplete commit.
 */

/** Bytes per payload: under PostgreSQL's limit of 8000, with room for the envelope. */
export const PAYLOAD_LIMIT = 7900;

interface NoticePart {
  o: string;
  r: number;
  p: number;
  n: number;
  c: Array<[string, string, boolean]>;
  x?: 1;
}

/** The payloads of one commit's notice, in order. */
export function encodeNotice(
  origin: string,
  revision: number,
  changes: readonly WatchedChange[],
  limit = PAYLOAD_LIMIT,
): string[] {
  const envelope = JSON.stringify({ o: origin, r: revision, p: 0, n: 0, c: [], x: 1 }).length + 16;
  const groups: Array<{ entries: string[]; incomplete: boolean }> = [
    { entries: [], incomplete: false },
  ];
  let size = envelope;
  for (const { collection, id, deleted } of changes) {
    const entry = JSON.stringify([collection, id, deleted]);
    const bytes = Buffer.byteLength(entry) + 1;
    if (envelope + bytes > limit) {
      groups[groups.length - 1].incomplete = true;
      continue;
    }
    if (size + bytes > limit) {
      groups.push({ entries: [], incomplete: false });
      size = envelope;
    }
    groups[groups.length - 1].entries.push(entry);
    size += bytes;
  }
  const o = JSON.stringify(origin);
  return groups.map(
    ({ entries, incomplete }, p) =>
      `{"o":${o},"r":${revision},"p":${p},"n":${groups.length},"c":[${entries.join(',')}]` +
      `${incomplete ? ',"x":1' : ''}}`,
  );
}

/** What the assembler makes of one payload. */
export type AssembledNotice =
  | { kind: 'pending' }
  | { kind: 'unreadable' }
  | { kind: 'complete'; origin: string; revision: number; changes: WatchedChange[] }
  | { kind: 'incomplete'; origin: string; revision: number };

const isPart = (value: unknown): value is NoticePart => {
  const part = value as NoticePart | null;
  return (
    typeof part === 'object' &&
    part !== null &&
    typeof part.o === 'string' &&
    Number.isSafeInteger(part.r) &&
    Number.isInteger(part.p) &&
    Number.isInteger(part.n) &&
    part.p >= 0 &&
    part.p < part.n &&
    Array.isArray(part.c)
  );
};

/** Puts the parts of each commit's notice back together. */
export class NoticeAssembler {
  private readonly partial = new Map<string, { parts: Array<NoticePart | undefined> }>();

  add(payload: string): AssembledNotice {
    let part: unknown;
    try {
      part = JSON.parse(payload);
    } catch {
      return { kind: 'unreadable' };
    }
    if (!isPart(part)) return { kind: 'unreadable' };
    let parts: Array<NoticePart | undefined> = [part];
    if (part.n > 1) {
      const key = `${part.o}\u0000${part.r}`;
      const entry = this.partial.get(key) ?? {
        parts: new Array<undefined>(part.n).fill(undefined),
      };
      entry.parts[part.p] = part;
      if (entry.parts.some((p) => p === undefined)) {
        this.partial.set(key, entry);
        return { kind: 'pending' };
      }
      this.partial.delete(key);
      parts = entry.parts;
    }
    if (parts.some((p) => p?.x === 1)) {
      return { kind: 'incomplete', origin: part.o, revision: part.r };
    }
    const changes: WatchedChange[] = parts.flatMap((p) =>
      (p?.c ?? []).map(([collection, id, deleted]) => ({ collection, id, deleted })),
    );
    return { kind: 'complete', origin: part.o, revision: part.r, changes };
  }

  /** Drops half-received notices (after a reconnect: the resync covers them). */
  clear(): void {
    this.partial.clear();
  }
}
