import { Injectable } from '@nestjs/common';
import { PersistedState } from '../../decorators/persisted-state.decorator';
import { Observable } from 'rxjs';
import {
  PersistenceAdapter,
  PersistenceChange,
  PersistenceChanges,
} from '../../interfaces/persistence-adapter.interface';
import { RecordJsonWriter } from '../list-json.cache';
import { reviveModel, STORED_FORM, STORED_JSON, storedForm } from '../model.schema';
import { JsonPiece } from '../../serializers/json-text.util';
import { Conversation } from './conversation.model';
import { CONVERSATION_SCHEMA } from './conversation.schema';
import { MemoryManager } from './memory.manager';

/** Persists `MemoryManager` under `<path>/conversations/`, one file per conversation. */
@Injectable()
@PersistedState('conversations')
export class MemoryAdapter implements PersistenceAdapter<Conversation> {
  readonly name = 'conversations';
  /** Records are frozen and replaced on every change. */
  readonly immutable = true;
  /**
   * Schema version of the stored records (`sv` in their files; absent means 1). A future release
   * that changes the record's shape raises it and adds the migration from the previous version in
   * `migrations` here, so files written by this release keep loading.
   */
  readonly version = 1;

  /** Keeps the text of each conversation's messages, so a save writes only the new ones anew. */
  private readonly json = new RecordJsonWriter(CONVERSATION_SCHEMA, 'messages');

  constructor(private readonly memory: MemoryManager) {}

  /** Change notices of the manager (see `autoSave.debounce`). */
  get changes$(): Observable<PersistenceChange> {
    return this.memory.changes$;
  }

  /** What changed since the last durable save: a save costs what changed. */
  changes(): PersistenceChanges<Conversation> {
    this.json.nextSave();
    return this.memory.changes();
  }

  committed(token: unknown): void {
    this.memory.committed(token);
  }

  snapshot(): ReadonlyMap<string, Conversation> {
    this.json.nextSave();
    return this.memory.entries();
  }

  /** @internal The record as JSON writes it, for a faster save (same bytes). */
  [STORED_FORM](record: Conversation): unknown {
    return storedForm(CONVERSATION_SCHEMA, record);
  }

  /** @internal The record's JSON text, reusing its messages' text from the last save. */
  [STORED_JSON](id: string, record: Conversation, indent: number): JsonPiece[] {
    return this.json.pieces(id, record, indent);
  }

  /** Reads a conversation back with the schemas `MemoryManager` checks its input with. */
  revive(raw: unknown, id: string): Conversation {
    return reviveModel(CONVERSATION_SCHEMA, raw, id);
  }

  restore(items: ReadonlyMap<string, Conversation>): void {
    this.json.clear(); // the loaded records share no message with the kept texts
    this.memory.replaceAll(new Map(items));
  }

  /** Other replicas' versions of some items (a store on a storage driver): the rest stays. */
  applyRemote(items: ReadonlyMap<string, Conversation>, deleted: readonly string[]): void {
    for (const id of [...items.keys(), ...deleted]) this.json.forget(id);
    this.memory.applyRemote(items, deleted);
  }
}
