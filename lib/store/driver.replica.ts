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
  CommitResult,
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
import { decodeStem } from '../storage/file-name.codec';
import { ItemFileCodec } from '../serializers/item-file.codec';
import { AdapterCaller } from './adapter.caller';
import { CommittedEntry, CommittedIndex, forgetRemoved, inSyncAfterLoad } from './committed.index';
import { DriverCommitSink } from './driver.sink';
import { OperationQueue } from './operation.queue';
import { reviveStored } from './schema.migrator';
import { LoadProblems } from './load.problems';
import { RecordDecoder, RemoteMerger } from './remote.merger';
import { decodeStoredRecord } from './stored-record.decoder';
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
  /** False when the store started with `loadOnBoot: false` (nothing loads until `loadAll()`). */
  private bootLoad = true;
  private closed = false;
  private unwatch?: () => void;
  private retry?: ReturnType<typeof setTimeout>;
  private attempts = 0;
  /** Other replicas' commits heard and not applied yet (see `onWatch`). */
  private pending?: Map<string, Set<string>> | 'resync';
  private readonly merger: RemoteMerger;
  private readonly decodeRecord: RecordDecoder;
  private started = false;

  constructor(private readonly host: DriverReplicaHost) {
    this.sink = new DriverCommitSink(
      host.driver,
      host.index,
      host.conflicts,
      () => host.codec().serializer.extension,
    );
    this.decodeRecord = (adapter, codec, record, operation, problems) =>
      decodeStoredRecord(
        {
          location: host.driver.location,
          caller: () => host.caller(),
          fail: (error, operation, log) => host.fail(error, operation, log),
        },
        adapter,
        codec,
        record,
        operation,
        problems,
      );
    this.merger = new RemoteMerger(host, this.decodeRecord);
  }

  get location(): string {
    return this.host.driver.location;
  }

  /**
   * Opens the storage and (with `load`) loads everything. When the storage does not answer, the
   * error is reported and opening is tried again with a backoff (0.5 s doubling to 30 s) until it
   * answers or the store closes; one outage logs one line (each attempt still reaches the
   * listeners). Rejects when the driver's package is not installed
   * (`PERSISTENCE_OPTIONAL_DEPENDENCY_MISSING`: no retry can open it, as for `format: 'msgpack'`),
   * and at the boot (the first call) with `refuseUnreadable`: the load left items nobody can use
   * yet, or failed for another reason than an unreachable storage.
   */
  async start(load: boolean): Promise<void> {
    this.bootLoad = load;
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
        await this.applyRemote('resync', true);
        this.loaded = true;
      }
      if (this.attempts > 0) {
        this.host.logger.log(messages.storageAnsweredAgain(this.location, this.attempts));
      }
      this.attempts = 0;
    } catch (error) {
      const operation = this.opened ? 'load' : 'init';
      const failure = this.wrap(error, operation);
      // A package that is not installed stays missing: no retry can open the store, so the start fails.
      if (failure.code === PersistenceErrorCode.OptionalDependencyMissing) throw failure;
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
      if (refusal) throw this.host.fail(refusal, 'init');
      return;
    }
    if (refusal) throw this.host.fail(refusal, 'init');
    // What other replicas committed while it loaded: in memory before the application goes on.
    await this.applyHeard().catch((error: unknown) => {
      this.host.fail(this.wrap(error, 'load'), 'load');
    });
  }

  /** Why this replica cannot write yet (before its first load), or undefined once loaded. */
  get notLoadedReason(): string | undefined {
    if (this.loaded) return undefined;
    return this.bootLoad
      ? messages.storageNotLoaded(this.location)
      : messages.storageNotLoadedOnBoot(this.location);
  }

  /**
   * Refuses a save or a clear before the first load: it could overwrite what other replicas wrote,
   * or report as removed what the late load then brings back.
   */
  assertLoaded(operation: PersistenceOperation): void {
    const reason = this.notLoadedReason;
    if (reason === undefined) return;
    throw new PersistenceError(PersistenceErrorCode.StorageUnavailable, reason, {
      operation,
      path: this.location,
    });
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
        const decoded = await this.decodeRecord(adapter, codec, record, operation, problems);
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
    // As on files: adapters that report their changes are in step with what was just restored.
    for (const [name, unloaded] of inSyncAfterLoad(adapters, this.host.index, codec.keyId)) {
      this.host.inSync.set(name, unloaded);
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
    if (last) await this.settle(last.result, operation);
  }

  /**
   * What follows any commit of this replica (a save's, a clear's): the new revisions, the conflicts
   * (emitted; not applied ones, with `'reject'`, load the remote version into the adapter), and the
   * items blocked by bad data.
   */
  private async settle(result: CommitResult, operation: PersistenceOperation): Promise<void> {
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
      if (adapter) await this.merger.merge(adapter, remote, operation);
    }
    for (const problem of result.blocked) {
      this.problem(problem, operation, this.host.index);
    }
  }

  /**
   * After a save: merges again the items whose remote version was left out because of a change
   * here (see `RemoteMerger.skipped`). A failure is reported, not thrown: the save is done.
   */
  async followSkipped(): Promise<void> {
    if (this.merger.skipped.size === 0 || this.closed) return;
    const named = new Map(this.merger.skipped);
    this.merger.skipped.clear();
    await this.applyRemote(named).catch((error: unknown) => {
      for (const [collection, stems] of named) {
        const kept = this.merger.skipped.get(collection);
        if (kept) for (const stem of stems) kept.add(stem);
        else this.merger.skipped.set(collection, stems);
      }
      this.host.fail(this.wrap(error, 'load'), 'load');
    });
  }

  /**
   * Removes every item this replica loaded (one commit); memory is kept. Each removal expects the
   * revision this replica last saw, like a save's: an item another replica changed since is a
   * conflict under the `conflicts` policy (`'reject'` keeps the remote version and loads it). Items
   * it did not load stay, still protected from its saves.
   */
  async clear(): Promise<void> {
    this.assertLoaded('clear');
    const changes = this.removals((entry) => entry.unloaded !== undefined); // what it loaded
    const result =
      changes.length > 0
        ? await this.host.driver.commit(changes, { conflicts: this.host.conflicts })
        : undefined;
    // Settled first: a removal rejected for another replica's newer version loads that version
    // over the entry this replica still holds (its memory is what it loaded, not a change of its
    // own). Then only what was removed is forgotten.
    if (result) await this.settle(result, 'clear');
    forgetRemoved(this.host.index, result?.applied ?? []);
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
   * Replaces the stored state with a backup's checked files in one commit (every stored item not in
   * the backup removed, also those this replica has not heard of or keeps its own unsaved version
   * of), then loads it. Last write wins whatever the `conflicts` policy (the application asked for
   * the backup's state), but an item another replica changed since this one last saw it is still
   * reported as a conflict (`applied: true`). A stored value this code cannot read (another key, a
   * newer schema version, bad data) is neither removed nor overwritten: a driver has nowhere to set
   * it aside; the backup's item of that id is reported (`PERSISTENCE_UNLOADED_ITEM`) instead.
   * Refused before the first load, like a save.
   */
  async restoreFiles(files: readonly BackupFile[]): Promise<LoadMetadata> {
    this.assertLoaded('restore');
    const changes: DriverChange[] = [];
    const named = new Set<string>();
    for (const file of files) {
      named.add(`${file.collection}/${file.stem}`);
      const entry = this.host.index.get(file.collection)?.get(file.stem);
      if (entry?.unreadable) {
        const id = decodeStem(file.stem) ?? file.stem;
        const message = messages.restoreKeptUnreadable(
          this.location,
          file.collection,
          id,
          entry.unloaded ?? '',
        );
        this.host.fail(
          new PersistenceError(PersistenceErrorCode.UnloadedItem, message, {
            operation: 'restore',
            adapter: file.collection,
            itemId: id,
            path: `${this.location} ${file.collection}/${file.stem}`,
          }),
          'restore',
        );
        continue;
      }
      changes.push({
        collection: file.collection,
        id: file.stem,
        data: file.data,
        expectedRevision: entry?.revision ?? null,
      });
    }
    const removals = this.removals((entry) => entry.unreadable === true, named);
    // Every other item stored now goes too, not only those this replica loaded: one it keeps its
    // own unsaved version of, or has not heard of yet, is not in its index.
    const collections = new Set(this.host.adapters.map((a) => a.name));
    for (const file of files) collections.add(file.collection);
    const { records } = await this.host.driver.loadAll([...collections]);
    const removed = new Set(removals.map((change) => `${change.collection}/${change.id}`));
    for (const { collection, id, revision } of records) {
      const key = `${collection}/${id}`;
      if (named.has(key) || removed.has(key)) continue;
      if (this.host.index.get(collection)?.get(id)?.unloaded !== undefined) continue;
      removals.push({ collection, id, data: null, expectedRevision: revision });
    }
    changes.push(...removals);
    if (changes.length > 0) {
      const result = await this.host.driver.commit(changes, { conflicts: 'last-write-wins' });
      for (const conflict of result.conflicts) await this.reportConflict(conflict);
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

  /**
   * Another replica's commit (or a resync) heard. Nothing is dropped, whenever it comes: the watch
   * is subscribed before the load reads, so a commit the load did not see is one heard here, and
   * is applied on the queue right after the load (or the retry's). Notices that come while one is
   * waiting for the queue join it.
   */
  private onWatch(event: DriverWatchEvent): void {
    if (this.closed) return;
    const queued = this.pending !== undefined;
    if (event.kind === 'resync') {
      this.pending = 'resync';
    } else if (this.pending !== 'resync') {
      this.pending ??= new Map<string, Set<string>>();
      for (const change of event.changes) {
        let ids = this.pending.get(change.collection);
        if (!ids) this.pending.set(change.collection, (ids = new Set<string>()));
        ids.add(change.id);
      }
    }
    if (queued) return;
    this.host.queue
      .run(() => this.applyHeard())
      .catch((error: unknown) => {
        this.host.fail(this.wrap(error, 'load'), 'load');
      });
  }

  /** Applies the commits heard so far (on the queue). Before a load, whatever loads reads them. */
  private async applyHeard(): Promise<void> {
    while (this.pending !== undefined && !this.closed) {
      const wanted = this.pending;
      this.pending = undefined;
      if (!this.loaded) return; // the load failed, or waits for loadAll(): it reads everything
      await this.applyRemote(wanted);
    }
  }

  /**
   * Other replicas' commits (the items they named, or everything for a resync): reads those items
   * and merges them in item by item (`RemoteMerger`), skipping the items this replica changed and
   * has not committed: its next save commits them, and the conflict policy decides then.
   */
  private async applyRemote(
    named: ReadonlyMap<string, ReadonlySet<string>> | 'resync',
    always = false,
  ): Promise<void> {
    if (this.closed) return;
    const started = performance.now();
    const meta = this.metadata();
    const adapters = this.host.adapters;
    const wanted = new Map<string, Set<string>>();
    let records: StoredRecord[];
    let problems: StoredProblem[];
    if (named === 'resync') {
      ({ records, problems } = await this.host.driver.loadAll(adapters.map((a) => a.name)));
      for (const adapter of adapters) {
        wanted.set(adapter.name, new Set(this.host.index.get(adapter.name)?.keys() ?? []));
      }
    } else {
      records = [];
      problems = [];
      for (const [collection, ids] of named) {
        if (adapters.some((a) => a.name === collection)) wanted.set(collection, new Set(ids));
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
      if (named === 'resync') for (const stem of found.keys()) ids.add(stem);
      if (ids.size === 0) continue;
      const remote = new Map<string, StoredRecord | undefined>();
      for (const stem of ids) remote.set(stem, found.get(stem));
      for (const record of found.values()) meta.size += record.data.length;
      const applied = await this.merger.merge(adapter, remote, 'load', summary);
      meta.items += applied;
      meta.adapters[adapter.name] = applied;
    }
    summary.log(this.host.logger, this.location);
    meta.durationMs = performance.now() - started;
    if (always || meta.items > 0 || meta.skipped > 0) this.host.notifier.loaded(meta);
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
      entry.unreadable = true;
      entry.unloadedCode = problem.error.code;
      entry.unloadedKind = 'corrupt';
    } else
      committed.set(problem.id, {
        fileName: problem.id + this.host.codec().extension,
        ref: undefined,
        hash: '',
        unloaded: why,
        unreadable: true,
        unloadedCode: problem.error.code,
        unloadedKind: 'corrupt',
      });
    this.host.inSync.delete(problem.collection);
  }

  /**
   * A removal of every item in the index but the `spared` entries and the `kept` items, each
   * expecting the revision this replica last saw.
   */
  private removals(
    spared: (entry: CommittedEntry) => boolean,
    kept: ReadonlySet<string> = new Set(),
  ): DriverChange[] {
    const changes: DriverChange[] = [];
    for (const [collection, entries] of this.host.index) {
      for (const [stem, entry] of entries) {
        if (spared(entry) || kept.has(`${collection}/${stem}`)) continue;
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
