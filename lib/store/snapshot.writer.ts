import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { storedFormsOf } from '../adapters/model.schema';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { SaveMetadata } from '../interfaces/persistence-metadata.interface';
import {
  duplicateSnapshotId,
  ioFailed,
  itemTooLarge,
  reasonOf,
  saveIncomplete,
  serializeFailed,
  unloadedItem,
} from '../persistence.messages';
import { TimeSlicer } from '../storage/event-loop.util';
import { encodeId } from '../storage/file-name.codec';
import { ItemFileCodec, ItemTooLargeError } from '../serializers/item-file.codec';
import { JournalOp } from '../storage/journal';
import { AdapterCaller } from './adapter.caller';
import { CommitSink } from './commit.sink';
import { CommittedEntry, CommittedIndex, hashBytes, UNHASHED } from './committed.index';
import { FailureMemo } from './failure.memo';
import { schemaVersionOf } from './schema.migrator';

/** Serializing is synchronous CPU work: let the application's I/O in between batches. */
/** Longest stretch of snapshot work (checks, serialization, hashing) between two yields, in ms. */
const SAVE_SLICE_MS = 5;

/**
 * A committed save: its metadata and the operations the next checkpoint must apply to the files (on
 * the journal, they point into it rather than hold their bytes).
 */
export interface SaveResult {
  meta: SaveMetadata;
  ops: JournalOp[];
  /** Set when some items or adapters could not be saved (everything else was committed). */
  incomplete?: PersistenceError;
}

/** True when an adapter reported no change at all (only the changes were looked at). */
const isEmpty = (taken: Taken): boolean =>
  taken.deleted !== undefined && taken.items.size === 0 && taken.deleted.length === 0;

/** How the writer checks values before they are committed. */
export interface WriterChecks {
  /** Finds what JSON cannot carry exactly in a custom adapter's value (undefined: none). */
  findProblem?: (value: unknown, allowToJSON: boolean) => string | undefined;
  /** Adapters whose values were checked when they were accepted (the built-in managers). */
  trusted: ReadonlySet<PersistenceAdapter>;
  /**
   * Adapters reporting their changes (`changes()`) whose committed index matches what they last
   * reported, by name, with the number of their entries that are unloaded files. A save of such an
   * adapter looks at its reported changes only; any other is compared item by item (a full pass),
   * after which it is added here. The store removes adapters whenever the index changes under them
   * (load, clear, restore, a new format, a recreated folder, a discarded file).
   */
  inSync: Map<string, number>;
}

/** What one adapter gave for a save. */
interface Taken {
  adapter: PersistenceAdapter;
  /** Every item (full pass), or only the changed ones (`deleted` set). */
  items: ReadonlyMap<string, unknown>;
  /** Ids deleted since the last commit, when only the changes are looked at. */
  deleted?: readonly string[];
  /** The adapter's change token, handed back to `committed()` once the save is durable. */
  token?: { value: unknown };
}

/** One adapter's part of a save, merged into the commit only when the adapter completed. */
interface AdapterPart {
  ops: JournalOp[];
  updates: Array<[string, CommittedEntry | undefined]>;
  saved: number;
  changed: number;
  deleted: number;
  size: number;
}

/**
 * Commits the adapters' state. Every snapshot is taken first (one moment for all adapters); the
 * items that changed since the last commit and the items that disappeared become one journal record,
 * appended and fsynced once: that is the commit, all or nothing. The item files are brought up to
 * date later, by the checkpoint.
 *
 * What cannot be saved never stops the rest: an item that cannot be stored exactly, is too large to
 * be read back, or would overwrite a file this store did not load is reported (once for each change
 * to it) and keeps its last committed version; an adapter whose snapshot fails keeps its whole
 * committed state. An I/O failure commits nothing.
 */
export class SnapshotWriter {
  constructor(
    private readonly journal: CommitSink,
    private readonly index: CommittedIndex,
    private readonly root: string,
    private readonly report: (error: PersistenceError) => void,
    private readonly caller: AdapterCaller,
    private readonly failures: FailureMemo,
    private readonly checks: WriterChecks,
  ) {}

