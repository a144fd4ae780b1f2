import { Logger } from '@nestjs/common';
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
  DriverLogger,
  StorageDriver,
  StoredProblem,
  StoredRecord,
  WatchedChange,
} from '../../interfaces/storage-driver.interface';
import { badStoredData, driverNotOpen } from '../../persistence.messages';
import {
  checkDriverCommit,
  checkLeaseArguments,
  invalidDriverArgument,
  readyWithin,
} from '../driver-changes.util';
import {
  clientOptions,
  isCluster,
  loadRedisModule,
  RedisConnection,
  runScript,
  toPersistenceError,
} from './redis.client';
import { keyPrefixProblem, RedisKeys } from './redis.keys';
import {
  COMMIT,
  LEASE_ACQUIRE,
  LEASE_RELEASE,
  LEASE_RENEW,
  QUARANTINE,
  SNAPSHOT,
} from './redis.scripts';

/** Options of {@link RedisStorageDriver}. */
export interface RedisStorageDriverOptions {
  /**
   * The server, as a `redis://[user:password@]host:port[/db]` (or `rediss://`) URL. Leave out when
   * passing `client`.
   * @default 'redis://127.0.0.1:6379'
   */
  url?: string;
  /**
   * An ioredis client to use instead of `url`: `new Redis(…)`, or `new Cluster(nodes)` for a Redis
   * Cluster. The driver does not close it, and cannot set the options that make commands fail fast
   * while disconnected: give it `enableOfflineQueue: false`, `maxRetriesPerRequest: 0` and
   * `autoResendUnfulfilledCommands: false` yourself (a Cluster: `enableOfflineQueue: false` and the
   * other two in `redisOptions`; docs/storage-drivers.md).
   */
  client?: RedisConnection;
  /**
   * Prefix of every key (and of the pub/sub channel), e.g. `'myapp:state:'`: one prefix per store.
   * Replicas of one application share it. The driver puts it in a hash tag (`{myapp:state:}item:…`)
   * so that all of a store's keys are in one slot and commits work on Redis Cluster; a prefix that
   * holds a hash tag already (`'{myapp}:state:'`) is used as it is.
   */
  keyPrefix: string;
  /**
   * This replica's id, stamped on its commits and notices: a replica ignores its own notices. Give
   * each replica (process) its own.
   * @default a random UUID per driver
   */
  replicaId?: string;
  /**
   * How long `open()` waits for the server before it rejects (retryably).
   * @default 2000
   */
  connectTimeoutMs?: number;
  /**
   * Items read per round trip by `loadAll()`, which reads in chunks so that Redis keeps serving other
   * clients during a large load.
   * @default 500
   */
  readChunkSize?: number;
  /**
   * @internal Chunked read attempts of `loadAll()` before it falls back to one atomic snapshot script
   * (0: always the script). For tests.
   * @default 4
   */
  optimisticReads?: number;
}

const DRIVER = 'RedisStorageDriver';
const DEFAULT_URL = 'redis://127.0.0.1:6379';

/** One stored entry as read, before it is judged good or bad. */
interface RawEntry {
  id: string;
  /** Set when the key is not a hash: its type, or the error of reading it. */
  wrongType?: string;
  data: Buffer | null;
  rev: Buffer | string | null;
}

interface RawCollection {
  collection: string;
  /** Set when the index key is not a set. */
  indexProblem?: string;
  entries: RawEntry[];
}

type PipelineResult = Array<[Error | null, unknown]> | null;

const text = (value: unknown): string =>
  Buffer.isBuffer(value) ? value.toString('utf8') : String(value);

const parseRevision = (value: Buffer | string | null): number | undefined => {
  if (value === null) return undefined;
  const digits = text(value);
  return /^[1-9]\d{0,14}$/.test(digits) ? Number(digits) : undefined;
};

function invalid(option: string, got: unknown, fix: string): PersistenceError {
  return invalidDriverArgument(DRIVER, option, got, fix);
}

