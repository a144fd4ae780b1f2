import { jsonAt, JsonPiece, gapOf, objectPieces } from '../serializers/json-text.util';
import { FieldSpec, ModelSchema, storedItem, storedValue } from './model.schema';

/** How many characters of list text one {@link RecordJsonWriter} keeps (two bytes each at most). @internal */
export const LIST_JSON_CACHE_CHARS = 32 * 1024 * 1024;

/**
 * How many characters of new text one save may add. Keeping much more within one save (the first
 * save of a large store) makes V8 leave most of that save's garbage in the old generation: the
 * large tier's full save grew the heap by 175 MiB more with 32 Mi characters kept at once, not at
 * all with 4 Mi. The texts of a store fill up over its next saves instead. @internal
 */
export const LIST_JSON_CACHE_CHARS_PER_SAVE = 4 * 1024 * 1024;

interface CachedList {
  /** The list whose text this is (frozen: its items never change). */
  readonly list: readonly unknown[];
  readonly indent: number;
  /**
   * The list's text up to its last item, without the line break and `]` that close it, in pieces:
   * the text of the list as first written, then the text of each item appended since. Strings, not
   * bytes (external memory makes V8 run full collections far more often), and never joined into a
   * new copy at each save: that copy would outlive a young collection and leave the old one as
   * garbage in the old generation, whose collection pauses the application. Joined once
   * {@link MAX_PIECES} pieces have gathered.
   */
  readonly open: readonly string[];
  /** Characters in `open`. */
  readonly chars: number;
}

/** Appended items kept as separate pieces before they are joined into one string. */
const MAX_PIECES = 32;

/**
 * Writes a built-in record as JSON text (the envelope's `data`), keeping the text of one list field
 * per record (a conversation's messages) so that the next save of that record serializes only the
 * items appended since: a message added to a conversation of 100 costs one message's
 * `JSON.stringify`, not a hundred. The bytes are exactly those of `JSON.stringify` (checked by
 * test/stored-json.spec.ts).
 *
 * Sound because the built-in managers never change a record or a list item in place: a change
 * makes a new frozen record, and an append a new frozen list that shares every earlier item. The
 * cached text is reused only when each of its items is, by identity, the item at the same place in
 * the new list. The kept text is bounded ({@link LIST_JSON_CACHE_CHARS}): a record's text is kept
 * when there is room, and goes when the record is written again with other items (or is too large),
 * is emptied, or a load replaces every record.
 */
export class RecordJsonWriter<T extends object> {
  private readonly cache = new Map<string, CachedList>();
  private cachedChars = 0;
  /** Characters this save may still add (see {@link LIST_JSON_CACHE_CHARS_PER_SAVE}). */
  private admissible: number;

  constructor(
    private readonly schema: ModelSchema<T>,
    private readonly listKey: string,
    private readonly maxChars = LIST_JSON_CACHE_CHARS,
    private readonly maxCharsPerSave = LIST_JSON_CACHE_CHARS_PER_SAVE,
  ) {
    this.admissible = maxCharsPerSave;
  }

  /** A save starts (the adapter was asked for its changes or its snapshot). */
  nextSave(): void {
    this.admissible = this.maxCharsPerSave;
  }

  /** The record's JSON text as the value of a key of a top-level object (the envelope's `data`). */
  pieces(id: string, record: T, indent: number): JsonPiece[] {
    const fields = this.schema.fields as Readonly<Record<string, FieldSpec>>;
    const members: Array<readonly [string, readonly JsonPiece[]]> = [];
    for (const key of Object.keys(record)) {
      const value = (record as Record<string, unknown>)[key];
      const type = fields[key]?.type;
      if (key === this.listKey && type?.kind === 'list' && Array.isArray(value)) {
        members.push([key, this.listPieces(id, value, type.of, indent)]);
      } else {
        const text = jsonAt(storedValue(type, value), indent, 2);
        if (text !== undefined) members.push([key, [text]]);
      }
    }
    return objectPieces(members, indent, 1);
  }

  /** Forgets every kept text (a load replaced the records). */
  clear(): void {
    this.cache.clear();
    this.cachedChars = 0;
  }

  /** The list's text at depth 2 (a key of the record, which is the envelope's `data`). */
  private listPieces(
    id: string,
    list: readonly unknown[],
    itemSchema: ModelSchema<object>,
    indent: number,
  ): JsonPiece[] {
    const gap = gapOf(indent);
    const close = gap ? `\n${gap.repeat(2)}]` : ']';
    if (list.length === 0) {
      this.forget(id);
      return ['[]'];
    }
    const cached = this.cache.get(id);
    const kept = cached && this.sharesPrefix(cached, list, indent) ? cached : undefined;
    let open: readonly string[];
    let chars: number;
    if (kept && kept.list.length === list.length) {
      ({ open, chars } = kept);
    } else if (kept) {
      const separator = gap ? `,\n${gap.repeat(3)}` : ',';
      let added = '';
      for (let i = kept.list.length; i < list.length; i++) {
        added += separator + (jsonAt(storedItem(itemSchema, list[i]), indent, 3) ?? 'null');
      }
      open = kept.open.length < MAX_PIECES ? [...kept.open, added] : [kept.open.join('') + added];
      chars = kept.chars + added.length;
    } else {
      const text = jsonAt(
        list.map((item) => storedItem(itemSchema, item)),
        indent,
        2,
      )!;
      open = [text.slice(0, text.length - close.length)];
      chars = text.length - close.length;
    }
    this.keep(id, { list, indent, open, chars });
    return [...open, close];
  }

  private sharesPrefix(cached: CachedList, list: readonly unknown[], indent: number): boolean {
    if (cached.indent !== indent || cached.list.length > list.length) return false;
    if (cached.list === list) return true;
    for (let i = 0; i < cached.list.length; i++) if (cached.list[i] !== list[i]) return false;
    return true;
  }

  private keep(id: string, entry: CachedList): void {
    const old = this.cache.get(id);
    this.forget(id);
    // A text that replaces the record's own (an append) adds only what it grew by.
    const added = entry.chars - (old?.chars ?? 0);
    if (added > this.admissible) return;
    // Kept only while there is room: evicting older texts to make room would, in a save that
    // writes more than fits (the first save of a large store), keep each text just long enough to
    // reach the old generation and leave it there as garbage, growing the heap by the size of
    // the whole store.
    if (this.cachedChars + entry.chars > this.maxChars) return;
    this.cache.set(id, entry);
    this.cachedChars += entry.chars;
    this.admissible -= Math.max(0, added);
  }

  /** Forgets the kept text of one record (it was replaced from elsewhere). */
  forget(id: string): void {
    const old = this.cache.get(id);
    if (old) {
      this.cache.delete(id);
      this.cachedChars -= old.chars;
    }
  }
}
