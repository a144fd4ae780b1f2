import {
  DATE,
  ITEM_ID,
  JSON_OBJECT,
  listOf,
  ModelSchema,
  oneOf,
  OWN_ID,
  STRING,
} from '../model.schema';
import { Conversation, Message, MESSAGE_ROLES } from './conversation.model';

/** A message: what `MemoryManager.addMessage()` accepts and what a conversation file holds. */
export const MESSAGE_SCHEMA: ModelSchema<Message> = {
  name: 'message',
  fields: {
    id: { type: ITEM_ID, input: 'optional' },
    role: { type: oneOf(MESSAGE_ROLES), input: 'required' },
    content: { type: STRING, input: 'required' },
    timestamp: { type: DATE },
    metadata: { type: JSON_OBJECT, input: 'optional' },
  },
};

/** A conversation: what `MemoryManager` accepts and what `MemoryAdapter.revive()` reads back. */
export const CONVERSATION_SCHEMA: ModelSchema<Conversation> = {
  name: 'conversation',
  fields: {
    id: { type: OWN_ID, input: 'optional' },
    title: { type: STRING, optional: true, input: 'optional' },
    sessionId: { type: STRING, optional: true, input: 'optional' },
    messages: { type: listOf(MESSAGE_SCHEMA) },
    createdAt: { type: DATE },
    updatedAt: { type: DATE },
    metadata: { type: JSON_OBJECT, input: 'optional' },
  },
};