/** The URL without its credentials, for messages. */
function publicUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return 'redis';
  }
}

/**
 * Keeps the store's items in Redis, for applications running several replicas (docs/storage-drivers.md).
 * Each item is a hash (bytes, revision, writer) indexed per collection; a commit is one Lua script
 * (atomic, compare-and-set per item); replicas learn of each other's commits through pub/sub; leases
 * run once-per-cluster work. `ioredis` is loaded at `open()`, so it is only needed when used.
 */
export class RedisStorageDriver implements StorageDriver {
  readonly driverVersion = 1 as const;
  readonly location: string;
  readonly replicaId: string;
  private readonly keys: RedisKeys;
  private readonly url: string;
  private readonly ownsClient: boolean;
  private readonly connectTimeoutMs: number;
  private readonly readChunkSize: number;
  private readonly optimisticReads: number;
  private logger: DriverLogger = new Logger(DRIVER);
  private client?: RedisConnection;
  private subscriber?: RedisConnection;
  /** Settles once the subscription of {@link watch} is active. */
  private subscribed?: Promise<void>;
  private state: 'new' | 'open' | 'closed' = 'new';
  private readonly listeners = new Set<(event: DriverWatchEvent) => void>();

  constructor(options: RedisStorageDriverOptions) {
    if (options === null || typeof options !== 'object') {
      throw invalid(
        'options',
        options,
        "Pass an object: new RedisStorageDriver({ keyPrefix: 'app:' }).",
      );
    }
    const { url, client, keyPrefix, replicaId, connectTimeoutMs, readChunkSize } = options;
    if (typeof keyPrefix !== 'string' || keyPrefix.length === 0 || keyPrefix.length > 256) {
      throw invalid(
        'keyPrefix',
        keyPrefix,
        "Give a non-empty string of at most 256 characters, one per store, e.g. 'myapp:state:'.",
      );
    }
    if (keyPrefixProblem(keyPrefix) !== undefined) {
      throw invalid(
        'keyPrefix',
        keyPrefix,
        "Use braces only as one hash tag ('{myapp}:state:'), or none: the driver puts the whole prefix in one.",
      );
    }
    if (url !== undefined && client !== undefined) {
      throw invalid('url', url, 'Pass either url or client, not both.');
    }
    if (url !== undefined && (typeof url !== 'string' || !/^rediss?:\/\/./.test(url))) {
      throw invalid('url', url, "Give a redis:// or rediss:// URL, e.g. 'redis://127.0.0.1:6379'.");
    }
    if (client !== undefined && (client === null || typeof client.callBuffer !== 'function')) {
      throw invalid('client', client, 'Pass an ioredis client (new Redis(...)), or a url instead.');
    }
    if (
      replicaId !== undefined &&
      (typeof replicaId !== 'string' || replicaId.length === 0 || replicaId.length > 128)
    ) {
      throw invalid('replicaId', replicaId, 'Give a non-empty string of at most 128 characters.');
    }
    if (
      connectTimeoutMs !== undefined &&
      (!Number.isInteger(connectTimeoutMs) || connectTimeoutMs <= 0)
    ) {
      throw invalid(
        'connectTimeoutMs',
        connectTimeoutMs,
        'Give a positive integer (milliseconds).',
      );
    }
    if (readChunkSize !== undefined && (!Number.isInteger(readChunkSize) || readChunkSize <= 0)) {
      throw invalid('readChunkSize', readChunkSize, 'Give a positive integer (items).');
    }
    this.keys = new RedisKeys(keyPrefix);
    this.url = url ?? DEFAULT_URL;
    this.client = client;
    this.ownsClient = client === undefined;
    this.replicaId = replicaId ?? randomUUID();
    this.connectTimeoutMs = connectTimeoutMs ?? 2000;
    this.readChunkSize = readChunkSize ?? 500;
    this.optimisticReads = options.optimisticReads ?? 4;
    const server =
      client === undefined
        ? publicUrl(this.url)
        : isCluster(client)
          ? 'redis-cluster'
          : `redis://${String(client.options?.host ?? '?')}:${String(client.options?.port ?? '?')}`;
    this.location = `${server} (prefix "${keyPrefix}")`;
  }

