import { Type } from '@nestjs/common';
import type { Observable } from 'rxjs';

/**
 * Connects one piece of in-memory state to the store. The three built-in managers use it, and so can
 * any service of yours (a shopping cart, a rate limiter's counters, …).
 *
 * @example
 * ```ts
 * @Injectable()
 * export class CartAdapter implements PersistenceAdapter<Cart> {
 *   readonly name = 'carts';
 *   constructor(private readonly carts: CartService) {}
 *   snapshot() { return this.carts.entries(); }           // Map<id, Cart>
 *   revive(value: unknown) { return Cart.parse(value); }  // optional validation
 *   restore(items: ReadonlyMap<string, Cart>) { this.carts.replaceAll(items); }
 * }
 * ```
 */
export interface PersistenceAdapter<T = unknown> {
  /**
   * The collection's name: its folder under the store path. Lower-case letters, digits, `-` and `_`,
   * starting with a letter; unique among adapters.
   */
  readonly name: string;
  /**
   * Declare `true` only when `snapshot()` hands out values that are never changed in place after
   * that (frozen objects, replaced on every change, as the built-in managers do). The store then
   * skips an item whose value is the very object it saved last, without serializing it. Otherwise
   * every item is serialized at each save and compared by its bytes, so a change made in place is
   * never missed.
   * @default false
   */
  readonly immutable?: boolean;
  /**
   * The schema version of the items this adapter hands out and expects back: a positive integer,
   * raised by one each time the shape of an item changes, with a migration for each step in
   * `migrations`. Every item file records the version it was written with (`sv` in the envelope;
   * files written before versions existed count as version 1). Loading runs the migrations of an
   * older item, one version after the other, before `revive()`; the next save writes it again in
   * the current version. An item written by a newer version (after a rollback of the application)
   * is not loaded and never overwritten or removed (`PERSISTENCE_ITEM_FROM_NEWER_VERSION`).
   * @default 1
   */
  readonly version?: number;
  /**
   * The migrations to the current `version`, by the version each one produces: `migrations[n]`
   * turns an item of version `n - 1` (as parsed from JSON, or as the previous migration returned it)
   * into version `n`. Every step from 2 to `version` is required (checked at start-up,
   * `PERSISTENCE_INVALID_ADAPTER`). They run synchronously while loading, inside the adapter's
   * context (like `revive()`: no store calls from here). One that throws leaves that item's file
   * as it is, unloaded, and reports `PERSISTENCE_MIGRATION_FAILED`; the other items load.
   * @default {} (no migrations: version 1)
   * @example
   * ```ts
   * readonly version = 3;
   * readonly migrations = {
   *   // v1 had `name`; v2 splits it.
   *   2: (item: any) => ({ ...item, first: item.name.split(' ')[0], last: item.name.split(' ')[1] ?? '' }),
   *   // v3 adds a counter.
   *   3: (item: any) => ({ ...item, visits: 0 }),
   * };
   * ```
   */
  readonly migrations?: PersistenceMigrations;
  /**
   * The items to persist, by id, as they are at the moment of the call: a `Map` (or a
   * `ReadonlyMap`). The store serializes them after this returns, so return copies or immutable
   * values, never objects you go on mutating. Values must be JSON data; with a `revive()`, objects
   * with a `toJSON()` (such as `Date`) are accepted too. An item that cannot be stored exactly is
   * reported as `PERSISTENCE_SERIALIZE_FAILED` and its last saved version kept. A call that does not
   * settle within `adapterTimeout` is abandoned for that save (`PERSISTENCE_ADAPTER_FAILED`).
   */
  snapshot(): ReadonlyMap<string, T> | Promise<ReadonlyMap<string, T>>;
  /**
   * Optional: the items changed and deleted since the changes last handed to `committed()`, so a
   * save costs what changed instead of what exists. With it, a save calls `changes()` (before
   * `snapshot()`), and once the store's index is in step with the adapter (after the first save that
   * follows a start, a load, a clear or a restore, which still compares every item of `snapshot()`)
   * it looks at these items only: a save where nothing changed takes no snapshot and writes nothing.
   * Report every change: one that is missing is not saved until the item changes again (or the next
   * load). The built-in managers implement it. Without it, every save takes `snapshot()` and
   * compares each item with what was saved last.
   *
   * `changed` holds each changed item's value as it is now (taken in this call, so every value is
   * of the same moment); `deleted` the ids removed. An id changed, then deleted, is only in
   * `deleted`. Synchronous, like `revive()`.
   */
  changes?(): PersistenceChanges<T>;
  /**
   * Optional, with `changes()`: called with the `token` of a `changes()` result once the save that
   * included those changes is durable (its journal record fsynced). Forget the changes reported in
   * that call, but not those made since. Never called for a save that failed, so a failed save
   * loses no change.
   */
  committed?(token: unknown): void;
  /**
   * Optional: a notice for every change, as it happens (the built-in managers' `changes$`). With
   * `autoSave.debounce`, the store subscribes to it and saves that many milliseconds after a change.
   */
  readonly changes$?: Observable<PersistenceChange>;
  /**
   * Optional: turn one item as parsed from JSON (dates are ISO strings) back into a `T`, throwing when
   * it is not a valid `T`. A file whose item throws here is quarantined like a corrupt file, and the
   * other items load. Without it, `restore()` receives the parsed JSON as it is.
   */
  revive?(value: unknown, id: string): T;
  /**
   * Restore into memory: replace the in-memory state with `items` (what `revive()` returned, or the
   * parsed JSON). The store calls it whenever it loads: at boot, in `loadAll()`, and after restoring
   * a backup with `PersistenceStore.restore()` (which is a different thing: that one replaces the
   * saved files with a backup's, then loads them through this method).
   */
  restore(items: ReadonlyMap<string, T>): void | Promise<void>;
  /**
   * Optional, for stores on a storage driver (`storage`): put other replicas' versions of some items
   * into memory (set each of `items`, remove each id of `deleted`) and leave every other item as it
   * is. Synchronous. Do not report these as changes (`changes()`): they are what is stored. The store
   * calls it only for items this replica did not change since it last saved or followed them, in
   * the same synchronous step as it checks that, so no change of the application is overwritten.
   * Without it, the store takes `snapshot()`, replaces those items in it, and `restore()`s it (also
   * in one synchronous step, when `snapshot()` returns a Map rather than a Promise): an adapter
   * whose `snapshot()` is asynchronous, or whose `restore()` replaces its state only after an
   * `await`, should implement it. The built-in managers implement it. One that throws or returns a
   * Promise fails as `PERSISTENCE_ADAPTER_FAILED` and the items are kept unloaded.
   */
  applyRemote?(items: ReadonlyMap<string, T>, deleted: readonly string[]): void;
}

