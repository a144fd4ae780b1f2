import { DATE, JSON_OBJECT, ModelSchema, OWN_ID, STRING } from '../model.schema';
import { Session } from './session.model';

/** A session: what `SessionManager` accepts and what `SessionAdapter.revive()` reads back. */
export const SESSION_SCHEMA: ModelSchema<Session> = {
  name: 'session',
  fields: {
    id: { type: OWN_ID, input: 'optional' },
    status: { type: STRING, input: 'optional' },
    createdAt: { type: DATE },
    updatedAt: { type: DATE },
    metadata: { type: JSON_OBJECT, input: 'optional' },
  },
};