  /**
   * Connects. Rejects with `PERSISTENCE_STORAGE_UNAVAILABLE` (retryable) when the server does not
   * answer, with `PERSISTENCE_OPTIONAL_DEPENDENCY_MISSING` when ioredis is not installed.
   */
  /** Logs through the store's `logger` option from now on (the store calls it before `open()`). */
  useLogger(logger: DriverLogger): void {
    this.logger = logger;
  }

  async open(): Promise<void> {
    if (this.state === 'open') return;
    if (this.state === 'closed') throw this.notOpen();
    let client = this.client;
    try {
      if (client === undefined) {
        const RedisClient = await loadRedisModule();
        client = new RedisClient(
          this.url,
          clientOptions(this.connectTimeoutMs, `nestjs-persistence:${this.replicaId}`),
        );
        // Connection errors surface as rejected commands; the event would otherwise be logged.
        client.on('error', () => undefined);
      }
      if (client.status === 'wait') await client.connect();
      await client.ping();
    } catch (error) {
      if (this.ownsClient) client?.disconnect();
      throw toPersistenceError(error, this.location, 'open');
    }
    this.client = client;
    this.state = 'open';
  }

  /**
   * Why Redis cannot be reached now: the client's connection is not `ready` (ioredis reports
   * `reconnecting`, `connecting`, `close` or `end` from the moment the socket drops).
   */
  connectionProblem(): string | undefined {
    if (this.state !== 'open' || this.client === undefined) return `the driver is ${this.state}`;
    const status = this.client.status;
    return status === 'ready' ? undefined : `its connection is ${status}`;
  }

