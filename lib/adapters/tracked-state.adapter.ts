import type { Observable } from 'rxjs';
import { getPersistedStateMetadata } from '../decorators/persisted-state.decorator';
import type {
  PersistenceAdapter,
  PersistenceChange,
  PersistenceChanges,
} from '../interfaces/persistence-adapter.interface';
import { ChangeTracker } from './change.tracker';

/**
 * A base for your own state: items by id, kept by the class, that report their own changes. An
 * adapter built on it gets what the built-in managers have without writing the bookkeeping: saves
 * that cost what changed (`changes()`/`committed()`), `changes$`, so `autoSave.debounce` saves
 * soon after a change instead of at the next interval, and `applyRemote()`, so replicas on a
 * storage driver follow each other item by item. Change items with `set()` and `delete()` only,
 * and give `set()` a new value rather than changing a stored one in place (a change in place is not
 * reported, so it is saved only with the item's next `set()`).
 *
 * @example
 * ```ts
 * @PersistedState('counters')
 * export class CounterState extends TrackedStateAdapter<number> {
 *   increment(id: string): number {
 *     const next = (this.get(id) ?? 0) + 1;
 *     this.set(id, next);
 *     return next;
 *   }
 * }
 *
 * @Module({ providers: [CounterState], exports: [CounterState] })
 * export class CounterModule {}
 * ```
 */
export abstract class TrackedStateAdapter<T> implements PersistenceAdapter<T> {
  /**
   * The collection's name: the one given to the constructor, else the `@PersistedState()` name (a
   * subclass may also declare `readonly name = 'counters'`).
   */
  readonly name: string;
  private items = new Map<string, T>();
  private tracker?: ChangeTracker<T>;

  constructor(name?: string) {
    this.name = name ?? getPersistedStateMetadata(new.target)?.name ?? '';
  }

  /** A notice for every `set()` and `delete()`, as it happens. */
  get changes$(): Observable<PersistenceChange> {
    return this.changeTracker().changes$;
  }

  /** The item's current value. */
  protected get(id: string): T | undefined {
    return this.items.get(id);
  }

  /** Whether an item with this id exists. */
  protected has(id: string): boolean {
    return this.items.has(id);
  }

  /** Every item, by id (a copy of the index; the values are the stored ones). */
  protected all(): ReadonlyMap<string, T> {
    return new Map(this.items);
  }

  /** Creates or replaces an item; it is saved at the next save. */
  protected set(id: string, value: T): void {
    this.items.set(id, value);
    this.changeTracker().changed(id);
  }

  /** Removes an item; its saved version is removed at the next save. False when there was none. */
  protected delete(id: string): boolean {
    if (!this.items.delete(id)) return false;
    this.changeTracker().deleted(id);
    return true;
  }

  snapshot(): ReadonlyMap<string, T> {
    return new Map(this.items);
  }

  restore(items: ReadonlyMap<string, T>): void {
    this.items = new Map(items);
    this.changeTracker().reset();
  }

  /** Other replicas' versions (on a storage driver): what is stored, so not reported as changes. */
  applyRemote(items: ReadonlyMap<string, T>, deleted: readonly string[]): void {
    for (const [id, value] of items) this.items.set(id, value);
    for (const id of deleted) this.items.delete(id);
  }

  changes(): PersistenceChanges<T> {
    return this.changeTracker().changes(this.items);
  }

  committed(token: unknown): void {
    this.changeTracker().committed(token);
  }

  /** Made on first use: the name (decorator or subclass field) is known only once constructed. */
  private changeTracker(): ChangeTracker<T> {
    this.tracker ??= new ChangeTracker<T>(this.name);
    return this.tracker;
  }
}
