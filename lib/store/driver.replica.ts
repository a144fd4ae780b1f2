import { storedFormsOf } from '../adapters/model.schema';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceLogger } from '../events/persistence.logger';
import { PersistenceNotifier } from '../events/persistence.notifier';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { LoadMetadata } from '../interfaces/persistence-metadata.interface';
import { createHash } from 'node:crypto';
import { BackupEntry } from '../interfaces/backup-target.interface';
import { BackupFile } from '../storage/backup.storage';
import {
  ConflictPolicy,
  DriverChange,
  DriverConflict,
  DriverWatchEvent,
  StorageDriver,
  StoredProblem,
  StoredRecord,
} from '../interfaces/storage-driver.interface';
import * as messages from '../persistence.messages';
import { TimeSlicer } from '../storage/event-loop.util';
import { decodeStem, encodeId } from '../storage/file-name.codec';
import { ItemDecodeError, ItemFileCodec } from '../serializers/item-file.codec';
import { AdapterCaller } from './adapter.caller';
import { CommittedEntry, CommittedIndex, hashBytes, UnloadedKind } from './committed.index';
import { DriverCommitSink } from './driver.sink';
import { OperationQueue } from './operation.queue';
import { reviveStored, schemaFailure, schemaVersionOf } from './schema.migrator';
import { LoadProblems } from './load.problems';
import { noteFailedRestore, restoreLoaded } from './snapshot.reader';

/** Longest stretch of decoding between two yields to the event loop, in ms (as on files). */
const LOAD_SLICE_MS = 5;
/** First delay before opening the storage again after it did not answer; doubles up to the max. */
export const DRIVER_RETRY_FIRST_MS = 500;
export const DRIVER_RETRY_MAX_MS = 30_000;

/** What the replica needs from the store that owns it. */
export interface DriverReplicaHost {
  driver: StorageDriver;
  conflicts: ConflictPolicy;
  adapters: readonly PersistenceAdapter[];
  index: CommittedIndex;
  /** See `WriterChecks.inSync`: an adapter is removed whenever its items change under it. */
  inSync: Map<string, number>;
  queue: OperationQueue;
  notifier: PersistenceNotifier;
  logger: PersistenceLogger;
  codec(): ItemFileCodec;
  caller(): AdapterCaller;
  /** Reports an error; `log: false` for an item's problem, which a load's summary counts. */
  fail(error: PersistenceError, operation: PersistenceOperation, log?: boolean): PersistenceError;
  /** `onUnreadable: 'fail'`: the boot load's unusable items (or its failure) refuse the start. */
  refuseUnreadable: boolean;
}

/** A stored item decoded into the adapter's value and its committed entry. */
interface DecodedRecord {
  id: string;
  value: unknown;
  entry: CommittedEntry;
}

/**
 * The store's side of a storage driver: opening (with retries while the storage does not answer),
 * loading, what follows a commit (revisions, conflicts, blocked items), and other replicas' commits
 * (`watch`). Items are keyed in the driver by their file-name stem. Every method that touches the
 * adapters runs on the store's operation queue.
 */
export class DriverReplica {
  readonly sink: DriverCommitSink;
  /** True once everything was loaded: saves are refused before (they could overwrite others'). */
  loaded = false;
  private opened = false;
  private closed = false;
  private unwatch?: () => void;
  private retry?: ReturnType<typeof setTimeout>;
  private attempts = 0;
  private started = false;

  constructor(private readonly host: DriverReplicaHost) {
    this.sink = new DriverCommitSink(
      host.driver,
      host.index,
      host.conflicts,
      () => host.codec().serializer.extension,
    );
  }

  get location(): string {
    return this.host.driver.location;
  }

