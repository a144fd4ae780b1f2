import { Type } from '@nestjs/common';

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
 * DI token of the list of every adapter the store persists (built-in and yours), filled when the
 * module initialises: `@Inject(PersistenceAdapter) adapters: readonly PersistenceAdapter[]`.
 * @deprecated Use `@InjectPersistenceAdapters()` (the `PERSISTENCE_ADAPTERS` token): the same list.
 */
export const PersistenceAdapter = Symbol('PersistenceAdapter');

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
