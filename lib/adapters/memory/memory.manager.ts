import { Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import { notFound } from '../../persistence.messages';
import { assertValidId } from '../../storage/file-name.codec';
import { ownCopy } from '../revive.util';
import {
  AddMessageInput,
  Conversation,
  CreateConversationInput,
  Message,
  MESSAGE_ROLES,
} from './conversation.model';

/** Conversations and their messages in memory; every change replaces the conversation object. */
@Injectable()
export class MemoryManager {
  private conversations = new Map<string, Conversation>();

  createConversation(init: CreateConversationInput = {}): Conversation {
    const id = init.id ?? randomUUID();
    assertValidId(id);
    if (this.conversations.has(id)) {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidId,
        `Conversation "${id}" already exists. Add messages to it, or use another id.`,
        { itemId: id },
      );
    }
    const now = new Date();
    const conversation: Conversation = Object.freeze({
      id,
      ...(init.title === undefined ? {} : { title: init.title }),
      ...(init.sessionId === undefined ? {} : { sessionId: init.sessionId }),
      messages: Object.freeze([]),
      createdAt: now,
      updatedAt: now,
      metadata: ownCopy(init.metadata),
    });
    this.conversations.set(id, conversation);
    return conversation;
  }

  addMessage(conversationId: string, input: AddMessageInput): Message {
    const current = this.require(conversationId);
    if (!MESSAGE_ROLES.includes(input.role)) {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidId,
        `Message role ${JSON.stringify(input.role)} is not one of ${MESSAGE_ROLES.join(', ')}.`,
        { itemId: conversationId },
      );
    }
    if (typeof input.content !== 'string') {
      throw new TypeError('Message content must be a string.');
    }
    const timestamp = new Date();
    const message: Message = Object.freeze({
      id: input.id ?? randomUUID(),
      role: input.role,
      content: input.content,
      timestamp,
      metadata: ownCopy(input.metadata),
    });
    this.conversations.set(
      conversationId,
      Object.freeze({
        ...current,
        messages: Object.freeze([...current.messages, message]),
        updatedAt: timestamp,
      }),
    );
    return message;
  }

  getConversation(id: string): Conversation | undefined {
    return this.conversations.get(id);
  }

  /** Removes a conversation; returns whether it existed. */
  deleteConversation(id: string): boolean {
    return this.conversations.delete(id);
  }

  listConversations(): Conversation[] {
    return [...this.conversations.values()];
  }

  /** @internal Used by the adapter. */
  entries(): ReadonlyMap<string, Conversation> {
    return new Map(this.conversations);
  }

  /** @internal Used by the adapter. */
  replaceAll(conversations: Map<string, Conversation>): void {
    this.conversations = conversations;
  }

  private require(id: string): Conversation {
    const conversation = this.conversations.get(id);
    if (!conversation) {
      throw new PersistenceError(PersistenceErrorCode.NotFound, notFound('Conversation', id), {
        itemId: id,
      });
    }
    return conversation;
  }
}
