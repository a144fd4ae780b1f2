/*
 * The benchmark's data: three tiers of sessions, conversations and focus chains, built through the
 * public managers from a seeded PRNG (the same content on every run; only the managers' timestamps
 * differ), the "1% change", and the normalized dump every backend's reload is checked against.
 */
import { INestApplicationContext } from '@nestjs/common';
import { FocusManager, MemoryManager, SessionManager } from '../lib';
import { prng } from '../test/fixtures/prng';

/** Sizes of one workload tier. */
export interface Tier {
  name: TierName;
  sessions: number;
  conversations: number;
  messages: number;
  /** Characters of each message's content. */
  messageChars: number;
  chains: number;
  chainItems: number;
  /**
   * 1% saves in the steady-state sequence: enough for the journal (8 MiB by default) to pass
   * `checkpointBytes` at least twice in medium and large; small never reaches it.
   */
  steadySaves: number;
}

export type TierName = 'small' | 'medium' | 'large';

export const TIERS: Record<TierName, Tier> = {
  small: {
    name: 'small',
    sessions: 100,
    conversations: 100,
    messages: 20,
    messageChars: 300,
    chains: 100,
    chainItems: 5,
    steadySaves: 20,
  },
  medium: {
    name: 'medium',
    sessions: 1000,
    conversations: 1000,
    messages: 50,
    messageChars: 300,
    chains: 1000,
    chainItems: 10,
    steadySaves: 70,
  },
  large: {
    name: 'large',
    sessions: 10_000,
    conversations: 5000,
    messages: 100,
    messageChars: 300,
    chains: 10_000,
    chainItems: 10,
    steadySaves: 20,
  },
};

/** Collection names, as the built-in adapters name their folders. */
export const COLLECTIONS = ['sessions', 'conversations', 'focus'] as const;
export type CollectionName = (typeof COLLECTIONS)[number];

/** One item to store: its collection, id and value (the manager's object, as handed out). */
export type Item = [collection: CollectionName, id: string, value: unknown];

const WORDS =
  'the store saves every session message and focus chain to disk so that a restart loses nothing at all while the event loop stays free for requests'.split(
    ' ',
  );

function text(random: () => number, chars: number): string {
  let out = '';
  while (out.length < chars) out += `${WORDS[Math.floor(random() * WORDS.length)]} `;
  return out.slice(0, chars);
}

/** The state of one application, changed through its public managers. */
export class Workload {
  private readonly sessions: SessionManager;
  private readonly memory: MemoryManager;
  private readonly focus: FocusManager;
  private readonly random = prng(1);

  constructor(
    private readonly app: INestApplicationContext,
    readonly tier: Tier,
  ) {
    this.sessions = app.get(SessionManager);
    this.memory = app.get(MemoryManager);
    this.focus = app.get(FocusManager);
  }

  /** Creates every item of the tier (seeded: the same content on every run). */
  fill(): void {
    const t = this.tier;
    for (let i = 0; i < t.sessions; i++) {
      this.sessions.create({
        id: `session-${i}`,
        metadata: { user: `user-${i}`, plan: i % 3 ? 'free' : 'pro', visits: i },
      });
    }
    for (let i = 0; i < t.conversations; i++) {
      this.memory.create({ id: `conversation-${i}`, sessionId: `session-${i}` });
      for (let m = 0; m < t.messages; m++) {
        this.memory.addMessage(`conversation-${i}`, {
          id: `m-${m}`,
          role: m % 2 ? 'assistant' : 'user',
          content: text(this.random, t.messageChars),
        });
      }
    }
    for (let i = 0; i < t.chains; i++) {
      this.focus.create({ id: `chain-${i}` });
      for (let f = 0; f < t.chainItems; f++) {
        this.focus.pushFocus(`chain-${i}`, {
          id: `f-${f}`,
          type: 'file',
          target: `src/module-${Math.floor(this.random() * 1000)}/file-${f}.ts`,
        });
      }
    }
  }

  /**
   * The 1% change: 1% of the sessions updated, a message appended to 1% of the conversations, 1% of
   * the chains with their last focus replaced. Which items change follows the PRNG.
   * @returns the keys of the changed items
   */
  changeOnePercent(round: number): Array<[CollectionName, string]> {
    const t = this.tier;
    const changed: Array<[CollectionName, string]> = [];
    for (const i of this.pick(t.sessions)) {
      this.sessions.update(`session-${i}`, { status: `round-${round}` });
      changed.push(['sessions', `session-${i}`]);
    }
    for (const i of this.pick(t.conversations)) {
      this.memory.addMessage(`conversation-${i}`, {
        id: `r-${round}`,
        role: 'user',
        content: text(this.random, t.messageChars),
      });
      changed.push(['conversations', `conversation-${i}`]);
    }
    for (const i of this.pick(t.chains)) {
      this.focus.popFocus(`chain-${i}`);
      this.focus.pushFocus(`chain-${i}`, { id: `r-${round}`, type: 'line', target: `${round}` });
      changed.push(['focus', `chain-${i}`]);
    }
    return changed;
  }

  /**
   * Every item changed (a full save's worth): each session updated, a message appended to each
   * conversation, each chain's last focus replaced.
   */
  changeAll(round: number): void {
    const t = this.tier;
    for (let i = 0; i < t.sessions; i++) {
      this.sessions.update(`session-${i}`, { status: `all-${round}` });
    }
    const content = text(this.random, t.messageChars);
    for (let i = 0; i < t.conversations; i++) {
      this.memory.addMessage(`conversation-${i}`, { id: `a-${round}`, role: 'user', content });
    }
    for (let i = 0; i < t.chains; i++) {
      this.focus.popFocus(`chain-${i}`);
      this.focus.pushFocus(`chain-${i}`, { id: `a-${round}`, type: 'line', target: `${round}` });
    }
  }

  /** The current value of one item. */
  get(collection: CollectionName, id: string): unknown {
    switch (collection) {
      case 'sessions':
        return this.sessions.get(id);
      case 'conversations':
        return this.memory.get(id);
      case 'focus':
        return this.focus.get(id);
    }
  }

  /** Every item, as the managers hold them now. */
  all(): Item[] {
    return itemsOf(this.app);
  }

  /** The items of the given keys, as the managers hold them now. */
  items(keys: Array<[CollectionName, string]>): Item[] {
    return keys.map(([collection, id]): Item => [collection, id, this.get(collection, id)]);
  }

  private pick(count: number): number[] {
    const wanted = Math.max(1, Math.round(count / 100));
    const picked = new Set<number>();
    while (picked.size < wanted) picked.add(Math.floor(this.random() * count));
    return [...picked];
  }
}

/** Every item the built-in managers of an application hold. */
export function itemsOf(app: INestApplicationContext): Item[] {
  return [
    ...app
      .get(SessionManager)
      .list()
      .map((s): Item => ['sessions', s.id, s]),
    ...app
      .get(MemoryManager)
      .list()
      .map((c): Item => ['conversations', c.id, c]),
    ...app
      .get(FocusManager)
      .list()
      .map((c): Item => ['focus', c.id, c]),
  ];
}
