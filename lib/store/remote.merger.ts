import { storedFormsOf } from '../adapters/model.schema';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { StoredRecord } from '../interfaces/storage-driver.interface';
import * as messages from '../persistence.messages';
import { ItemFileCodec } from '../serializers/item-file.codec';
import { decodeStem, encodeId } from '../storage/file-name.codec';
import { AdapterCaller } from './adapter.caller';
import { LoadProblems } from './load.problems';
import { noteFailedRestore } from './snapshot.reader';
import { CommittedEntry, CommittedIndex, hashBytes } from './committed.index';
import { schemaVersionOf } from './schema.migrator';

/** A stored item decoded into the adapter's value and its committed entry. */
export interface DecodedRecord {
  id: string;
  value: unknown;
  entry: CommittedEntry;
}

/** Decodes a stored item like an item file; what cannot be used is reported and kept unloaded. */
export type RecordDecoder = (
  adapter: PersistenceAdapter,
  codec: ItemFileCodec,
  record: StoredRecord,
  operation: PersistenceOperation,
  problems?: LoadProblems,
) => Promise<DecodedRecord | { unloaded: CommittedEntry }>;

/** What the merger needs from the store. */
export interface RemoteMergerHost {
  index: CommittedIndex;
  /** See `WriterChecks.inSync`. */
  inSync: Map<string, number>;
  codec(): ItemFileCodec;
  caller(): AdapterCaller;
  /** Reports an error; `log: false` for an item's problem, which a load's summary counts. */
  fail(error: PersistenceError, operation: PersistenceOperation, log?: boolean): PersistenceError;
}

/** One remote version, decoded before anything of the adapter is looked at. */
type Incoming =
  | { kind: 'set'; id: string; value: unknown; entry: CommittedEntry }
  | { kind: 'unloaded'; entry: CommittedEntry }
  | { kind: 'removed' };

/** What the merge saw of one item's local value while it hashed it. */
interface Seen {
  value: unknown;
  dirty: boolean;
}

/**
 * Puts other replicas' versions of some items into an adapter, item by item. It never replaces the
 * adapter's state with an older snapshot, and never overwrites a change this replica made and has
 * not committed, including one made while the merge runs:
 *  1. every remote version is decoded first (asynchronous), before the adapter is looked at;
 *  2. for adapters that cannot say what changed, each named item's local value is compared with
 *     the committed version (asynchronous: hashing), remembering the value compared;
 *  3. then, in one synchronous step, the changes made meanwhile are taken (`changes()`, or values
 *     that are no longer the ones compared), those items are left as they are, and the others are
 *     applied: `applyRemote()` for the named items only, or (without it) a `snapshot()` taken in
 *     that same step with those items replaced, `restore()`d.
 * A skipped item keeps its local version: the next save commits it, and the conflict policy decides.
 */
export class RemoteMerger {
  /**
   * Stems (by collection) whose remote version was left out because of a change here. They are
   * merged again after this replica's next save: a change that saved as nothing (an item created
   * and removed again, or changed back) must not leave the replica behind the storage for good.
   */
  readonly skipped = new Map<string, Set<string>>();

  constructor(
    private readonly host: RemoteMergerHost,
    private readonly decode: RecordDecoder,
  ) {}

