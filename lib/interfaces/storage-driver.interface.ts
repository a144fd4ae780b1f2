import type { PersistenceError } from '../errors/persistence.error';

/*
 * The storage-driver boundary: where the store's item bytes are kept. The store does everything
 * above it (snapshots, the codec: format and encryption, events); a driver only keeps opaque bytes
 * per (collection, id), commits a batch of them atomically, and tells other replicas about it.
 * Contract, version 1: docs/storage-drivers.md.
 */

/** What a conflicting change does: see {@link StorageDriver.commit}. */
export type ConflictPolicy = 'last-write-wins' | 'reject';

/** One stored item, as {@link StorageDriver.loadAll} and {@link StorageDriver.read} return it. */
export interface StoredRecord {
  /** The collection (adapter name). */
  collection: string;
  /** The item's id within its collection. */
  id: string;
  /** The item's bytes, exactly as the store committed them (already formatted and encrypted). */
  data: Buffer;
  /**
   * The revision of the commit that wrote this version: a positive integer, unique per commit and
   * increasing across the whole store (not per item). Pass it back as `expectedRevision`.
   */
  revision: number;
}

/**
 * An item the driver found but cannot return: wrong type, missing field, unreadable revision. It was
 * kept where it is (never overwritten or deleted by a commit) and, where there was something to copy,
 * copied aside first.
 */
export interface StoredProblem {
  /** The collection the problem is in. */
  collection: string;
  /** The item's id; undefined when the problem is the collection's index itself. */
  id?: string;
  /** A typed error (`PERSISTENCE_BAD_STORED_DATA`) whose message names the key and the fix. */
  error: PersistenceError;
  /** Where the bad value was copied to (a key, a file), when there was something to copy. */
  quarantinedAs?: string;
}

/** What {@link StorageDriver.loadAll} and {@link StorageDriver.read} return. */
export interface LoadResult {
  /** Every readable item, from one consistent state: the state after some whole commit. */
  records: StoredRecord[];
  /** Everything that could not be read; the rest loads anyway. */
  problems: StoredProblem[];
}

/** One change of a commit: an item's new bytes, or its removal. */
export interface DriverChange {
  /** The collection (adapter name). */
  collection: string;
  /** The item's id within its collection. */
  id: string;
  /** The new bytes, or `null` to remove the item. */
  data: Buffer | null;
  /**
   * The revision this replica last loaded or wrote for the item; `null` or `0` when it expects the
   * item to be absent (a new item). A stored revision that differs is a conflict.
   */
  expectedRevision: number | null;
}

/** Options of one {@link StorageDriver.commit}. */
export interface CommitOptions {
  /** What to do with a change whose stored revision is not the expected one. */
  conflicts: ConflictPolicy;
}

/** A change that met a stored revision other than the expected one. */
export interface DriverConflict {
  /** The collection of the item. */
  collection: string;
  /** The item's id. */
  id: string;
  /** The revision the change expected (`0` for absent). */
  expectedRevision: number;
  /** The bytes this replica wanted to write, `null` for a removal. */
  local: Buffer | null;
  /** What was stored: its bytes (`null` when absent) and revision (`0` when absent). */
  remote: { data: Buffer | null; revision: number };
  /**
   * True when the change was applied anyway (`'last-write-wins'`: the remote version was
   * overwritten), false when it was not (`'reject'`: the remote version stays).
   */
  applied: boolean;
}

/** A change that was applied. */
export interface AppliedChange {
  /** The collection of the item. */
  collection: string;
  /** The item's id. */
  id: string;
  /** The item's new revision: the commit's {@link CommitResult.revision}. */
  revision: number;
  /** True for a removal. */
  deleted: boolean;
}

/** What {@link StorageDriver.commit} resolves with. */
export interface CommitResult {
  /** The revision of this commit, or undefined when no change was applied. */
  revision?: number;
  /** The changes that were applied, in the order given. */
  applied: AppliedChange[];
  /** Changes that met another replica's version, applied or not (see {@link DriverConflict}). */
  conflicts: DriverConflict[];
  /**
   * Changes that were not applied because the stored item is bad data (see {@link StoredProblem}):
   * a commit never overwrites it. Remove or repair it by hand (it has a copy in quarantine).
   */
  blocked: StoredProblem[];
}

/** One item in a {@link DriverWatchEvent}. */
export interface WatchedChange {
  /** The collection of the item. */
  collection: string;
  /** The item's id. */
  id: string;
  /** True when the item was removed. */
  deleted: boolean;
}

