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
import { CreateFocusChainInput, Focus, FocusChain, PushFocusInput } from './focus.model';
import { FOCUS_CHAIN_SCHEMA, FOCUS_SCHEMA } from './focus.schema';

/** Focus chains in memory; every change replaces the chain object. */
@Injectable()
export class FocusManager {
  private chains = new Map<string, FocusChain>();
  private readonly tracker = new ChangeTracker<FocusChain>('focus');

  /**
   * A notice for every change made through this manager (`{ adapter: 'focus', id, kind }`, kind
   * `changed` or `deleted`), as it happens; not for a load, which replaces the whole state. With
   * `autoSave.debounce`, the store saves that many milliseconds after a change.
   */
  readonly changes$: Observable<PersistenceChange> = this.tracker.changes$;

  /**
   * Creates an empty chain. Throws `PERSISTENCE_INVALID_INPUT` for a field it cannot store exactly
   * (see {@link CreateFocusChainInput}), `PERSISTENCE_INVALID_ID` for a bad or taken id.
   */
  create(init: CreateFocusChainInput = {}): FocusChain {
    const input = parseInput(FOCUS_CHAIN_SCHEMA, init, 'FocusManager.create()', [
      'id',
      'name',
      'metadata',
    ]);
    const id = input.id ?? randomUUID();
    if (this.chains.has(id)) {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidId,
        `Focus chain "${id}" already exists. Push onto it, or use another id.`,
        { itemId: id },
      );
    }
    const now = new Date();
    const chain: FocusChain = Object.freeze({
      id,
      ...(input.name === undefined ? {} : { name: input.name }),
      items: Object.freeze([]),
      createdAt: now,
      updatedAt: now,
      metadata: input.metadata ?? emptyJsonObject(),
    });
    this.put(id, chain);
    return chain;
  }

  /**
   * Pushes a focus entry (only the new entry is checked; the chain is replaced, not changed). Throws
   * `PERSISTENCE_NOT_FOUND` for an unknown chain, `PERSISTENCE_INVALID_INPUT` for a field it cannot
   * store exactly (see {@link PushFocusInput}), `PERSISTENCE_INVALID_ID` for a bad id.
   */
  pushFocus(chainId: string, entry: PushFocusInput): Focus {
    const chain = this.require(chainId);
    const input = parseInput(FOCUS_SCHEMA, entry, 'FocusManager.pushFocus()', [
      'id',
      'type',
      'target',
      'context',
    ]);
    const now = new Date();
    const focus: Focus = Object.freeze({
      id: input.id ?? randomUUID(),
      type: input.type!,
      target: input.target!,
      context: input.context ?? emptyJsonObject(),
      createdAt: now,
    });
    this.put(
      chainId,
      Object.freeze({ ...chain, items: Object.freeze([...chain.items, focus]), updatedAt: now }),
    );
    return focus;
  }

  /** Removes and returns the current (last) focus; `undefined` when the chain is empty. */
  popFocus(chainId: string): Focus | undefined {
    const chain = this.require(chainId);
    const current = chain.items.at(-1);
    if (current) {
      this.put(
        chainId,
        Object.freeze({
          ...chain,
          items: Object.freeze(chain.items.slice(0, -1)),
          updatedAt: new Date(),
        }),
      );
    }
    return current;
  }

  /** The current (last) focus of a chain. */
  currentFocus(chainId: string): Focus | undefined {
    return this.require(chainId).items.at(-1);
  }

  /** The chain with this id, or `undefined`. */
  get(id: string): FocusChain | undefined {
    return this.chains.get(id);
  }

  /** Removes a chain; returns whether it existed. */
  delete(id: string): boolean {
    return this.remove(id);
  }

  /** Every chain, as a new array. */
  list(): FocusChain[] {
    return [...this.chains.values()];
  }

  /** @internal Used by the adapter. */
  entries(): ReadonlyMap<string, FocusChain> {
    return new Map(this.chains);
  }

  /** @internal Used by the adapter: what changed since the last durable save. */
  changes(): PersistenceChanges<FocusChain> {
    return this.tracker.changes(this.chains);
  }

  /** @internal Used by the adapter: the changes of `token` are durable. */
  committed(token: unknown): void {
    this.tracker.committed(token);
  }

  /**
   * @internal Used by the adapter: other replicas' versions of some items, set and removed as they
   * are stored (so not changes of this replica's: nothing to save).
   */
  applyRemote(items: ReadonlyMap<string, FocusChain>, deleted: readonly string[]): void {
    for (const [id, value] of items) this.chains.set(id, value);
    for (const id of deleted) this.chains.delete(id);
  }

  /** @internal Used by the adapter. */
  replaceAll(chains: Map<string, FocusChain>): void {
    this.chains = chains;
    this.tracker.reset();
  }

  private require(id: string): FocusChain {
    const chain = this.chains.get(id);
    if (!chain) {
      throw new PersistenceError(PersistenceErrorCode.NotFound, notFound('Focus chain', id), {
        itemId: id,
      });
    }
    return chain;
  }

  private put(id: string, value: FocusChain): void {
    this.chains.set(id, value);
    this.tracker.changed(id);
  }

  private remove(id: string): boolean {
    const existed = this.chains.delete(id);
    if (existed) this.tracker.deleted(id);
    return existed;
  }
}