  /**
   * @param beforeWrite runs after the snapshots are taken and before anything is compared or written
   *   (the store checks that its folder still exists there).
   */
  async save(
    adapters: readonly PersistenceAdapter[],
    codec: ItemFileCodec,
    operation: PersistenceOperation,
    beforeWrite: () => Promise<void> = () => Promise.resolve(),
  ): Promise<SaveResult> {
    const started = performance.now();
    const timestamp = new Date();
    // One slicer for the whole save: the first slice counts the changes() calls before it.
    const slicer = new TimeSlicer(SAVE_SLICE_MS);
    const snapshots: Taken[] = [];
    let failedAdapters = 0;
    for (const adapter of adapters) {
      try {
        // The changes first: a change made between the two calls stays reported for the next save.
        const changes = this.caller.changes(adapter, operation);
        const token = changes && { value: changes.token };
        if (changes && this.checks.inSync.has(adapter.name)) {
          snapshots.push({ adapter, items: changes.changed, deleted: changes.deleted, token });
        } else {
          snapshots.push({ adapter, items: await this.caller.snapshot(adapter, operation), token });
        }
      } catch (error) {
        failedAdapters++;
        this.report(error as PersistenceError);
      }
    }
    await beforeWrite();
    for (const taken of [...snapshots]) {
      if (taken.deleted !== undefined && !this.checks.inSync.has(taken.adapter.name)) {
        // The index changed under the adapter (a recreated folder): compare every item.
        try {
          taken.items = await this.caller.snapshot(taken.adapter, operation);
          taken.deleted = undefined;
        } catch (error) {
          failedAdapters++;
          snapshots.splice(snapshots.indexOf(taken), 1);
          this.report(error as PersistenceError);
        }
      }
    }
    if (failedAdapters === 0 && snapshots.every(isEmpty)) {
      // Nothing changed: nothing to compare, nothing to write.
      this.committed(snapshots, operation);
      return { meta: this.unchanged(snapshots, codec, timestamp, started), ops: [] };
    }
    const meta = this.emptyMeta(codec, timestamp);
    const ops: JournalOp[] = [];
    const updates: Array<[Map<string, CommittedEntry>, AdapterPart, Taken]> = [];
    // Each changed item's bytes go to the sink as soon as they are serialized (the journal writes
    // them right away): only a few items' bytes are alive at once, whatever the size of the save.
    const session = this.journal.begin();
    const sink = <T>(step: Promise<T>): Promise<T> =>
      step.catch((error: unknown) => {
        throw this.commitFailed(error, operation);
      });
    const add = (op: JournalOp): Promise<void> => sink(session.add(op));
    try {
      for (const taken of snapshots) {
        const { adapter, items } = taken;
        let committed = this.index.get(adapter.name);
        if (!committed) {
          committed = new Map();
          this.index.set(adapter.name, committed);
        }
        await sink(session.savepoint()); // an adapter refused halfway is rolled back to here
        const part = await this.savePart(
          adapter,
          items,
          committed,
          codec,
          operation,
          meta,
          taken,
          add,
          slicer,
        );
        if (!part) {
          failedAdapters++;
          await sink(session.rollback());
          continue;
        }
        ops.push(...part.ops);
        updates.push([committed, part, taken]);
        meta.items += part.saved;
        meta.adapters[adapter.name] = part.saved;
        meta.changed += part.changed;
        meta.deleted += part.deleted;
        meta.size += part.size;
      }
      if (session.size > 0) {
        await sink(session.commit());
      }
    } catch (error) {
      await session.abort().catch(() => undefined);
      throw error;
    }
    // Committed: bring the index up to date, in slices (a full save of the large tier updates tens
    // of thousands of entries). The save still holds the queue, so nothing else reads the index
    // of these adapters meanwhile.
    for (const [committed, part, taken] of updates) {
      let count = 0;
      for (const [stem, entry] of part.updates) {
        if (entry) committed.set(stem, entry);
        else committed.delete(stem);
        if (++count % 512 === 0) {
          const wait = slicer.yieldIfDue();
          if (wait) await wait;
        }
      }
      if (taken.deleted !== undefined) {
        // Only the changes were looked at: the saved state is every committed, loaded item.
        const saved = committed.size - (this.checks.inSync.get(taken.adapter.name) ?? 0);
        meta.items += saved - part.saved;
        meta.adapters[taken.adapter.name] = saved;
      } else if (taken.token) {
        let unloaded = 0;
        for (const entry of committed.values()) if (entry.unloaded !== undefined) unloaded++;
        this.checks.inSync.set(taken.adapter.name, unloaded);
      }
    }
    // Durable now: the adapters may forget the changes this save included.
    this.committed(
      updates.map(([, , taken]) => taken),
      operation,
    );
    meta.durationMs = performance.now() - started;
    const incomplete =
      meta.failed > 0 || failedAdapters > 0
        ? new PersistenceError(
            PersistenceErrorCode.SaveIncomplete,
            saveIncomplete(meta.failed, meta.items + meta.failed, failedAdapters),
            { operation, path: this.root },
          )
        : undefined;
    return { meta, ops, incomplete };
  }

