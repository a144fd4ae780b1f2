import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import * as crypto from 'node:crypto';
import { createHash } from 'node:crypto';
import type { UnloadedItem, UnloadedKind } from '../interfaces/unloaded-item.interface';
import { decodeStem } from '../storage/file-name.codec';

export type { UnloadedItem, UnloadedKind };

/**
 * What the store knows is committed for one item: which file holds it, the object the adapter last
 * handed out for it, and a hash of its serialized bytes. A save skips an item whose snapshot is the
 * same object (the built-in managers replace objects on change), or serializes to the same bytes.
 */
export interface CommittedEntry {
  fileName: string;
  /** The value last saved or loaded (compared by identity). */
  ref: unknown;
  /**
   * SHA-1 of the serialized envelope in the current format; '' when it must be rewritten;
   * {@link UNHASHED} when it was not computed.
   */
  hash: string;
  /** Key id of the file, when encrypted. */
  keyId?: string;
  /**
   * Set when the item was loaded from an older schema version and migrated: its file holds the old
   * version, so the next save rewrites it (in the adapter's current version) even when the adapter
   * hands back the very object it was given.
   */
  migrated?: boolean;
  /** Other files of the same item (an older format) to remove at the next save. */
  others?: string[];
  /**
   * Set when the file is on disk but this store did not load it (why, for messages): not loaded yet
   * (`loadOnBoot: false`), not decryptable, unreadable, or refused by the adapter's `restore()`. A
   * save never overwrites or removes such a file.
   */
  unloaded?: string;
  /** The error code the load reported for it (`listUnloaded()`'s `code`); none: not loaded yet. */
  unloadedCode?: PersistenceErrorCode;
  /**
   * With a storage driver, on an unloaded entry: this code cannot read the stored value (another
   * key, a newer schema version, bad data), so even a restore does not replace it. (On files the
   * storage's pinned files say the same.)
   */
  unreadable?: true;
  /**
   * On the file system: SHA-256 (hex) of the file's bytes as the last backup checked them. The entry
   * is replaced whenever its file is rewritten, so while it stands, other bytes are damage.
   */
  backedUp?: string;
  /** What kind of problem `unloaded` is (set with it). */
  unloadedKind?: UnloadedKind;
  /**
   * With a storage driver: the revision the item was loaded or last written with, the
   * `expectedRevision` of its next commit.
   */
  revision?: number;
}

/** The `unloaded` reason of the files a store started with `loadOnBoot: false` has not read. */
export const NOT_LOADED_YET =
  'the store started with loadOnBoot: false and loadAll() was not called';

/**
 * True for the kinds that need someone to act: they fail the start (`onUnreadable: 'fail'`) and keep
 * the health check down until resolved. Not `'not-loaded'` (the application chose it) nor
 * `'newer-schema'` (a rollback deploy: the items wait, untouched, for the newer version).
 */
export const needsAction = (kind: UnloadedKind | undefined): boolean =>
  kind !== 'not-loaded' && kind !== 'newer-schema';

/** Committed entries by collection, then by file stem. */
export type CommittedIndex = Map<string, Map<string, CommittedEntry>>;

/**
 * The `hash` of an entry whose bytes were not hashed because nothing will compare them: an item of
 * an immutable adapter that reports its changes is saved when reported changed (a new object), and
 * skipped when it is the very object committed. Not a base64 digest, so it never matches one; not
 * `''` (which means the file must be rewritten).
 */
export const UNHASHED = '*';

/** `crypto.hash()` (Node 20.12+): one call, no Hash object per item. */
const oneShot = (
  crypto as unknown as {
    hash?: (algorithm: string, data: Uint8Array, encoding: 'base64') => string;
  }
).hash;

export const hashBytes = (data: Uint8Array): string =>
  oneShot ? oneShot('sha1', data, 'base64') : createHash('sha1').update(data).digest('base64');

/** Every entry of `index` marked unloaded, with where its stored copy is (`where`). */
export function unloadedItems(
  index: CommittedIndex,
  where: (adapter: string, stem: string, entry: CommittedEntry) => string,
): UnloadedItem[] {
  const list: UnloadedItem[] = [];
  for (const [adapter, entries] of index) {
    for (const [stem, entry] of entries) {
      if (entry.unloaded === undefined) continue;
      list.push({
        adapter,
        id: decodeStem(stem) ?? stem,
        path: where(adapter, stem, entry),
        reason: entry.unloaded,
        ...(entry.unloadedCode === undefined ? {} : { code: entry.unloadedCode }),
        kind: entry.unloadedKind ?? 'corrupt',
      });
    }
  }
  return list;
}

/**
 * Drops every entry of what this store loaded (after `clear()` removed it), keeping the unloaded
 * ones: their files are still there, and no save may overwrite or remove them.
 */
export function forgetLoaded(index: CommittedIndex): void {
  for (const entries of index.values()) {
    for (const [stem, entry] of entries) if (entry.unloaded === undefined) entries.delete(stem);
  }
}

/** Drops the entries of the items a driver commit removed (a `clear()` on a storage driver). */
export function forgetRemoved(
  index: CommittedIndex,
  applied: ReadonlyArray<{ collection: string; id: string; deleted: boolean }>,
): void {
  for (const { collection, id, deleted } of applied) {
    const entries = index.get(collection);
    if (deleted && entries?.get(id)?.unloaded === undefined) entries?.delete(id);
  }
}

/**
 * After a load, the adapters that report their changes (`changes()`) and whose loaded files need no
 * rewrite (current format, key and schema version; one file per item) match the index exactly: the
 * load restored into them what the files hold, and restoring resets their change reporting. Their
 * next save can look at their reported changes only (see `WriterChecks.inSync`), instead of
 * serializing every item to compare it. Returns, for each, its number of unloaded entries.
 */
export function inSyncAfterLoad(
  adapters: ReadonlyArray<{ name: string; changes?: unknown }>,
  index: CommittedIndex,
  keyId: string | undefined,
): Map<string, number> {
  const inSync = new Map<string, number>();
  for (const adapter of adapters) {
    if (typeof adapter.changes !== 'function') continue;
    let unloaded = 0;
    let clean = true;
    for (const entry of index.get(adapter.name)?.values() ?? []) {
      if (entry.unloaded !== undefined) {
        unloaded++;
      } else if (entry.hash === '' || entry.migrated || entry.others || entry.keyId !== keyId) {
        clean = false;
        break;
      }
    }
    if (clean) inSync.set(adapter.name, unloaded);
  }
  return inSync;
}
