import { Injectable, Logger } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import {
  FocusManager,
  LoadMetadata,
  MemoryManager,
  PersistenceEvents,
  SaveMetadata,
  SessionManager,
} from 'nestjs-persistence';

/** What the sample prints at start-up: the state it found, in a form easy to compare. */
export interface StateSummary {
  sessions: Array<{ id: string; status: string; user: unknown }>;
  conversations: Array<{ id: string; messages: string[] }>;
  focus: Array<{ id: string; targets: string[] }>;
}

/** A tiny assistant: one session per user, a conversation with messages, a focus chain. */
@Injectable()
export class ChatService {
  private readonly logger = new Logger(ChatService.name);

  constructor(
    private readonly sessions: SessionManager,
    private readonly memory: MemoryManager,
    private readonly focus: FocusManager,
  ) {}

  /** Starts a chat for a user and has a short exchange. */
  startChat(user: string): void {
    const session = this.sessions.create({ id: `session-${user}`, metadata: { user } });
    const conversation = this.memory.create({
      id: `conversation-${user}`,
      sessionId: session.id,
      title: `Chat with ${user}`,
    });
    this.memory.addMessage(conversation.id, { role: 'user', content: 'Where is bootstrap()?' });
    this.memory.addMessage(conversation.id, { role: 'assistant', content: 'In src/main.ts.' });
    this.memory.addMessage(conversation.id, { role: 'user', content: 'Thanks!' });
    const chain = this.focus.create({ id: `focus-${user}` });
    this.focus.pushFocus(chain.id, { type: 'file', target: 'src/main.ts' });
    this.focus.pushFocus(chain.id, { type: 'symbol', target: 'bootstrap' });
  }

  summary(): StateSummary {
    const byId = <T extends { id: string }>(a: T, b: T): number => a.id.localeCompare(b.id);
    return {
      sessions: this.sessions
        .list()
        .sort(byId)
        .map((s) => ({ id: s.id, status: s.status, user: s.metadata.user })),
      conversations: this.memory
        .list()
        .sort(byId)
        .map((c) => ({ id: c.id, messages: c.messages.map((m) => `${m.role}: ${m.content}`) })),
      focus: this.focus
        .list()
        .sort(byId)
        .map((c) => ({ id: c.id, targets: c.items.map((f) => f.target) })),
    };
  }

  @OnEvent(PersistenceEvents.Loaded)
  onLoaded(meta: LoadMetadata): void {
    this.logger.log(`Loaded ${meta.items} items (${meta.size} bytes) from ${meta.path}`);
  }

  @OnEvent(PersistenceEvents.Saved)
  onSaved(meta: SaveMetadata): void {
    this.logger.log(
      `Saved ${meta.items} items (${meta.changed} changed, ${meta.size} bytes) in ${meta.durationMs.toFixed(1)} ms`,
    );
  }
}
