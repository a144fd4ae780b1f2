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
   * The items to persist, by id, as they are at the moment of the call. The store serializes them
   * after this returns, so return copies or immutable values, never objects you go on mutating.
   */
  snapshot(): ReadonlyMap<string, T> | Promise<ReadonlyMap<string, T>>;
  /**
   * Optional: turn one item as parsed from JSON (dates are ISO strings) back into a `T`, throwing when
   * it is not a valid `T`. A file whose item throws here is quarantined like a corrupt file, and the
   * other items load. Without it, `restore()` receives the parsed JSON as it is.
   */
  revive?(value: unknown, id: string): T;
  /**
   * Replace the in-memory state with `items` (what `revive()` returned, or the parsed JSON). Called at
   * boot, by `loadAll()` and after `restore()`.
   */
  restore(items: ReadonlyMap<string, T>): void | Promise<void>;
}

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
