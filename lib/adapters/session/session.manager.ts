import { Injectable } from '@nestjs/common';
import { Observable } from 'rxjs';
import { randomUUID } from 'node:crypto';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import {
  PersistenceChange,
  PersistenceChanges,
} from '../../interfaces/persistence-adapter.interface';
import { notFound } from '../../persistence.messages';
import { ChangeTracker } from '../change.tracker';
import { emptyJsonObject, parseInput } from '../model.schema';
import { CreateSessionInput, Session, UpdateSessionInput } from './session.model';
import { SESSION_SCHEMA } from './session.schema';

/** Sessions in memory. Every change replaces the session object, so snapshots are cheap and exact. */
@Injectable()
export class SessionManager {
  private sessions = new Map<string, Session>();
  private readonly tracker = new ChangeTracker<Session>('sessions');

  /**
   * A notice for every change made through this manager (`{ adapter: 'sessions', id, kind }`, kind
   * `changed` or `deleted`), as it happens; not for a load, which replaces the whole state. With
   * `autoSave.debounce`, the store saves that many milliseconds after a change.
   */
  readonly changes$: Observable<PersistenceChange> = this.tracker.changes$;

  /**
   * Creates a session. Throws `PERSISTENCE_INVALID_INPUT` for a field it cannot store exactly (see
   * {@link CreateSessionInput}), `PERSISTENCE_INVALID_ID` for a bad or taken id.
   */
  create(init: CreateSessionInput = {}): Session {
    const input = parseInput(SESSION_SCHEMA, init, 'SessionManager.create()', [
      'id',
      'status',
      'metadata',
    ]);
    const id = input.id ?? randomUUID();
    if (this.sessions.has(id)) {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidId,
        `Session "${id}" already exists. Use update() to change it, or another id.`,
        { itemId: id },
      );
    }
    const now = new Date();
    const session: Session = Object.freeze({
      id,
      status: input.status ?? 'active',
      createdAt: now,
      updatedAt: now,
      metadata: input.metadata ?? emptyJsonObject(),
    });
    this.put(id, session);
    return session;
  }

  /** The session with this id, or `undefined`. */
  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  /**
   * Changes a session's status and/or replaces its metadata. Throws `PERSISTENCE_NOT_FOUND` for an
   * unknown id, `PERSISTENCE_INVALID_INPUT` for a field it cannot store exactly.
   */
  update(id: string, patch: UpdateSessionInput): Session {
    const current = this.sessions.get(id);
    if (!current) {
      throw new PersistenceError(PersistenceErrorCode.NotFound, notFound('Session', id), {
        itemId: id,
      });
    }
    const input = parseInput(SESSION_SCHEMA, patch, 'SessionManager.update()', [
      'status',
      'metadata',
    ]);
    const next: Session = Object.freeze({
      ...current,
      status: input.status ?? current.status,
      metadata: input.metadata ?? current.metadata,
      updatedAt: new Date(),
    });
    this.put(id, next);
    return next;
  }

  /** Removes a session; returns whether it existed. */
  delete(id: string): boolean {
    return this.remove(id);
  }

  /** Every session, as a new array. */
  list(): Session[] {
    return [...this.sessions.values()];
  }

  /** @internal Used by the adapter. */
  entries(): ReadonlyMap<string, Session> {
    return new Map(this.sessions);
  }

  /** @internal Used by the adapter: what changed since the last durable save. */
  changes(): PersistenceChanges<Session> {
    return this.tracker.changes(this.sessions);
  }

  /** @internal Used by the adapter: the changes of `token` are durable. */
  committed(token: unknown): void {
    this.tracker.committed(token);
  }

  /**
   * @internal Used by the adapter: other replicas' versions of some items, set and removed as they
   * are stored (so not changes of this replica's: nothing to save).
   */
  applyRemote(items: ReadonlyMap<string, Session>, deleted: readonly string[]): void {
    for (const [id, value] of items) this.sessions.set(id, value);
    for (const id of deleted) this.sessions.delete(id);
  }

  /** @internal Used by the adapter. */
  replaceAll(sessions: Map<string, Session>): void {
    this.sessions = sessions;
    this.tracker.reset();
  }

  private put(id: string, value: Session): void {
    this.sessions.set(id, value);
    this.tracker.changed(id);
  }

  private remove(id: string): boolean {
    const existed = this.sessions.delete(id);
    if (existed) this.tracker.deleted(id);
    return existed;
  }
}
