import { randomUUID } from 'node:crypto';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import type {
  AppliedChange,
  CommitOptions,
  CommitResult,
  DriverChange,
  DriverConflict,
  DriverWatchEvent,
  Lease,
  LoadResult,
  StorageDriver,
  StoredRecord,
} from '../../interfaces/storage-driver.interface';
import { driverNotOpen, storageUnavailable } from '../../persistence.messages';
import {
  checkDriverCommit,
  checkLeaseArguments,
  invalidDriverArgument,
} from '../driver-changes.util';

const DRIVER = 'InMemoryStorageDriver';

/** One stored version: the bytes, the commit that wrote them, and the replica that did. */
interface Stored {
  data: Buffer;
  revision: number;
  writer: string;
}

interface HeldLease {
  nonce: string;
  token: number;
  expiresAt: number;
}

/**
 * The state that in-memory drivers share, as replicas share one server: build several
 * {@link InMemoryStorageDriver}s on one `InMemoryStorage` and each sees the others' commits. It
 * lives as long as the object: give the same one to the application you start again to test a
 * restart. `stop()`/`start()` make the "server" unreachable and reachable again, for fault tests.
 */
export class InMemoryStorage {
  /** The revision of the last commit (0 before the first). */
  revision = 0;
  private readonly items = new Map<string, Map<string, Stored>>();
  private readonly leases = new Map<string, HeldLease>();
  private readonly fences = new Map<string, number>();
  private readonly drivers = new Set<InMemoryStorageDriver>();
  private down = false;

  /** True between `stop()` and `start()`. */
  get stopped(): boolean {
    return this.down;
  }

  /** Every call of every driver on this storage rejects as unreachable until {@link start}. */
  stop(): void {
    this.down = true;
  }

  /** Reachable again; watching drivers are told to resync (notices may have been missed). */
  start(): void {
    if (!this.down) return;
    this.down = false;
    for (const driver of this.drivers) driver.notify({ kind: 'resync' });
  }

  /** The stored bytes of one item (a copy), for tests that look at what was committed. */
  get(collection: string, id: string): Buffer | undefined {
    const stored = this.items.get(collection)?.get(id);
    return stored && Buffer.from(stored.data);
  }

  /** The ids stored in a collection, sorted. */
  ids(collection: string): string[] {
    return [...(this.items.get(collection)?.keys() ?? [])].sort();
  }

  /** @internal */
  attach(driver: InMemoryStorageDriver): void {
    this.drivers.add(driver);
  }

  /** @internal */
  detach(driver: InMemoryStorageDriver): void {
    this.drivers.delete(driver);
  }

  /** @internal Throws the driver's "unreachable" error while stopped. */
  reach(location: string, operation: string): void {
    if (!this.down) return;
    throw new PersistenceError(
      PersistenceErrorCode.StorageUnavailable,
      storageUnavailable(location, operation, 'the in-memory storage is stopped'),
      { operation: operation === 'commit' ? 'save' : 'load', path: location },
    );
  }

  /** @internal */
  records(collection: string, ids?: readonly string[]): StoredRecord[] {
    const stored = this.items.get(collection);
    if (stored === undefined) return [];
    const wanted = ids ?? [...stored.keys()];
    return wanted.flatMap((id) => {
      const item = stored.get(id);
      return item
        ? [{ collection, id, data: Buffer.from(item.data), revision: item.revision }]
        : [];
    });
  }

  /**
   * @internal All or nothing, compare-and-set per item with the same rule as every driver: a
   * stored revision other than the expected one is a conflict, unless this replica wrote it (its
   * own earlier commit) or a removal finds the item already gone.
   */
  commit(
    origin: string,
    changes: readonly DriverChange[],
    options: CommitOptions,
  ): CommitResult & { notice: DriverWatchEvent | undefined } {
    const apply: boolean[] = [];
    const conflicts: DriverConflict[] = [];
    for (const change of changes) {
      const stored = this.items.get(change.collection)?.get(change.id);
      const revision = stored?.revision ?? 0;
      const expected = change.expectedRevision ?? 0;
      const conflict =
        revision !== expected && stored?.writer !== origin && !(change.data === null && !stored);
      if (conflict) {
        conflicts.push({
          collection: change.collection,
          id: change.id,
          expectedRevision: expected,
          local: change.data,
          remote: { data: stored ? Buffer.from(stored.data) : null, revision },
          applied: options.conflicts === 'last-write-wins',
        });
      }
      apply.push(!conflict || options.conflicts === 'last-write-wins');
    }
    if (!apply.includes(true)) return { applied: [], conflicts, blocked: [], notice: undefined };
    const revision = ++this.revision;
    const applied: AppliedChange[] = [];
    changes.forEach((change, i) => {
      if (!apply[i]) return;
      let collection = this.items.get(change.collection);
      if (change.data === null) {
        collection?.delete(change.id);
      } else {
        if (collection === undefined)
          this.items.set(change.collection, (collection = new Map<string, Stored>()));
        collection.set(change.id, { data: Buffer.from(change.data), revision, writer: origin });
      }
      applied.push({
        collection: change.collection,
        id: change.id,
        revision,
        deleted: change.data === null,
      });
    });
    const notice: DriverWatchEvent = {
      kind: 'changes',
      origin,
      revision,
      changes: applied.map(({ collection, id, deleted }) => ({ collection, id, deleted })),
    };
    return { revision, applied, conflicts, blocked: [], notice };
  }

  /** @internal Tells every other attached driver, after the committing call has returned. */
  publish(origin: InMemoryStorageDriver, notice: DriverWatchEvent): void {
    setImmediate(() => {
      for (const driver of this.drivers) if (driver !== origin) driver.notify(notice);
    });
  }

