import { Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import { notFound } from '../../persistence.messages';
import { assertValidId } from '../../storage/file-name.codec';
import { ownCopy } from '../revive.util';
import { CreateSessionInput, Session, UpdateSessionInput } from './session.model';

/** Sessions in memory. Every change replaces the session object, so snapshots are cheap and exact. */
@Injectable()
export class SessionManager {
  private sessions = new Map<string, Session>();

  create(init: CreateSessionInput = {}): Session {
    const id = init.id ?? randomUUID();
    assertValidId(id);
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
      status: init.status ?? 'active',
      createdAt: now,
      updatedAt: now,
      metadata: ownCopy(init.metadata),
    });
    this.sessions.set(id, session);
    return session;
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  update(id: string, patch: UpdateSessionInput): Session {
    const current = this.sessions.get(id);
    if (!current) {
      throw new PersistenceError(PersistenceErrorCode.NotFound, notFound('Session', id), {
        itemId: id,
      });
    }
    const next: Session = Object.freeze({
      ...current,
      status: patch.status ?? current.status,
      metadata: patch.metadata === undefined ? current.metadata : ownCopy(patch.metadata),
      updatedAt: new Date(),
    });
    this.sessions.set(id, next);
    return next;
  }

  /** Removes a session; returns whether it existed. */
  delete(id: string): boolean {
    return this.sessions.delete(id);
  }

  list(): Session[] {
    return [...this.sessions.values()];
  }

  /** @internal Used by the adapter. */
  entries(): ReadonlyMap<string, Session> {
    return new Map(this.sessions);
  }

  /** @internal Used by the adapter. */
  replaceAll(sessions: Map<string, Session>): void {
    this.sessions = sessions;
  }
}
