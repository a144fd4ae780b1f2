import { Injectable } from '@nestjs/common';
import { PersistedState } from '../../decorators/persisted-state.decorator';
import { PersistenceAdapter } from '../../interfaces/persistence-adapter.interface';
import { reviveDate, reviveRecord, reviveString, deepFreeze } from '../revive.util';
import { Session } from './session.model';
import { SessionManager } from './session.manager';

/** Persists `SessionManager` under `<path>/sessions/`. */
@Injectable()
@PersistedState('sessions')
export class SessionAdapter implements PersistenceAdapter<Session> {
  readonly name = 'sessions';

  constructor(private readonly sessions: SessionManager) {}

  snapshot(): ReadonlyMap<string, Session> {
    return this.sessions.entries();
  }

  revive(raw: unknown, id: string): Session {
    const value = reviveRecord(raw, 'session');
    return deepFreeze({
      id,
      status: reviveString(value.status, 'status'),
      createdAt: reviveDate(value.createdAt, 'createdAt'),
      updatedAt: reviveDate(value.updatedAt, 'updatedAt'),
      metadata: reviveRecord(value.metadata, 'metadata'),
    });
  }

  restore(items: ReadonlyMap<string, Session>): void {
    this.sessions.replaceAll(new Map(items));
  }
}
