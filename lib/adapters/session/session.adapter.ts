import { Injectable } from '@nestjs/common';
import { PersistedState } from '../../decorators/persisted-state.decorator';
import { Observable } from 'rxjs';
import {
  PersistenceAdapter,
  PersistenceChange,
  PersistenceChanges,
} from '../../interfaces/persistence-adapter.interface';
import { reviveModel, STORED_FORM, storedForm } from '../model.schema';
import { Session } from './session.model';
import { SESSION_SCHEMA } from './session.schema';
import { SessionManager } from './session.manager';

/** Persists `SessionManager` under `<path>/sessions/`. */
@Injectable()
@PersistedState('sessions')
export class SessionAdapter implements PersistenceAdapter<Session> {
  readonly name = 'sessions';
  /** Records are frozen and replaced on every change. */
  readonly immutable = true;
  /**
   * Schema version of the stored records (`sv` in their files; absent means 1). A future release
   * that changes the record's shape raises it and adds the migration from the previous version in
   * `migrations` here, so files written by this release keep loading.
   */
  readonly version = 1;

  constructor(private readonly sessions: SessionManager) {}

  /** Change notices of the manager (see `autoSave.debounce`). */
  get changes$(): Observable<PersistenceChange> {
    return this.sessions.changes$;
  }

  /** What changed since the last durable save: a save costs what changed. */
  changes(): PersistenceChanges<Session> {
    return this.sessions.changes();
  }

  committed(token: unknown): void {
    this.sessions.committed(token);
  }

  snapshot(): ReadonlyMap<string, Session> {
    return this.sessions.entries();
  }

  /** Reads a session back with the schema `SessionManager` checks its input with. */
  /** @internal The record as JSON writes it, for a faster save (same bytes). */
  [STORED_FORM](record: Session): unknown {
    return storedForm(SESSION_SCHEMA, record);
  }

  revive(raw: unknown, id: string): Session {
    return reviveModel(SESSION_SCHEMA, raw, id);
  }

  restore(items: ReadonlyMap<string, Session>): void {
    this.sessions.replaceAll(new Map(items));
  }

  /** Other replicas' versions of some items (a store on a storage driver): the rest stays. */
  applyRemote(items: ReadonlyMap<string, Session>, deleted: readonly string[]): void {
    this.sessions.applyRemote(items, deleted);
  }
}