  /** Disconnects (a client passed in options is left open). Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.listeners.clear();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    subscriber?.disconnect();
    if (this.ownsClient && this.client !== undefined) {
      const client = this.client;
      await client.quit().catch(() => client.disconnect());
    }
  }

  async loadAll(collections: readonly string[]): Promise<LoadResult> {
    const client = this.openClient();
    try {
      for (let attempt = 0; attempt < this.optimisticReads; attempt++) {
        const raw = await this.readChunked(client, collections);
        if (raw !== undefined) return await this.judge(client, raw, true);
      }
      return await this.judge(client, await this.readSnapshot(client, collections), true);
    } catch (error) {
      throw toPersistenceError(error, this.location, 'loadAll');
    }
  }

  async read(collection: string, ids: readonly string[]): Promise<LoadResult> {
    const client = this.openClient();
    if (ids.length === 0) return { records: [], problems: [] };
    try {
      const transaction = client.multi();
      for (const id of ids) transaction.hmgetBuffer(this.keys.item(collection, id), 'data', 'rev');
      const results = await transaction.exec();
      const entries = await this.entries(client, collection, ids, results);
      // Absent items are not problems here: they were removed.
      const present = entries.filter((e) => e.wrongType !== undefined || e.data || e.rev);
      return await this.judge(client, [{ collection, entries: present }], false);
    } catch (error) {
      throw toPersistenceError(error, this.location, 'read');
    }
  }

  async commit(changes: readonly DriverChange[], options: CommitOptions): Promise<CommitResult> {
    const client = this.openClient();
    const policy = checkDriverCommit(DRIVER, changes, options);
    if (changes.length === 0) return { applied: [], conflicts: [], blocked: [] };
    const keys: string[] = [this.keys.revision];
    const args: Array<string | Buffer | number> = [
      policy,
      this.replicaId,
      this.keys.channel,
      changes.length,
    ];
    for (const change of changes) {
      keys.push(this.keys.item(change.collection, change.id), this.keys.index(change.collection));
      args.push(
        change.collection,
        change.id,
        change.data === null ? 'D' : 'S',
        change.expectedRevision ?? 0,
        change.data ?? '',
      );
    }
    let reply: [number | null, number[], unknown[], unknown[]];
    try {
      reply = (await runScript(client, COMMIT, keys, args)) as typeof reply;
    } catch (error) {
      throw toPersistenceError(error, this.location, 'commit');
    }
    const [revision, flags, conflictReply, badReply] = reply;
    const applied: AppliedChange[] = [];
    changes.forEach((change, i) => {
      if (flags[i] === 1 && revision !== null) {
        applied.push({
          collection: change.collection,
          id: change.id,
          revision,
          deleted: change.data === null,
        });
      }
    });
    const conflicts: DriverConflict[] = [];
    for (let k = 0; k < conflictReply.length; k += 3) {
      const change = changes[Number(conflictReply[k]) - 1];
      const remoteData = conflictReply[k + 2];
      conflicts.push({
        collection: change.collection,
        id: change.id,
        expectedRevision: change.expectedRevision ?? 0,
        local: change.data,
        remote: {
          data: Buffer.isBuffer(remoteData) ? remoteData : null,
          revision: Number(conflictReply[k + 1]),
        },
        applied: policy === 'last-write-wins',
      });
    }
    const blocked: StoredProblem[] = [];
    for (let k = 0; k < badReply.length; k += 3) {
      const change = changes[Number(badReply[k]) - 1];
      const key =
        text(badReply[k + 1]) === 'index'
          ? this.keys.index(change.collection)
          : this.keys.item(change.collection, change.id);
      blocked.push(
        await this.problem(client, change.collection, change.id, key, text(badReply[k + 2])),
      );
    }
    return { revision: revision ?? undefined, applied, conflicts, blocked };
  }

  watch(listener: (event: DriverWatchEvent) => void): () => void {
    const client = this.openClient();
    this.listeners.add(listener);
    if (this.subscriber === undefined) this.subscribe(client);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Resolves once the subscription started by {@link watch} is active (it is asynchronous), so that
   * a load that follows misses no commit: every later commit is notified. Rejects with
   * `PERSISTENCE_STORAGE_UNAVAILABLE` after `connectTimeoutMs`.
   */
  async watchReady(): Promise<void> {
    if (this.subscribed === undefined) return;
    await readyWithin(this.subscribed, this.connectTimeoutMs, () =>
      toPersistenceError(
        new Error(`not subscribed within ${this.connectTimeoutMs} ms`),
        this.location,
        'watch',
      ),
    );
  }

  async acquireLease(name: string, ttlMs: number): Promise<Lease | undefined> {
    const client = this.openClient();
    checkLeaseArguments(DRIVER, name, ttlMs);
    const leaseKey = this.keys.lease(name);
    const nonce = `${this.replicaId}/${randomUUID()}`;
    let token: unknown;
    try {
      token = await runScript(
        client,
        LEASE_ACQUIRE,
        [leaseKey, this.keys.fence(name)],
        [nonce, ttlMs],
      );
    } catch (error) {
      throw toPersistenceError(error, this.location, 'acquireLease');
    }
    if (token === null) return undefined;
    const value = `${Number(token)}:${nonce}`;
    const run = async (operation: string, ...args: Array<string | number>): Promise<number> => {
      try {
        const script = operation === 'renew' ? LEASE_RENEW : LEASE_RELEASE;
        return Number(await runScript(this.openClient(), script, [leaseKey], args));
      } catch (error) {
        throw toPersistenceError(error, this.location, `lease ${operation}`);
      }
    };
    return {
      name,
      token: Number(token),
      renew: async () => (await run('renew', value, ttlMs)) === 1,
      release: async () => {
        await run('release', value);
      },
    };
  }

  private openClient(): RedisConnection {
    if (this.state !== 'open' || this.client === undefined) throw this.notOpen();
    return this.client;
  }

  private notOpen(): PersistenceError {
    return new PersistenceError(
      PersistenceErrorCode.StoreClosed,
      driverNotOpen(this.location, this.state === 'closed' ? 'closed' : 'not open'),
      { path: this.location },
    );
  }