  /** @internal */
  acquireLease(name: string, ttlMs: number, nonce: string): number | undefined {
    const held = this.leases.get(name);
    if (held && held.expiresAt > Date.now()) return undefined;
    const token = (this.fences.get(name) ?? 0) + 1;
    this.fences.set(name, token);
    this.leases.set(name, { nonce, token, expiresAt: Date.now() + ttlMs });
    return token;
  }

  /** @internal */
  renewLease(name: string, nonce: string, ttlMs: number): boolean {
    const held = this.leases.get(name);
    if (!held || held.nonce !== nonce || held.expiresAt <= Date.now()) return false;
    held.expiresAt = Date.now() + ttlMs;
    return true;
  }

  /** @internal */
  releaseLease(name: string, nonce: string): void {
    if (this.leases.get(name)?.nonce === nonce) this.leases.delete(name);
  }
}

/** Options of {@link InMemoryStorageDriver}. */
export interface InMemoryStorageDriverOptions {
  /**
   * Where the items are kept. Drivers on one `InMemoryStorage` behave as replicas on one server;
   * an application started again on the same one finds its state.
   * @default a new InMemoryStorage of this driver's own
   */
  storage?: InMemoryStorage;
  /**
   * This replica's id, stamped on its commits: a replica is not told of its own.
   * @default a random UUID per driver
   */
  replicaId?: string;
}

/**
 * A {@link StorageDriver} that keeps the store's items in memory: for tests (the state lasts as long
 * as its {@link InMemoryStorage}), and to run several replicas in one process. It follows the
 * contract as the Redis driver does: atomic commits, compare-and-set on revisions, notices to the
 * other drivers of the same storage, fenced leases.
 */
export class InMemoryStorageDriver implements StorageDriver {
  readonly driverVersion = 1 as const;
  readonly location: string;
  readonly replicaId: string;
  /** The storage this driver keeps its items in. */
  readonly storage: InMemoryStorage;
  private state: 'new' | 'open' | 'closed' = 'new';
  private readonly listeners = new Set<(event: DriverWatchEvent) => void>();

  constructor(options: InMemoryStorageDriverOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw invalidDriverArgument(DRIVER, 'options', options, 'Pass an object, or nothing.');
    }
    const { storage, replicaId } = options;
    if (storage !== undefined && !(storage instanceof InMemoryStorage)) {
      throw invalidDriverArgument(DRIVER, 'storage', storage, 'Pass a new InMemoryStorage().');
    }
    if (
      replicaId !== undefined &&
      (typeof replicaId !== 'string' || replicaId.length === 0 || replicaId.length > 128)
    ) {
      throw invalidDriverArgument(
        DRIVER,
        'replicaId',
        replicaId,
        'Give a non-empty string of at most 128 characters.',
      );
    }
    this.storage = storage ?? new InMemoryStorage();
    this.replicaId = replicaId ?? randomUUID();
    this.location = `memory://${this.replicaId}`;
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- rejects rather than throws
  async open(): Promise<void> {
    if (this.state === 'closed') throw this.notOpen();
    this.storage.reach(this.location, 'open');
    this.state = 'open';
    this.storage.attach(this);
  }

  close(): Promise<void> {
    this.state = 'closed';
    this.listeners.clear();
    this.storage.detach(this);
    return Promise.resolve();
  }

  loadAll(collections: readonly string[]): Promise<LoadResult> {
    return this.call('loadAll', () => ({
      records: collections.flatMap((collection) => this.storage.records(collection)),
      problems: [],
    }));
  }

  read(collection: string, ids: readonly string[]): Promise<LoadResult> {
    return this.call('read', () => ({
      records: this.storage.records(collection, ids),
      problems: [],
    }));
  }

  commit(changes: readonly DriverChange[], options: CommitOptions): Promise<CommitResult> {
    return this.call('commit', () => {
      checkDriverCommit(DRIVER, changes, options);
      const { notice, ...result } = this.storage.commit(this.replicaId, changes, options);
      if (notice) this.storage.publish(this, notice);
      return result;
    });
  }

  watch(listener: (event: DriverWatchEvent) => void): () => void {
    if (this.state !== 'open') throw this.notOpen();
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  acquireLease(name: string, ttlMs: number): Promise<Lease | undefined> {
    return this.call('acquireLease', () => {
      checkLeaseArguments(DRIVER, name, ttlMs);
      const nonce = `${this.replicaId}/${randomUUID()}`;
      const token = this.storage.acquireLease(name, ttlMs, nonce);
      if (token === undefined) return undefined;
      return {
        name,
        token,
        renew: () => this.call('lease renew', () => this.storage.renewLease(name, nonce, ttlMs)),
        release: () => this.call('lease release', () => this.storage.releaseLease(name, nonce)),
      };
    });
  }

  /** @internal Called by the storage with another replica's notice, or a resync. */
  notify(event: DriverWatchEvent): void {
    if (this.state !== 'open') return;
    if (event.kind === 'changes' && event.origin === this.replicaId) return;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own; the others are still told.
      }
    }
  }

  /** Runs one call as a server would answer it: later (a promise), refused while stopped or closed. */
  // eslint-disable-next-line @typescript-eslint/require-await -- rejects rather than throws
  private async call<T>(operation: string, run: () => T): Promise<T> {
    if (this.state !== 'open') throw this.notOpen();
    this.storage.reach(this.location, operation);
    return run();
  }

  private notOpen(): PersistenceError {
    return new PersistenceError(
      PersistenceErrorCode.StoreClosed,
      driverNotOpen(this.location, this.state === 'closed' ? 'closed' : 'not open'),
      { path: this.location },
    );
  }
}