  /**
   * Opens the storage and (with `load`) loads everything. When the storage does not answer, the
   * error is reported and opening is tried again with a backoff (0.5 s doubling to 30 s) until it
   * answers or the store closes; one outage logs one line (each attempt still reaches the
   * listeners). Rejects only at the boot (the first call) with `refuseUnreadable`: the load left
   * items nobody can use yet, or failed for another reason than an unreachable storage.
   */
  async start(load: boolean): Promise<void> {
    const boot = !this.started;
    this.started = true;
    let refusal: PersistenceError | undefined;
    try {
      await this.host.driver.open();
      this.opened = true;
      this.unwatch ??= this.host.driver.watch((event) => this.onWatch(event));
      await this.host.driver.watchReady?.();
      if (load && this.attempts === 0) {
        const problems = new LoadProblems();
        await this.load('load', problems, boot);
        if (boot) {
          refusal = this.host.refuseUnreadable ? problems.refusal(this.location, false) : undefined;
          if (!refusal) problems.log(this.host.logger, this.location);
        }
      } else if (load) {
        // The application has run meanwhile: keep what it changed, merge the stored state in.
        await this.applyRemote({ kind: 'resync' }, true);
        this.loaded = true;
      }
      if (this.attempts > 0) {
        this.host.logger.log(messages.storageAnsweredAgain(this.location, this.attempts));
      }
      this.attempts = 0;
    } catch (error) {
      const operation = this.opened ? 'load' : 'init';
      const failure = this.wrap(error, operation);
      const retry = failure.code === PersistenceErrorCode.StorageUnavailable && !this.closed;
      if (boot && !retry && this.host.refuseUnreadable) {
        refusal = new PersistenceError(
          PersistenceErrorCode.UnreadableItems,
          messages.loadFailedAtStart(this.location, failure.message),
          { operation: 'init', path: this.location, cause: failure },
        );
      } else {
        this.host.fail(failure, operation, this.attempts === 0 || !retry); // once per outage
      }
      if (retry) {
        const delay = Math.min(DRIVER_RETRY_FIRST_MS * 2 ** this.attempts, DRIVER_RETRY_MAX_MS);
        if (this.attempts === 0)
          this.host.logger.warn(messages.storageRetrying(this.location, delay));
        this.attempts++;
        this.retry = setTimeout(() => {
          this.retry = undefined;
          this.host.queue.run(() => this.start(load)).catch(() => undefined);
        }, delay);
      }
    }
    if (refusal) throw this.host.fail(refusal, 'init');
  }

  /** Refuses a save before the first load: it could overwrite what other replicas wrote. */
  assertLoaded(operation: PersistenceOperation): void {
    if (this.loaded) return;
    throw new PersistenceError(
      PersistenceErrorCode.StorageUnavailable,
      messages.storageNotLoaded(this.location),
      { operation, path: this.location },
    );
  }

  /**
   * Replaces every adapter's state with the stored one (`loadAll()`, boot). What could not be used
   * goes into `problems`, logged here one line per kind unless `deferLog` (the boot decides first).
   */
  async load(
    operation: PersistenceOperation,
    problems = new LoadProblems(),
    deferLog = false,
  ): Promise<LoadMetadata> {
    const started = performance.now();
    const codec = this.host.codec();
    const adapters = this.host.adapters;
    const meta = this.metadata();
    const { records, problems: stored } = await this.host.driver.loadAll(
      adapters.map((a) => a.name),
    );
    const byCollection = groupRecords(records);
    const states: Array<[PersistenceAdapter, Map<string, unknown>, Map<string, CommittedEntry>]> =
      [];
    const slicer = new TimeSlicer(LOAD_SLICE_MS); // decoding thousands of items: let the app run
    for (const adapter of adapters) {
      const values = new Map<string, unknown>();
      const committed = new Map<string, CommittedEntry>();
      for (const record of byCollection.get(adapter.name)?.values() ?? []) {
        const wait = slicer.yieldIfDue();
        if (wait) await wait;
        meta.size += record.data.length;
        const decoded = await this.decode(adapter, codec, record, operation, problems);
        if ('unloaded' in decoded) {
          meta.skipped++;
          committed.set(record.id, decoded.unloaded);
          continue;
        }
        values.set(decoded.id, decoded.value);
        committed.set(record.id, decoded.entry);
      }
      states.push([adapter, values, committed]);
    }
    const bad: CommittedIndex = new Map();
    for (const problem of stored) {
      meta.skipped++;
      this.problem(problem, operation, bad, problems);
    }
    this.host.index.clear();
    this.host.inSync.clear();
    for (const [adapter, values, committed] of states) {
      for (const [stem, entry] of bad.get(adapter.name) ?? []) committed.set(stem, entry);
      const failed = await restoreLoaded(
        this.host.caller(),
        adapter,
        values,
        committed,
        meta,
        operation,
      );
      if (failed) {
        noteFailedRestore(problems, adapter.name, committed, failed, (error, log) =>
          this.host.fail(error, operation, log),
        );
      }
      this.host.index.set(adapter.name, committed);
    }
    this.loaded = true;
    if (!deferLog) problems.log(this.host.logger, this.location);
    meta.durationMs = performance.now() - started;
    this.host.notifier.loaded(meta);
    return meta;
  }