/**
 * What {@link StorageDriver.watch} listeners receive:
 *  - `changes`: another replica committed these items at `revision` (read them with
 *    {@link StorageDriver.read}).
 *  - `resync`: the driver may have missed notices (its connection dropped and came back): load
 *    everything again to catch up.
 */
export type DriverWatchEvent =
  | { kind: 'changes'; origin: string; revision: number; changes: WatchedChange[] }
  | { kind: 'resync' };

/** A lease held by this replica: see {@link StorageDriver.acquireLease}. */
export interface Lease {
  /** The lease's name. */
  readonly name: string;
  /**
   * Fencing token: strictly greater than that of every earlier holder of this lease. Pass it along
   * with the guarded work so that a late write of an expired holder can be told apart.
   */
  readonly token: number;
  /**
   * Extends the lease by its TTL from now. Resolves false when it was lost (expired and maybe taken
   * by another replica): stop the guarded work.
   */
  renew(): Promise<boolean>;
  /** Gives the lease up, if still held; does nothing when another replica holds it now. */
  release(): Promise<void>;
}

/**
 * Where the store keeps its items. Contract, version 1 (`driverVersion: 1`):
 *  - Data are opaque bytes per (collection, id); the driver never parses them.
 *  - {@link commit} applies all its changes at once or none of them: a reader (this replica or
 *    another) sees the state before or after, never a part. When it rejects, nothing was applied,
 *    or (connection lost after sending) the whole commit may have been; a later commit of the same
 *    replica then does not count its own earlier write as a conflict.
 *  - Errors are {@link PersistenceError}s; `PERSISTENCE_STORAGE_UNAVAILABLE` means "try again
 *    later" (the store keeps its dirty set and retries).
 *  - Calls come from the store's operation queue, one at a time; `watch` listeners are called from
 *    the driver's own connection.
 */
/** Where a driver writes its log lines: the store's `logger` option (see `StorageDriver.useLogger`). */
export interface DriverLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface StorageDriver {
  /** The version of this contract the driver implements: `1`. */
  readonly driverVersion: 1;
  /** Where the data are, for messages (`redis://host:6379 (prefix "app:")`, a folder, …). */
  readonly location: string;
  /** Connects (or opens files). Rejects with a retryable error when the storage cannot be reached. */
  open(): Promise<void>;
  /** Disconnects; every later call rejects. Idempotent. */
  close(): Promise<void>;
  /**
   * Optional: why the storage cannot be reached right now (e.g. `its connection is reconnecting`),
   * or `undefined` while it is connected. Synchronous and cheap: `getStatus()` asks it each time, so
   * `writable` turns false as soon as the connection is lost, not at the next save that fails. A
   * driver without it is taken as reachable until a call fails.
   */
  connectionProblem?(): string | undefined;
  /** Every item of these collections, from one consistent state, plus what could not be read. */
  loadAll(collections: readonly string[]): Promise<LoadResult>;
  /** The current versions of these items (absent ones are left out), from one consistent state. */
  read(collection: string, ids: readonly string[]): Promise<LoadResult>;
  /** Applies `changes` atomically, with compare-and-set on each item's revision. */
  commit(changes: readonly DriverChange[], options: CommitOptions): Promise<CommitResult>;
  /**
   * Calls `listener` for each commit of another replica (never for this one's). Returns the function
   * that stops it.
   */
  watch(listener: (event: DriverWatchEvent) => void): () => void;
  /**
   * Optional: resolves once {@link watch} receives every later commit (when subscribing is
   * asynchronous, as with Redis pub/sub). The store awaits it between `watch` and its load, so that
   * no commit falls in between unnoticed. Rejects with `PERSISTENCE_STORAGE_UNAVAILABLE` when it
   * cannot subscribe in time.
   */
  watchReady?(): Promise<void>;
  /**
   * Optional: the store hands the driver its logger (the `logger` option) before `open()`, so the
   * driver's log lines go where the application's persistence lines go (or nowhere, `logger: false`).
   */
  useLogger?(logger: DriverLogger): void;
  /**
   * Takes the lease `name` for `ttlMs` if no replica holds it; resolves undefined when one does. For
   * work done once per cluster (scheduled backups, compaction).
   */
  acquireLease(name: string, ttlMs: number): Promise<Lease | undefined>;
}

/** DI token of the storage driver (`overrideProvider(StorageDriver)` in tests). */
export const StorageDriver = Symbol('StorageDriver');