  /**
   * Reads whole collections in chunks, between two reads of the revision counter: the same value
   * twice means no commit applied in between, so the reads form one consistent state. Undefined when
   * a commit raced it.
   */
  private async readChunked(
    client: RedisConnection,
    collections: readonly string[],
  ): Promise<RawCollection[] | undefined> {
    const before = await client.get(this.keys.revision);
    const indexes = client.pipeline();
    for (const collection of collections) indexes.smembers(this.keys.index(collection));
    const indexResults = await indexes.exec();
    const out: RawCollection[] = [];
    for (const [j, collection] of collections.entries()) {
      const [error, members] = indexResults?.[j] ?? [new Error('no reply'), null];
      if (error) {
        out.push({
          collection,
          indexProblem: await this.typeOf(client, this.keys.index(collection)),
          entries: [],
        });
        continue;
      }
      const ids = members as string[];
      const entries: RawEntry[] = [];
      for (let start = 0; start < ids.length; start += this.readChunkSize) {
        const chunk = ids.slice(start, start + this.readChunkSize);
        const pipeline = client.pipeline();
        for (const id of chunk) pipeline.hmgetBuffer(this.keys.item(collection, id), 'data', 'rev');
        const results = await pipeline.exec();
        entries.push(...(await this.entries(client, collection, chunk, results)));
      }
      out.push({ collection, entries });
    }
    const after = await client.get(this.keys.revision);
    return before === after ? out : undefined;
  }

  /** One atomic snapshot by script: consistent whatever commits run meanwhile. */
  private async readSnapshot(
    client: RedisConnection,
    collections: readonly string[],
  ): Promise<RawCollection[]> {
    const reply = (await runScript(
      client,
      SNAPSHOT,
      [this.keys.revision, ...collections.map((c) => this.keys.index(c))],
      collections.map((c) => this.keys.item(c, '')),
    )) as unknown[];
    return collections.map((collection, j) => {
      const [indexType, flat] = reply[j + 1] as [Buffer, unknown[]];
      const type = text(indexType);
      const entries: RawEntry[] = [];
      for (let k = 0; k < flat.length; k += 4) {
        const itemType = text(flat[k + 1]);
        entries.push({
          id: text(flat[k]),
          wrongType: itemType === 'hash' || itemType === 'none' ? undefined : itemType,
          data: (flat[k + 2] as Buffer | null) ?? null,
          rev: (flat[k + 3] as Buffer | null) ?? null,
        });
      }
      return {
        collection,
        indexProblem: type === 'set' || type === 'none' ? undefined : type,
        entries,
      };
    });
  }

  private async entries(
    client: RedisConnection,
    collection: string,
    ids: readonly string[],
    results: PipelineResult,
  ): Promise<RawEntry[]> {
    const entries: RawEntry[] = [];
    for (const [i, id] of ids.entries()) {
      const [error, fields] = results?.[i] ?? [new Error('no reply'), null];
      if (error) {
        const wrongType = await this.typeOf(client, this.keys.item(collection, id));
        entries.push({ id, wrongType, data: null, rev: null });
      } else {
        const [data, rev] = fields as [Buffer | null, Buffer | null];
        entries.push({ id, data, rev });
      }
    }
    return entries;
  }

  private async typeOf(client: RedisConnection, key: string): Promise<string> {
    return client.type(key).catch((error: Error) => error.message);
  }