  /**
   * After a commit the writer recorded as done: the new revisions, the conflicts (emitted; with
   * `'reject'` the remote version is loaded into the adapter), and the items blocked by bad data.
   */
  async afterCommit(operation: PersistenceOperation): Promise<void> {
    const last = this.sink.last;
    this.sink.last = undefined;
    if (!last) return;
    const { result } = last;
    for (const change of result.applied) {
      const entry = this.host.index.get(change.collection)?.get(change.id);
      if (entry && !change.deleted) entry.revision = change.revision;
    }
    const rejected = new Map<string, Map<string, StoredRecord | undefined>>();
    for (const conflict of result.conflicts) {
      await this.reportConflict(conflict);
      if (conflict.applied) continue;
      let remote = rejected.get(conflict.collection);
      if (!remote)
        rejected.set(conflict.collection, (remote = new Map<string, StoredRecord | undefined>()));
      remote.set(
        conflict.id,
        conflict.remote.data === null
          ? undefined
          : {
              collection: conflict.collection,
              id: conflict.id,
              data: conflict.remote.data,
              revision: conflict.remote.revision,
            },
      );
    }
    for (const [collection, remote] of rejected) {
      const adapter = this.host.adapters.find((a) => a.name === collection);
      if (adapter) await this.merge(adapter, remote, false, operation);
    }
    for (const problem of result.blocked) {
      this.problem(problem, operation, this.host.index);
    }
  }

  /** Deletes every stored item of this store's adapters (one commit); memory is kept. */
  async clear(): Promise<void> {
    const changes = this.removalsOfLoaded();
    if (changes.length > 0) {
      await this.host.driver.commit(changes, { conflicts: 'last-write-wins' });
    }
    for (const entries of this.host.index.values()) {
      for (const [stem, entry] of entries) if (entry.unloaded === undefined) entries.delete(stem);
    }
    this.host.inSync.clear();
  }

  /**
   * The stored items of `collections` from one consistent state, as backup entries named like item
   * files (`<collection>/<stem><extension>`): a backup of a driver store is a folder a store on the
   * file system can restore too. Bad stored values are reported and left out.
   */
  async *entries(collections: readonly string[]): AsyncGenerator<BackupEntry> {
    const { records, problems } = await this.host.driver.loadAll(collections);
    for (const problem of problems) this.host.fail(problem.error, 'backup');
    const extension = this.host.codec().extension;
    for (const record of records) {
      yield {
        path: `${record.collection}/${record.id}${extension}`,
        data: record.data,
        sha256: createHash('sha256').update(record.data).digest('hex'),
      };
    }
  }

  /**
   * Replaces the stored state with a backup's checked files in one commit (every loaded item not in
   * the backup removed, last write wins), then loads it.
   */
  async restoreFiles(files: readonly BackupFile[]): Promise<LoadMetadata> {
    const changes: DriverChange[] = [];
    const named = new Set<string>();
    for (const file of files) {
      named.add(`${file.collection}/${file.stem}`);
      changes.push({
        collection: file.collection,
        id: file.stem,
        data: file.data,
        expectedRevision: this.host.index.get(file.collection)?.get(file.stem)?.revision ?? null,
      });
    }
    changes.push(...this.removalsOfLoaded(named));
    if (changes.length > 0) {
      const result = await this.host.driver.commit(changes, { conflicts: 'last-write-wins' });
      for (const problem of result.blocked) this.host.fail(problem.error, 'restore');
    }
    return this.load('restore');
  }