/** What {@link PersistenceAdapter.changes} reports. */
export interface PersistenceChanges<T = unknown> {
  /** Items created or changed since the last committed changes, by id, as they are now. */
  readonly changed: ReadonlyMap<string, T>;
  /** Ids of the items deleted since the last committed changes. */
  readonly deleted: Iterable<string>;
  /** Handed back to `committed()` once these changes are durable. */
  readonly token: unknown;
}

/** One change notice of `changes$`. */
export interface PersistenceChange {
  /** The adapter (collection) name: `sessions`, `conversations`, `focus`, or yours. */
  readonly adapter: string;
  /** The item's id. */
  readonly id: string;
  /** `changed`: created or changed; `deleted`: removed. */
  readonly kind: 'changed' | 'deleted';
}

/**
 * An adapter's migrations, by the schema version each one produces: `migrations[n]` turns an item of
 * version `n - 1` into version `n`. It receives the item and its id, and returns the new item
 * (synchronously: never a Promise).
 */
export type PersistenceMigrations = Readonly<
  Record<number, (item: unknown, id: string) => unknown>
>;

/**
 * An adapter class named by `@PersistedState('name')`: it may leave out `name` (the decorator gives
 * it), or declare the same one.
 */
export type PersistedStateAdapter<T = unknown> = Omit<PersistenceAdapter<T>, 'name'> & {
  readonly name?: string;
};

/** An adapter class for `PersistenceModule.forFeature()`. */
export type PersistenceAdapterClass = Type<PersistenceAdapter | PersistedStateAdapter>;

/** An adapter in the `adapters` option: a provider class (resolved through DI) or an instance. */
export type PersistenceAdapterRef = PersistenceAdapterClass | PersistenceAdapter;
