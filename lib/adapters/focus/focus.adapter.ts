import { Injectable } from '@nestjs/common';
import { PersistedState } from '../../decorators/persisted-state.decorator';
import { Observable } from 'rxjs';
import {
  PersistenceAdapter,
  PersistenceChange,
  PersistenceChanges,
} from '../../interfaces/persistence-adapter.interface';
import { reviveModel, STORED_FORM, storedForm } from '../model.schema';
import { FocusChain } from './focus.model';
import { FOCUS_CHAIN_SCHEMA } from './focus.schema';
import { FocusManager } from './focus.manager';

/** Persists `FocusManager` under `<path>/focus/`, one file per chain. */
@Injectable()
@PersistedState('focus')
export class FocusAdapter implements PersistenceAdapter<FocusChain> {
  readonly name = 'focus';
  /** Records are frozen and replaced on every change. */
  readonly immutable = true;
  /**
   * Schema version of the stored records (`sv` in their files; absent means 1). A future release
   * that changes the record's shape raises it and adds the migration from the previous version in
   * `migrations` here, so files written by this release keep loading.
   */
  readonly version = 1;

  constructor(private readonly focus: FocusManager) {}

  /** Change notices of the manager (see `autoSave.debounce`). */
  get changes$(): Observable<PersistenceChange> {
    return this.focus.changes$;
  }

  /** What changed since the last durable save: a save costs what changed. */
  changes(): PersistenceChanges<FocusChain> {
    return this.focus.changes();
  }

  committed(token: unknown): void {
    this.focus.committed(token);
  }

  snapshot(): ReadonlyMap<string, FocusChain> {
    return this.focus.entries();
  }

  /** Reads a chain back with the schemas `FocusManager` checks its input with. */
  /** @internal The record as JSON writes it, for a faster save (same bytes). */
  [STORED_FORM](record: FocusChain): unknown {
    return storedForm(FOCUS_CHAIN_SCHEMA, record);
  }

  revive(raw: unknown, id: string): FocusChain {
    return reviveModel(FOCUS_CHAIN_SCHEMA, raw, id);
  }

  restore(items: ReadonlyMap<string, FocusChain>): void {
    this.focus.replaceAll(new Map(items));
  }

  /** Other replicas' versions of some items (a store on a storage driver): the rest stays. */
  applyRemote(items: ReadonlyMap<string, FocusChain>, deleted: readonly string[]): void {
    this.focus.applyRemote(items, deleted);
  }
}
