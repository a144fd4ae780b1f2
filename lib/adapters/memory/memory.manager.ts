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
import {
  AddMessageInput,
  Conversation,
  CreateConversationInput,
  Message,
} from './conversation.model';
import { CONVERSATION_SCHEMA, MESSAGE_SCHEMA } from './conversation.schema';

/** Conversations and their messages in memory; every change replaces the conversation object. */
@Injectable()
export class MemoryManager {
  private conversations = new Map<string, Conversation>();
  private readonly tracker = new ChangeTracker<Conversation>('conversations');

  /**
   * A notice for every change made through this manager (`{ adapter: 'conversations', id, kind }`, kind
   * `changed` or `deleted`), as it happens; not for a load, which replaces the whole state. With
   * `autoSave.debounce`, the store saves that many milliseconds after a change.
   */
  readonly changes$: Observable<PersistenceChange> = this.tracker.changes$;

  /**
   * Creates an empty conversation. Throws `PERSISTENCE_INVALID_INPUT` for a field it cannot store
   * exactly (see {@link CreateConversationInput}), `PERSISTENCE_INVALID_ID` for a bad or taken id.
   */
  create(init: CreateConversationInput = {}): Conversation {
    const input = parseInput(CONVERSATION_SCHEMA, init, 'MemoryManager.create()', [
      'id',
      'title',
      'sessionId',
      'metadata',
    ]);
    const id = input.id ?? randomUUID();
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
      ...(input.title === undefined ? {} : { title: input.title }),
      ...(input.sessionId === undefined ? {} : { sessionId: input.sessionId }),
      messages: Object.freeze([]),
      createdAt: now,
      updatedAt: now,
      metadata: input.metadata ?? emptyJsonObject(),
    });
    this.put(id, conversation);
    return conversation;
  }

  /**
   * Appends a message (only the new message is checked; the conversation is replaced, not changed).
   * Throws `PERSISTENCE_NOT_FOUND` for an unknown conversation, `PERSISTENCE_INVALID_INPUT` for a
   * field it cannot store exactly (see {@link AddMessageInput}), `PERSISTENCE_INVALID_ID` for a bad id.
   */
  addMessage(conversationId: string, message: AddMessageInput): Message {
    const current = this.require(conversationId);
    const input = parseInput(MESSAGE_SCHEMA, message, 'MemoryManager.addMessage()', [
      'id',
      'role',
      'content',
      'metadata',
    ]);
    const timestamp = new Date();
    const added: Message = Object.freeze({
      id: input.id ?? randomUUID(),
      role: input.role!,
      content: input.content!,
      timestamp,
      metadata: input.metadata ?? emptyJsonObject(),
    });
    this.put(
      conversationId,
      Object.freeze({
        ...current,
        messages: Object.freeze([...current.messages, added]),
        updatedAt: timestamp,
      }),
    );
    return added;
  }

  /** The conversation with this id, or `undefined`. */
  get(id: string): Conversation | undefined {
    return this.conversations.get(id);
  }

  /** Removes a conversation; returns whether it existed. */
  delete(id: string): boolean {
    return this.remove(id);
  }

  /** Every conversation, as a new array. */
  list(): Conversation[] {
    return [...this.conversations.values()];
  }

  /** @internal Used by the adapter. */
  entries(): ReadonlyMap<string, Conversation> {
    return new Map(this.conversations);
  }

  /** @internal Used by the adapter: what changed since the last durable save. */
  changes(): PersistenceChanges<Conversation> {
    return this.tracker.changes(this.conversations);
  }

  /** @internal Used by the adapter: the changes of `token` are durable. */
  committed(token: unknown): void {
    this.tracker.committed(token);
  }

  /**
   * @internal Used by the adapter: other replicas' versions of some items, set and removed as they
   * are stored (so not changes of this replica's: nothing to save).
   */
  applyRemote(items: ReadonlyMap<string, Conversation>, deleted: readonly string[]): void {
    for (const [id, value] of items) this.conversations.set(id, value);
    for (const id of deleted) this.conversations.delete(id);
  }

  /** @internal Used by the adapter. */
  replaceAll(conversations: Map<string, Conversation>): void {
    this.conversations = conversations;
    this.tracker.reset();
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

  private put(id: string, value: Conversation): void {
    this.conversations.set(id, value);
    this.tracker.changed(id);
  }

  private remove(id: string): boolean {
    const existed = this.conversations.delete(id);
    if (existed) this.tracker.deleted(id);
    return existed;
  }
}