  /** Stops watching and retrying, and closes the driver. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.unwatch?.();
    this.unwatch = undefined;
    await this.host.driver.close();
  }

  /** Stops the retries and the watch at once (the store is closing; a last save may still run). */
  stopWatching(): void {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.unwatch?.();
    this.unwatch = undefined;
  }

  private onWatch(event: DriverWatchEvent): void {
    if (this.closed || !this.loaded) return;
    this.host.queue
      .run(() => this.applyRemote(event))
      .catch((error: unknown) => {
        this.host.fail(this.wrap(error, 'load'), 'load');
      });
  }

  /**
   * Another replica's commit (or a resync): reads just those items (everything) and applies them,
   * skipping the items this replica has unsaved changes to: its next save commits them, and the
   * conflict policy decides then.
   */
  private async applyRemote(event: DriverWatchEvent, always = false): Promise<void> {
    if (this.closed) return;
    const started = performance.now();
    const meta = this.metadata();
    const adapters = this.host.adapters;
    const wanted = new Map<string, Set<string>>();
    let records: StoredRecord[];
    let problems: StoredProblem[];
    if (event.kind === 'resync') {
      ({ records, problems } = await this.host.driver.loadAll(adapters.map((a) => a.name)));
      for (const adapter of adapters) {
        wanted.set(adapter.name, new Set(this.host.index.get(adapter.name)?.keys() ?? []));
      }
    } else {
      records = [];
      problems = [];
      for (const change of event.changes) {
        if (!adapters.some((a) => a.name === change.collection)) continue;
        let ids = wanted.get(change.collection);
        if (!ids) wanted.set(change.collection, (ids = new Set()));
        ids.add(change.id);
      }
      for (const [collection, ids] of wanted) {
        const read = await this.host.driver.read(collection, [...ids]);
        records.push(...read.records);
        problems.push(...read.problems);
      }
    }
    const byCollection = groupRecords(records);
    const summary = new LoadProblems();
    for (const problem of problems) {
      meta.skipped++;
      this.problem(problem, 'load', this.host.index, summary);
      if (problem.id !== undefined) wanted.get(problem.collection)?.delete(problem.id);
    }
    for (const adapter of adapters) {
      const found = byCollection.get(adapter.name) ?? new Map<string, StoredRecord>();
      const ids = wanted.get(adapter.name) ?? new Set<string>();
      if (event.kind === 'resync') for (const stem of found.keys()) ids.add(stem);
      if (ids.size === 0) continue;
      const remote = new Map<string, StoredRecord | undefined>();
      for (const stem of ids) remote.set(stem, found.get(stem));
      for (const record of found.values()) meta.size += record.data.length;
      const applied = await this.merge(adapter, remote, true, 'load', summary);
      meta.items += applied;
      meta.adapters[adapter.name] = applied;
    }
    summary.log(this.host.logger, this.location);
    meta.durationMs = performance.now() - started;
    if (always || meta.items > 0 || meta.skipped > 0) this.host.notifier.loaded(meta);
  }