  /** Splits what was read into records and problems (quarantining the bad values). */
  private async judge(
    client: RedisConnection,
    raw: readonly RawCollection[],
    indexed: boolean,
  ): Promise<LoadResult> {
    const records: StoredRecord[] = [];
    const problems: StoredProblem[] = [];
    for (const { collection, indexProblem, entries } of raw) {
      if (indexProblem !== undefined) {
        const key = this.keys.index(collection);
        problems.push(
          await this.problem(client, collection, undefined, key, `is a ${indexProblem}, not a set`),
        );
        continue;
      }
      for (const entry of entries) {
        const key = this.keys.item(collection, entry.id);
        const revision = parseRevision(entry.rev);
        let problem: string | undefined;
        if (entry.wrongType !== undefined) problem = `is a ${entry.wrongType}, not a hash`;
        else if (entry.data === null && entry.rev === null) {
          problem = indexed ? 'is listed in its index set but does not exist' : 'does not exist';
        } else if (entry.data === null) problem = 'has no "data" field';
        else if (revision === undefined) {
          problem = `has "rev" ${entry.rev === null ? 'missing' : JSON.stringify(text(entry.rev))}, not a positive integer`;
        }
        if (problem === undefined && entry.data !== null && revision !== undefined) {
          records.push({ collection, id: entry.id, data: entry.data, revision });
        } else {
          problems.push(
            await this.problem(client, collection, entry.id, key, problem ?? 'is unreadable'),
          );
        }
      }
    }
    return { records, problems };
  }

  /** A bad value: copied aside (never moved or deleted), reported with a typed error. */
  private async problem(
    client: RedisConnection,
    collection: string,
    id: string | undefined,
    key: string,
    problem: string,
  ): Promise<StoredProblem> {
    let quarantinedAs: string | undefined;
    try {
      const copy = await runScript(
        client,
        QUARANTINE,
        [key, this.keys.quarantine],
        [this.keys.quarantinePrefix, this.keys.strip(key)],
      );
      quarantinedAs = copy === null ? undefined : text(copy);
    } catch (error) {
      this.logger.warn(`Could not copy ${key} aside: ${(error as Error).message}`);
    }
    const error = new PersistenceError(
      PersistenceErrorCode.BadStoredData,
      badStoredData(this.location, key, problem, quarantinedAs),
      { operation: 'load', adapter: collection, itemId: id, path: key },
    );
    return { collection, id, error, quarantinedAs };
  }

  /** Starts the pub/sub connection; (re)subscribes on every ready, and asks for a resync after a gap. */
  private subscribe(client: RedisConnection): void {
    // A connection of its own for pub/sub (a subscribed connection takes no other command); a
    // Cluster keeps its startup nodes and takes the same options nested per node.
    const subscriber: RedisConnection = isCluster(client)
      ? client.duplicate(undefined, {
          lazyConnect: true,
          redisOptions: { ...client.options.redisOptions, autoResubscribe: false },
        })
      : client.duplicate({ lazyConnect: true, autoResubscribe: false });
    this.subscriber = subscriber;
    let readyBefore = false;
    let subscribed = (): void => undefined;
    this.subscribed = new Promise((resolve) => (subscribed = resolve));
    subscriber.on('error', () => undefined);
    subscriber.on('ready', () => {
      subscriber.subscribe(this.keys.channel).then(
        () => {
          if (readyBefore) this.emit({ kind: 'resync' });
          readyBefore = true;
          subscribed();
        },
        (error: Error) =>
          this.logger.warn(`Could not subscribe to ${this.keys.channel}: ${error.message}`),
      );
    });
    subscriber.on('message', (_channel: string, message: string) => this.onMessage(message));
    subscriber.connect().catch(() => undefined); // it keeps reconnecting; 'ready' subscribes
  }

  private onMessage(message: string): void {
    let notice: {
      o: string;
      r: number;
      c: Array<[string, string, boolean]> | Record<string, never>;
    };
    try {
      notice = JSON.parse(message) as typeof notice;
    } catch {
      this.logger.warn(`Ignored an unreadable notice on ${this.keys.channel}`);
      return;
    }
    if (notice.o === this.replicaId) return;
    const changes: WatchedChange[] = (Array.isArray(notice.c) ? notice.c : []).map(
      ([collection, id, deleted]) => ({ collection, id, deleted }),
    );
    this.emit({ kind: 'changes', origin: notice.o, revision: notice.r, changes });
  }

  private emit(event: DriverWatchEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.logger.error(`A watch listener threw: ${(error as Error).message}`);
      }
    }
  }
}
