/*
 * JSON text made in pieces that join into exactly the bytes `JSON.stringify(whole, null, indent)`
 * gives, so a writer can reuse the text of a part that did not change (see
 * adapters/list-json.cache.ts) instead of serializing it again. Strings in JSON text never hold a raw
 * line break, so the indentation of a piece depends only on how deep it sits.
 */

/** The text `JSON.stringify` indents with: `indent` spaces, at most 10, none below 1. */
export function gapOf(indent: number): string {
  return ' '.repeat(Math.max(0, Math.min(10, Math.floor(indent))));
}

const WRAPS = new Map<string, { prefix: string; suffix: string }>();

/** The text around a value nested `depth` objects deep under the key "a", as JSON.stringify writes it. */
function wrapOf(gap: string, depth: number): { prefix: string; suffix: string } {
  const key = `${gap.length}:${depth}`;
  let wrap = WRAPS.get(key);
  if (!wrap) {
    let prefix = '';
    let suffix = '';
    for (let level = 1; level <= depth; level++) {
      prefix += gap ? `{\n${gap.repeat(level)}"a": ` : '{"a":';
      suffix = (gap ? `\n${gap.repeat(level - 1)}}` : '}') + suffix;
    }
    wrap = { prefix, suffix };
    WRAPS.set(key, wrap);
  }
  return wrap;
}

/**
 * `value` as JSON text the way `JSON.stringify(whole, null, indent)` writes it when `value` is the
 * value of a key `depth` objects deep in `whole` (0: `value` is `whole`), or `undefined` where
 * JSON.stringify leaves the key out. One `JSON.stringify` call: `value` is nested in `depth`
 * one-key objects, whose text is then cut off.
 */
export function jsonAt(value: unknown, indent: number, depth: number): string | undefined {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') {
    return undefined;
  }
  let wrapped = value;
  for (let level = 0; level < depth; level++) wrapped = { a: wrapped };
  const gap = gapOf(indent);
  const text = JSON.stringify(wrapped, null, gap);
  if (depth === 0) return text;
  const { prefix, suffix } = wrapOf(gap, depth);
  if (!text.startsWith(prefix) || !text.endsWith(suffix)) {
    return undefined; // a toJSON() that gave undefined: the key is left out
  }
  return text.slice(prefix.length, text.length - suffix.length);
}

/** One piece of JSON text: a string, or the UTF-8 bytes of one. */
export type JsonPiece = string | Buffer;

/**
 * An object's text from its members' texts (`"key": value`, in order), as JSON.stringify writes an
 * object `depth` objects deep: `{}` when it has none.
 */
export function objectPieces(
  members: ReadonlyArray<readonly [key: string, value: readonly JsonPiece[]]>,
  indent: number,
  depth: number,
): JsonPiece[] {
  if (members.length === 0) return ['{}'];
  const gap = gapOf(indent);
  const inner = gap ? `\n${gap.repeat(depth + 1)}` : '';
  const pieces: JsonPiece[] = [];
  members.forEach(([key, value], index) => {
    pieces.push(`${index === 0 ? '{' : ','}${inner}${JSON.stringify(key)}:${gap ? ' ' : ''}`);
    pieces.push(...value);
  });
  pieces.push(gap ? `\n${gap.repeat(depth)}}` : '}');
  return pieces;
}

/** The pieces joined, as UTF-8 bytes. */
export function joinPieces(pieces: readonly JsonPiece[]): Buffer {
  let length = 0;
  for (const piece of pieces) {
    length += typeof piece === 'string' ? Buffer.byteLength(piece, 'utf8') : piece.length;
  }
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  for (const piece of pieces) {
    at += typeof piece === 'string' ? out.write(piece, at, 'utf8') : piece.copy(out, at);
  }
  return out;
}