  /** Applies `remote` (by stem; `undefined`: removed) to `adapter`. Returns how many items changed. */
  async merge(
    adapter: PersistenceAdapter,
    remote: ReadonlyMap<string, StoredRecord | undefined>,
    operation: PersistenceOperation,
    problems?: LoadProblems,
  ): Promise<number> {
    const { index, inSync } = this.host;
    const caller = this.host.caller();
    const codec = this.host.codec();
    let committed = index.get(adapter.name);
    if (!committed) index.set(adapter.name, (committed = new Map<string, CommittedEntry>()));

    const incoming = new Map<string, Incoming>();
    for (const [stem, record] of remote) {
      const entry = committed.get(stem);
      if (record && entry?.revision === record.revision && entry.unloaded === undefined) continue;
      if (!record && !entry) continue;
      if (!record) {
        incoming.set(stem, { kind: 'removed' });
        continue;
      }
      const decoded = await this.decode(adapter, codec, record, operation, problems);
      incoming.set(
        stem,
        'unloaded' in decoded
          ? { kind: 'unloaded', entry: decoded.unloaded }
          : { kind: 'set', id: decoded.id, value: decoded.value, entry: decoded.entry },
      );
    }
    if (incoming.size === 0) return 0;

    const reports = typeof adapter.changes === 'function';
    // In step: every change since the index was last brought up to date is in changes().
    const tracked = reports && inSync.has(adapter.name);
    const ids = new Map<string, string | undefined>();
    for (const [stem, item] of incoming) {
      ids.set(stem, item.kind === 'set' ? item.id : decodeStem(stem));
    }
    const seen = new Map<string, Seen>();
    if (!tracked || [...ids.values()].includes(undefined)) {
      const snapshot = await caller.snapshot(adapter, operation);
      resolveHashedStems(ids, snapshot);
      if (!tracked) {
        for (const [stem, id] of ids) {
          const value = id === undefined ? undefined : snapshot.get(id);
          const dirty = await isDirty(adapter, codec, id, value, committed.get(stem));
          seen.set(stem, { value, dirty });
        }
      }
    }

    let now: ReadonlyMap<string, unknown> | undefined;
    if (!adapter.applyRemote || !reports) {
      const taken = caller.snapshotNow(adapter, operation);
      now = taken instanceof Promise ? await taken : taken;
    }
    // From here to the adapter's applyRemote() or restore() nothing awaits: the application cannot
    // change the adapter in between.
    const reported = reports ? changedIds(caller, adapter, operation) : undefined;
    const changedHere = (stem: string, id: string | undefined): boolean => {
      if (id !== undefined && reported?.has(id)) return true;
      if (tracked) return false;
      const before = seen.get(stem)!;
      if (before.dirty) return true;
      if (!now) return false; // changes() reports anything changed since it was compared
      const value = id === undefined ? undefined : now.get(id);
      return value !== before.value && !sameJson(value, before.value);
    };
    const items = new Map<string, unknown>();
    const deleted: string[] = [];
    const applied: string[] = [];
    let unloadedDelta = 0;
    let rewrite = false;
    let skipped = this.skipped.get(adapter.name);
    for (const [stem, item] of incoming) {
      const id = ids.get(stem);
      if (changedHere(stem, id)) {
        if (!skipped) this.skipped.set(adapter.name, (skipped = new Set<string>()));
        skipped.add(stem);
        continue;
      }
      skipped?.delete(stem);
      const wasUnloaded = committed.get(stem)?.unloaded !== undefined;
      if (item.kind === 'unloaded') {
        committed.set(stem, item.entry); // memory keeps what it has; saves never overwrite it
        if (!wasUnloaded) unloadedDelta++;
        continue;
      }
      if (wasUnloaded) unloadedDelta--;
      if (item.kind === 'set') {
        items.set(item.id, item.value);
        committed.set(stem, item.entry);
        const { entry } = item;
        if (entry.hash === '' || entry.migrated || entry.keyId !== codec.keyId) rewrite = true;
      } else {
        if (id !== undefined) deleted.push(id);
        committed.delete(stem);
      }
      applied.push(stem);
    }
    if (skipped?.size === 0) this.skipped.delete(adapter.name);
    const count = inSync.get(adapter.name);
    if (count !== undefined) inSync.set(adapter.name, count + unloadedDelta);
    if (applied.length === 0) return 0;
    if (rewrite || !adapter.applyRemote) inSync.delete(adapter.name); // restore() resets tracking
    try {
      if (adapter.applyRemote) {
        caller.applyRemote(adapter, items, deleted, operation);
      } else {
        const merged = new Map(now);
        for (const [id, value] of items) merged.set(id, value);
        for (const id of deleted) merged.delete(id);
        const restoring = caller.restoreNow(adapter, merged, operation);
        if (restoring instanceof Promise) await restoring;
      }
    } catch (error) {
      const why = `adapter "${adapter.name}" failed to restore it`;
      const failure = adapterError(adapter, error, operation);
      const failed = new Map<string, CommittedEntry>();
      for (const stem of applied) {
        const entry = committed.get(stem);
        if (!entry || entry.unloaded !== undefined) continue;
        entry.unloaded = why;
        entry.unloadedCode = failure.code;
        entry.unloadedKind = 'restore-failed';
        failed.set(stem, entry);
      }
      inSync.delete(adapter.name);
      if (problems) {
        noteFailedRestore(problems, adapter.name, failed, failure, (e, log) =>
          this.host.fail(e, operation, log),
        );
      } else {
        this.host.fail(failure, operation);
      }
      return 0;
    }
    return applied.length;
  }
}

/** Ids the adapter reports changed or deleted since its last committed changes. */
function changedIds(
  caller: AdapterCaller,
  adapter: PersistenceAdapter,
  operation: PersistenceOperation,
): Set<string> {
  const changes = caller.changes(adapter, operation)!;
  const ids = new Set<string>(changes.deleted);
  for (const id of changes.changed.keys()) ids.add(id);
  return ids;
}

/** Fills in the ids of hashed stems (`~~…`, which do not decode) from the adapter's items. */
function resolveHashedStems(
  ids: Map<string, string | undefined>,
  snapshot: ReadonlyMap<string, unknown>,
): void {
  const missing = new Set<string>();
  for (const [stem, id] of ids) if (id === undefined) missing.add(stem);
  if (missing.size === 0) return;
  for (const id of snapshot.keys()) {
    const stem = safeEncode(id);
    if (stem !== undefined && missing.has(stem)) ids.set(stem, id);
  }
}

/** True when the adapter holds a version of the item that is not the committed one. */
async function isDirty(
  adapter: PersistenceAdapter,
  codec: ItemFileCodec,
  id: string | undefined,
  value: unknown,
  entry: CommittedEntry | undefined,
): Promise<boolean> {
  if (entry === undefined) return value !== undefined;
  if (entry.unloaded !== undefined) return false;
  if (value === undefined) return true; // removed here, not saved yet
  if (value === entry.ref) return false;
  try {
    const plain = await codec.serialize(
      id!,
      value,
      schemaVersionOf(adapter, id),
      storedFormsOf(adapter),
    );
    return hashBytes(plain) !== entry.hash;
  } catch {
    return true;
  }
}

/** Same JSON text: a value replaced by an equal one (or copied by `snapshot()`) is no change. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === undefined || b === undefined) return false;
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
  }
}

function safeEncode(id: string): string | undefined {
  try {
    return encodeId(id);
  } catch {
    return undefined;
  }
}

function adapterError(
  adapter: PersistenceAdapter,
  error: unknown,
  operation: PersistenceOperation,
): PersistenceError {
  return error instanceof PersistenceError
    ? error
    : new PersistenceError(
        PersistenceErrorCode.AdapterFailed,
        messages.adapterFailed(adapter.name, 'restore', messages.reasonOf(error)),
        { operation, adapter: adapter.name, cause: error },
      );
}