  /** A failure of the sink, typed: nothing of the save was committed. */
  private commitFailed(error: unknown, operation: PersistenceOperation): PersistenceError {
    if (error instanceof PersistenceError) return error; // a storage driver's, already typed
    return new PersistenceError(
      PersistenceErrorCode.IoFailed,
      ioFailed('commit the save to', this.journal.path, reasonOf(error)),
      { operation, path: this.journal.path, cause: error },
    );
  }

  /** Hands each adapter's change token back: its changes up to that token are durable. */
  private committed(taken: readonly Taken[], operation: PersistenceOperation): void {
    for (const { adapter, token } of taken) {
      if (!token) continue;
      try {
        this.caller.committed(adapter, token.value, operation);
      } catch (error) {
        this.report(error as PersistenceError);
      }
    }
  }

  /** A save's metadata before anything is counted. */
  private emptyMeta(codec: ItemFileCodec, timestamp: Date): SaveMetadata {
    return {
      path: this.root,
      format: codec.serializer.format,
      size: 0,
      timestamp,
      items: 0,
      adapters: {},
      changed: 0,
      deleted: 0,
      failed: 0,
      durationMs: 0,
    };
  }

  /** The metadata of a save in which no adapter reported a change. */
  private unchanged(
    taken: readonly Taken[],
    codec: ItemFileCodec,
    timestamp: Date,
    started: number,
  ): SaveMetadata {
    const meta = this.emptyMeta(codec, timestamp);
    for (const { adapter } of taken) {
      const saved =
        (this.index.get(adapter.name)?.size ?? 0) - (this.checks.inSync.get(adapter.name) ?? 0);
      meta.adapters[adapter.name] = saved;
      meta.items += saved;
    }
    meta.durationMs = performance.now() - started;
    return meta;
  }

