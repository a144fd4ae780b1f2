import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceLogger } from '../events/persistence.logger';
import { loadProblem, unreadableAtStart } from '../persistence.messages';
import { decodeStem } from '../storage/file-name.codec';
import { CommittedIndex, needsAction, UnloadedKind } from './committed.index';

/** A kind of load problem: why items stayed unloaded, or `'quarantined'` (moved aside). */
export type LoadProblemKind = UnloadedKind | 'quarantined';

/** How many example ids a summary names. */
const EXAMPLES = 3;

/**
 * The order of the summary's lines, most urgent first. Files are read in parallel, so the order
 * they are met in says nothing: lines, collections and example ids are sorted.
 */
const KIND_ORDER: readonly LoadProblemKind[] = [
  'wrong-key',
  'unreadable',
  'corrupt',
  'missing-package',
  'migration-failed',
  'restore-failed',
  'newer-schema',
  'quarantined',
  'not-loaded',
];

/** The items of one kind of problem. */
export interface LoadProblemGroup {
  kind: LoadProblemKind;
  count: number;
  /** Items per collection, by collection name. */
  collections: Map<string, number>;
  /** The first few ids, in sort order. */
  examples: string[];
  /** The message of the first item's error, when there was one. */
  first?: string;
}

/**
 * What one load could not use, grouped by kind of problem, so that a load logs one line per kind
 * (with the count, the collections and a few ids) instead of one line per item. Each item's error
 * still goes to the listeners (`onError()`, `@OnEvent`, `events$`), one event per item, without a
 * log line of its own.
 */
export class LoadProblems {
  private readonly groups = new Map<LoadProblemKind, LoadProblemGroup>();

  /** The problems of the entries of `index` that need someone to act (see `needsAction`). */
  static unresolved(index: CommittedIndex): LoadProblems {
    const problems = new LoadProblems();
    for (const [collection, entries] of index) {
      for (const [stem, entry] of entries) {
        if (entry.unloaded === undefined || !needsAction(entry.unloadedKind)) continue;
        problems.add(entry.unloadedKind ?? 'corrupt', collection, decodeStem(stem) ?? stem);
      }
    }
    return problems;
  }

  add(kind: LoadProblemKind, collection: string, id: string, error?: PersistenceError): void {
    let group = this.groups.get(kind);
    if (!group) {
      group = { kind, count: 0, collections: new Map(), examples: [], first: error?.message };
      this.groups.set(kind, group);
    }
    group.count++;
    group.collections.set(collection, (group.collections.get(collection) ?? 0) + 1);
    const examples = group.examples;
    if (examples.length < EXAMPLES || id < examples[examples.length - 1]) {
      examples.push(id);
      examples.sort();
      if (examples.length > EXAMPLES) examples.pop();
    }
  }

  /** Items counted, of every kind. */
  get count(): number {
    let count = 0;
    for (const group of this.groups.values()) count += group.count;
    return count;
  }

  /** The groups, most urgent kind first, each with its collections by name. */
  list(): LoadProblemGroup[] {
    return [...this.groups.values()]
      .sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind))
      .map((group) => ({
        ...group,
        collections: new Map([...group.collections].sort(([a], [b]) => (a < b ? -1 : 1))),
      }));
  }

  /**
   * Logs one line per kind: an error for the kinds that need someone to act, a warning for items
   * moved to quarantine or written by a newer schema version.
   */
  log(logger: PersistenceLogger, location: string): void {
    for (const group of this.list()) {
      const line = loadProblem(group, location);
      if (group.kind !== 'quarantined' && needsAction(group.kind)) logger.error(line);
      else logger.warn(line);
    }
  }

  /**
   * The refusal of a start (`onUnreadable: 'fail'`) when this load left items that need someone to
   * act; `undefined` when it left none.
   */
  refusal(location: string, canDiscard: boolean): PersistenceError | undefined {
    const groups = this.list().filter((g) => g.kind !== 'quarantined' && needsAction(g.kind));
    if (groups.length === 0) return undefined;
    const count = groups.reduce((n, g) => n + g.count, 0);
    return new PersistenceError(
      PersistenceErrorCode.UnreadableItems,
      unreadableAtStart(location, count, groups, canDiscard),
      { operation: 'init', path: location },
    );
  }
}
