import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { SCHEMA_PASS_THROUGH, SchemaPassThrough } from '../store/schema.migrator';

/**
 * A pass-through adapter for one collection folder: no `revive()`, so items come back as the parsed
 * JSON of their files, and are saved as they are given. Items of any schema version (`sv`) are
 * carried as they are, never migrated or refused: each keeps the version it was read with, or the
 * one given to {@link set}.
 */
export class GenericAdapter implements PersistenceAdapter<unknown>, SchemaPassThrough {
  private items: ReadonlyMap<string, unknown> = new Map();
  readonly [SCHEMA_PASS_THROUGH] = new Map<string, number>();

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

  /** Schema versions above 1 of the items, by id (as read, or as last set). */
  get schemaVersions(): ReadonlyMap<string, number> {
    return new Map(
      [...this[SCHEMA_PASS_THROUGH]].filter(([id, sv]) => sv > 1 && this.items.has(id)),
    );
  }

  /**
   * Replaces the items the next save writes, and their schema versions (an id not in
   * `schemaVersions` is written as version 1).
   */
  set(
    items: ReadonlyMap<string, unknown>,
    schemaVersions: ReadonlyMap<string, number> = new Map(),
  ): void {
    this.items = new Map(items);
    const versions = this[SCHEMA_PASS_THROUGH];
    versions.clear();
    for (const [id, sv] of schemaVersions) versions.set(id, sv);
  }
}