  /**
   * Puts remote versions (`undefined`: removed) of some items of one adapter into it: its current
   * snapshot with those items replaced, restored. With `skipDirty`, items with unsaved local changes
   * keep the local version. Returns how many items changed.
   */
  private async merge(
    adapter: PersistenceAdapter,
    remote: ReadonlyMap<string, StoredRecord | undefined>,
    skipDirty: boolean,
    operation: PersistenceOperation,
    problems?: LoadProblems,
  ): Promise<number> {
    const caller = this.host.caller();
    const codec = this.host.codec();
    let committed = this.host.index.get(adapter.name);
    if (!committed)
      this.host.index.set(adapter.name, (committed = new Map<string, CommittedEntry>()));
    const values = new Map(await caller.snapshot(adapter, operation));
    let stemToId: Map<string, string> | undefined;
    const idOf = (stem: string): string | undefined => {
      const decoded = decodeStem(stem);
      if (decoded !== undefined) return decoded;
      if (!stemToId) {
        stemToId = new Map();
        for (const id of values.keys()) stemToId.set(safeEncode(id) ?? '', id);
      }
      return stemToId.get(stem);
    };
    let changed = 0;
    for (const [stem, record] of remote) {
      const entry = committed.get(stem);
      if (record && entry?.revision === record.revision && entry.unloaded === undefined) continue;
      if (!record && !entry) continue;
      const id = idOf(stem);
      if (skipDirty && (await this.isDirty(adapter, codec, id, values, entry))) continue;
      if (record) {
        const decoded = await this.decode(adapter, codec, record, operation, problems);
        if ('unloaded' in decoded) {
          committed.set(stem, decoded.unloaded);
          continue;
        }
        values.set(decoded.id, decoded.value);
        committed.set(stem, decoded.entry);
      } else {
        if (id !== undefined) values.delete(id);
        committed.delete(stem);
      }
      changed++;
    }
    if (changed === 0) return 0;
    this.host.inSync.delete(adapter.name); // restore() resets the adapter's change tracking
    try {
      await caller.restore(adapter, values, operation);
    } catch (error) {
      const why = `adapter "${adapter.name}" failed to restore it`;
      const failed = new Map<string, CommittedEntry>();
      for (const stem of remote.keys()) {
        const entry = committed.get(stem);
        if (!entry || entry.unloaded !== undefined) continue;
        entry.unloaded = why;
        entry.unloadedKind = 'restore-failed';
        failed.set(stem, entry);
      }
      const failure = this.adapterError(adapter, error, operation);
      if (problems) {
        noteFailedRestore(problems, adapter.name, failed, failure, (e, log) =>
          this.host.fail(e, operation, log),
        );
      } else {
        this.host.fail(failure, operation);
      }
      return 0;
    }
    return changed;
  }

