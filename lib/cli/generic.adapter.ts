import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';

/**
 * A pass-through adapter for one collection folder: no `revive()`, so items come back as the parsed
 * JSON of their files, and are saved as they are given.
 */
export class GenericAdapter implements PersistenceAdapter<unknown> {
  private items: ReadonlyMap<string, unknown> = new Map();

  constructor(readonly name: string) {}

  snapshot(): ReadonlyMap<string, unknown> {
    return this.items;
  }

  restore(items: ReadonlyMap<string, unknown>): void {
    this.items = new Map(items);
  }

  /** The items as last loaded or set. */
  get state(): ReadonlyMap<string, unknown> {
    return this.items;
  }

  /** Replaces the items the next save writes. */
  set(items: ReadonlyMap<string, unknown>): void {
    this.items = new Map(items);
  }
}
