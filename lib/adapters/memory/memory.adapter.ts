import { Injectable } from '@nestjs/common';
import { PersistedState } from '../../decorators/persisted-state.decorator';
import { PersistenceAdapter } from '../../interfaces/persistence-adapter.interface';
import { deepFreeze, reviveDate, reviveRecord, reviveString } from '../revive.util';
import { Conversation, Message, MESSAGE_ROLES, MessageRole } from './conversation.model';
import { MemoryManager } from './memory.manager';

/** Persists `MemoryManager` under `<path>/conversations/`, one file per conversation. */
@Injectable()
@PersistedState('conversations')
export class MemoryAdapter implements PersistenceAdapter<Conversation> {
  readonly name = 'conversations';

  constructor(private readonly memory: MemoryManager) {}

  snapshot(): ReadonlyMap<string, Conversation> {
    return this.memory.entries();
  }

  revive(raw: unknown, id: string): Conversation {
    const value = reviveRecord(raw, 'conversation');
    if (!Array.isArray(value.messages)) {
      throw new TypeError('"messages" is not an array');
    }
    const messages = value.messages.map((m: unknown, index): Message => {
      const message = reviveRecord(m, `messages[${index}]`);
      const role = reviveString(message.role, `messages[${index}].role`) as MessageRole;
      if (!MESSAGE_ROLES.includes(role)) {
        throw new TypeError(`messages[${index}].role "${role}" is not a known role`);
      }
      return {
        id: reviveString(message.id, `messages[${index}].id`),
        role,
        content: reviveString(message.content, `messages[${index}].content`),
        timestamp: reviveDate(message.timestamp, `messages[${index}].timestamp`),
        metadata: reviveRecord(message.metadata, `messages[${index}].metadata`),
      };
    });
    return deepFreeze({
      id,
      ...(value.title === undefined ? {} : { title: reviveString(value.title, 'title') }),
      ...(value.sessionId === undefined
        ? {}
        : { sessionId: reviveString(value.sessionId, 'sessionId') }),
      messages,
      createdAt: reviveDate(value.createdAt, 'createdAt'),
      updatedAt: reviveDate(value.updatedAt, 'updatedAt'),
      metadata: reviveRecord(value.metadata, 'metadata'),
    });
  }

  restore(items: ReadonlyMap<string, Conversation>): void {
    this.memory.replaceAll(new Map(items));
  }
}
