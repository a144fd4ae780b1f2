/** Who wrote a message. */
export type MessageRole = 'user' | 'assistant' | 'system' | 'tool';

/** One message of a conversation. */
export interface Message {
  readonly id: string;
  readonly role: MessageRole;
  readonly content: string;
  readonly timestamp: Date;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** A conversation with its messages in order, as `MemoryManager` hands it out (read-only). */
export interface Conversation {
  readonly id: string;
  readonly title?: string;
  /** The session this conversation belongs to, if any. */
  readonly sessionId?: string;
  readonly messages: readonly Message[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** What `MemoryManager.createConversation()` takes. */
export interface CreateConversationInput {
  /** @default a random UUID */
  id?: string;
  title?: string;
  sessionId?: string;
  /** @default {} */
  metadata?: Record<string, unknown>;
}

/** What `MemoryManager.addMessage()` takes. */
export interface AddMessageInput {
  /** @default a random UUID */
  id?: string;
  role: MessageRole;
  content: string;
  /** @default {} */
  metadata?: Record<string, unknown>;
}

export const MESSAGE_ROLES: readonly MessageRole[] = ['user', 'assistant', 'system', 'tool'];
