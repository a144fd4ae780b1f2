import { PERSISTED_STATE_METADATA } from '../persistence.constants';

/** What `@PersistedState()` records on a class. */
export interface PersistedStateMetadata {
  /** The adapter's name: its folder under the store path. */
  name: string;
}

/**
 * Marks a provider class as a persistence adapter named `name` (its folder under the store path).
 * The store finds it when the application initialises, in whichever module lists it in `providers`
 * (or registers it with `PersistenceModule.forFeature()`), so its dependencies come from that module.
 * The class may leave out `name`; if it has one, it must be the same.
 *
 * @example
 * ```ts
 * @PersistedState('carts')
 * export class CartAdapter implements PersistedStateAdapter<Cart> {
 *   constructor(private readonly carts: CartService) {}
 *   snapshot() { return this.carts.entries(); }
 *   restore(items: ReadonlyMap<string, Cart>) { this.carts.replaceAll(items); }
 * }
 *
 * @Module({ providers: [CartService, CartAdapter] })
 * export class CartModule {}
 * ```
 */
export function PersistedState(name: string): ClassDecorator {
  return (target) => {
    const metadata: PersistedStateMetadata = { name };
    Reflect.defineMetadata(PERSISTED_STATE_METADATA, metadata, target);
  };
}

/** The `@PersistedState()` metadata of a class, if any. */
export function getPersistedStateMetadata(target: unknown): PersistedStateMetadata | undefined {
  if (typeof target !== 'function') return undefined;
  return Reflect.getMetadata(PERSISTED_STATE_METADATA, target) as
    PersistedStateMetadata | undefined;
}