  /** One adapter's changes; `undefined` when the snapshot as a whole is unusable (reported). */
  private async savePart(
    adapter: PersistenceAdapter,
    items: ReadonlyMap<string, unknown>,
    committed: Map<string, CommittedEntry>,
    codec: ItemFileCodec,
    operation: PersistenceOperation,
    meta: SaveMetadata,
    taken: Taken,
    add: (op: JournalOp) => Promise<void>,
    slicer: TimeSlicer,
  ): Promise<AdapterPart | undefined> {
    const collection = adapter.name;
    const part: AdapterPart = { ops: [], updates: [], saved: 0, changed: 0, deleted: 0, size: 0 };
    const emit = (op: JournalOp): Promise<void> => {
      part.ops.push(op);
      return add(op);
    };
    const seen = new Set<string>();
    const immutable = adapter.immutable === true;
    const checkValues = !this.checks.trusted.has(adapter) ? this.checks.findProblem : undefined;
    const stored = storedFormsOf(adapter);
    const changesOnly = taken.deleted !== undefined;
    for (const [id, value] of items.entries()) {
      const wait = slicer.yieldIfDue();
      if (wait) await wait;
      let stem: string;
      try {
        stem = encodeId(id);
      } catch (error) {
        meta.failed++;
        this.reportItem(adapter, String(id), value, error, operation);
        continue;
      }
      if (seen.has(stem)) {
        this.report(
          new PersistenceError(
            PersistenceErrorCode.AdapterFailed,
            duplicateSnapshotId(collection, id),
            { operation, adapter: collection, itemId: id },
          ),
        );
        return undefined;
      }
      seen.add(stem);
      const entry = committed.get(stem);
      if (entry?.unloaded !== undefined) {
        meta.failed++;
        const error = new PersistenceError(
          PersistenceErrorCode.UnloadedItem,
          unloadedItem(collection, id, `${collection}/${entry.fileName}`, entry.unloaded),
          { operation, adapter: collection, itemId: id },
        );
        this.reportOnce(adapter, stem, value, error);
        continue;
      }
      const fileName = stem + codec.extension;
      const current =
        entry !== undefined &&
        entry.fileName === fileName &&
        entry.keyId === codec.keyId &&
        !entry.others &&
        entry.migrated !== true;
      if (immutable && current && entry.ref === value) {
        part.saved++;
        continue;
      }
      if (immutable && this.failures.isSameFailure(collection, stem, value, undefined)) {
        meta.failed++; // reported when it changed last
        continue;
      }
      let plain: Buffer;
      let data: Buffer;
      try {
        const problem = checkValues?.(value, typeof adapter.revive === 'function');
        if (problem !== undefined) throw new TypeError(problem);
        plain = await codec.serialize(id, value, schemaVersionOf(adapter, id), stored);
        data = codec.seal(collection, stem, plain);
      } catch (error) {
        meta.failed++;
        this.reportItem(adapter, id, value, error, operation, stem);
        continue;
      }
      this.failures.clear(collection, stem);
      part.saved++;
      // A change an immutable adapter reported is a new object: written without comparing bytes.
      const hash = changesOnly && immutable ? UNHASHED : hashBytes(plain);
      if (current && hash !== UNHASHED && entry.hash === hash) {
        entry.ref = value;
        continue;
      }
      part.size += data.length;
      await emit({ collection, fileName, data });
      for (const old of [entry?.fileName, ...(entry?.others ?? [])]) {
        if (old !== undefined && old !== fileName) await emit({ collection, fileName: old });
      }
      part.updates.push([stem, { fileName, ref: value, hash, keyId: codec.keyId }]);
      part.changed++;
    }
    for (const [stem, entry] of this.removed(committed, seen, taken.deleted)) {
      if (seen.has(stem) || entry.unloaded !== undefined) continue; // never remove what was not loaded
      for (const fileName of [entry.fileName, ...(entry.others ?? [])]) {
        await emit({ collection, fileName });
      }
      part.updates.push([stem, undefined]);
      part.deleted++;
      this.failures.clear(collection, stem);
    }
    return part;
  }

  /**
   * The committed entries whose item is gone: those of the ids reported deleted, or (full pass)
   * every entry not seen in the snapshot.
   */
  private *removed(
    committed: Map<string, CommittedEntry>,
    seen: ReadonlySet<string>,
    deleted: Iterable<string> | undefined,
  ): Iterable<[string, CommittedEntry]> {
    if (deleted === undefined) {
      yield* committed;
      return;
    }
    for (const id of deleted) {
      let stem: string;
      try {
        stem = encodeId(String(id));
      } catch {
        continue; // never saved under an id that has no file name
      }
      const entry = committed.get(stem);
      if (entry && !seen.has(stem)) yield [stem, entry];
    }
  }

  private reportItem(
    adapter: PersistenceAdapter,
    id: string,
    value: unknown,
    error: unknown,
    operation: PersistenceOperation,
    stem?: string,
  ): void {
    const collection = adapter.name;
    const context = { operation, adapter: collection, itemId: id, cause: error };
    const reported =
      error instanceof ItemTooLargeError
        ? new PersistenceError(
            PersistenceErrorCode.ItemTooLarge,
            itemTooLarge(collection, id, error.message),
            context,
          )
        : error instanceof PersistenceError
          ? new PersistenceError(error.code, error.message, context)
          : new PersistenceError(
              PersistenceErrorCode.SerializeFailed,
              serializeFailed(collection, id, reasonOf(error)),
              context,
            );
    if (stem === undefined) this.report(reported);
    else this.reportOnce(adapter, stem, value, reported);
  }

  /** Reports an item's failure once for each change to it. */
  private reportOnce(
    adapter: PersistenceAdapter,
    stem: string,
    value: unknown,
    error: PersistenceError,
  ): void {
    const fingerprint = adapter.immutable === true ? undefined : error.message;
    if (this.failures.isSameFailure(adapter.name, stem, value, fingerprint)) return;
    this.failures.remember(adapter.name, stem, value, error.message);
    this.report(error);
  }
}