  /** True when the adapter holds a version of the item that is not the committed one. */
  private async isDirty(
    adapter: PersistenceAdapter,
    codec: ItemFileCodec,
    id: string | undefined,
    values: ReadonlyMap<string, unknown>,
    entry: CommittedEntry | undefined,
  ): Promise<boolean> {
    const value = id === undefined ? undefined : values.get(id);
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

  private async reportConflict(conflict: DriverConflict): Promise<void> {
    const adapter = this.host.adapters.find((a) => a.name === conflict.collection);
    const codec = this.host.codec();
    const valueOf = async (data: Buffer | null): Promise<unknown> => {
      if (data === null || !adapter) return undefined;
      try {
        const { envelope } = await codec.decode(
          adapter.name,
          { stem: conflict.id, extension: codec.extension },
          data,
        );
        return reviveStored(this.host.caller(), adapter, envelope).value;
      } catch {
        return undefined;
      }
    };
    this.host.notifier.conflict({
      adapter: conflict.collection,
      id: decodeStem(conflict.id) ?? conflict.id,
      local: { value: await valueOf(conflict.local), deleted: conflict.local === null },
      remote: {
        value: await valueOf(conflict.remote.data),
        deleted: conflict.remote.data === null,
        revision: conflict.remote.revision,
      },
      applied: conflict.applied,
    });
  }

  /** Decodes a stored item like an item file; what cannot be used is reported and kept unloaded. */
  private async decode(
    adapter: PersistenceAdapter,
    codec: ItemFileCodec,
    record: StoredRecord,
    operation: PersistenceOperation,
    problems?: LoadProblems,
  ): Promise<DecodedRecord | { unloaded: CommittedEntry }> {
    const fileName = record.id + codec.extension;
    const key = `${adapter.name}/${record.id}`;
    try {
      const { envelope, plain, keyId } = await codec.decode(
        adapter.name,
        { stem: record.id, extension: codec.extension },
        record.data,
      );
      const { value, migrated } = reviveStored(this.host.caller(), adapter, envelope);
      return {
        id: envelope.id,
        value,
        entry: {
          fileName,
          ref: value,
          hash: migrated ? '' : hashBytes(plain),
          keyId,
          revision: record.revision,
          ...(migrated ? { migrated: true } : {}),
        },
      };
    } catch (cause) {
      const context = {
        operation,
        adapter: adapter.name,
        itemId: decodeStem(record.id) ?? record.id,
        path: `${this.location} ${key}`,
        cause,
      };
      const schema = schemaFailure(adapter.name, `${this.location} ${key}`, cause);
      let why: string;
      let kind: UnloadedKind;
      let error: PersistenceError;
      if (schema) {
        ({ error, why, kind } = schema);
      } else if (cause instanceof ItemDecodeError && cause.kind === 'locked') {
        error = new PersistenceError(
          PersistenceErrorCode.DecryptionFailed,
          messages.decryptionFailed(`${this.location} ${key}`, cause.message),
          context,
        );
        why = 'it could not be decrypted with the configured keys';
        kind = 'wrong-key';
      } else {
        const reason = messages.reasonOf(cause);
        error = new PersistenceError(
          PersistenceErrorCode.CorruptFile,
          messages.storedItemUnreadable(this.location, key, reason),
          context,
        );
        why = `it is not a valid item: ${reason}`;
        kind = 'corrupt';
      }
      this.host.fail(error, operation, problems === undefined);
      problems?.add(kind, adapter.name, context.itemId, error);
      return {
        unloaded: {
          fileName,
          ref: undefined,
          hash: '',
          unloaded: why,
          unloadedKind: kind,
          revision: record.revision,
        },
      };
    }
  }

  /** A stored value the driver could not read: reported, and kept unloaded (never written). */
  private problem(
    problem: StoredProblem,
    operation: PersistenceOperation,
    index: CommittedIndex,
    problems?: LoadProblems,
  ): void {
    const counted = problems !== undefined && problem.id !== undefined;
    this.host.fail(problem.error, operation, !counted);
    if (problem.id === undefined) return;
    problems?.add(
      'corrupt',
      problem.collection,
      decodeStem(problem.id) ?? problem.id,
      problem.error,
    );
    let committed = index.get(problem.collection);
    if (!committed) index.set(problem.collection, (committed = new Map<string, CommittedEntry>()));
    const entry = committed.get(problem.id);
    const why = `the stored value is bad data: ${problem.error.message}`;
    if (entry) {
      entry.unloaded = why;
      entry.unloadedKind = 'corrupt';
    } else
      committed.set(problem.id, {
        fileName: problem.id + this.host.codec().extension,
        ref: undefined,
        hash: '',
        unloaded: why,
        unloadedKind: 'corrupt',
      });
    this.host.inSync.delete(problem.collection);
  }

  /** A removal of every loaded item (unloaded ones are never touched), except the `kept` ones. */
  private removalsOfLoaded(kept: ReadonlySet<string> = new Set()): DriverChange[] {
    const changes: DriverChange[] = [];
    for (const [collection, entries] of this.host.index) {
      for (const [stem, entry] of entries) {
        if (entry.unloaded !== undefined || kept.has(`${collection}/${stem}`)) continue;
        changes.push({
          collection,
          id: stem,
          data: null,
          expectedRevision: entry.revision ?? null,
        });
      }
    }
    return changes;
  }

  private adapterError(
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

  private wrap(error: unknown, operation: PersistenceOperation): PersistenceError {
    if (error instanceof PersistenceError) return error;
    return new PersistenceError(
      PersistenceErrorCode.StorageUnavailable,
      messages.storageUnavailable(this.location, operation, messages.reasonOf(error)),
      { operation, path: this.location, cause: error },
    );
  }

  private metadata(): LoadMetadata {
    return {
      path: this.location,
      format: this.host.codec().serializer.format,
      size: 0,
      timestamp: new Date(),
      items: 0,
      adapters: {},
      skipped: 0,
      durationMs: 0,
    };
  }
}

function groupRecords(records: readonly StoredRecord[]): Map<string, Map<string, StoredRecord>> {
  const groups = new Map<string, Map<string, StoredRecord>>();
  for (const record of records) {
    let group = groups.get(record.collection);
    if (!group) groups.set(record.collection, (group = new Map<string, StoredRecord>()));
    group.set(record.id, record);
  }
  return groups;
}

function safeEncode(id: string): string | undefined {
  try {
    return encodeId(id);
  } catch {
    return undefined;
  }
}
