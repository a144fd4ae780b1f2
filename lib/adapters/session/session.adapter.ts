import { Injectable } from '@nestjs/common';
import { PersistedState } from '../../decorators/persisted-state.decorator';
import { PersistenceAdapter } from '../../interfaces/persistence-adapter.interface';
import { reviveModel } from '../model.schema';
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

  constructor(private readonly sessions: SessionManager) {}

  snapshot(): ReadonlyMap<string, Session> {
    return this.sessions.entries();
  }

  /** Reads a session back with the schema `SessionManager` checks its input with. */
  revive(raw: unknown, id: string): Session {
    return reviveModel(SESSION_SCHEMA, raw, id);
  }

  restore(items: ReadonlyMap<string, Session>): void {
    this.sessions.replaceAll(new Map(items));
  }
}
