import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { SaveMetadata } from '../interfaces/persistence-metadata.interface';
import {
  adapterFailed,
  ioFailed,
  reasonOf,
  saveIncomplete,
  serializeFailed,
} from '../persistence.messages';
import { yieldToEventLoop } from '../storage/event-loop.util';
import { encodeId } from '../storage/file-name.codec';
import { ItemFileCodec } from '../storage/item-file.codec';
import { Journal, JournalOp } from '../storage/journal';
import { CommittedEntry, CommittedIndex, hashBytes } from './committed.index';

/** Serializing is synchronous CPU work: let the application's I/O in between batches. */
const YIELD_EVERY = 64;

/** A committed save: its metadata and the operations the next checkpoint must apply to the files. */
export interface SaveResult {
  meta: SaveMetadata;
  ops: JournalOp[];
  /** Set when some items could not be serialized (the others were committed). */
  incomplete?: PersistenceError;
}

/**
 * Commits the adapters' state. Every snapshot is taken first (one moment for all adapters); the
 * items that changed since the last commit and the items that disappeared become one journal record,
 * appended and fsynced once: that is the commit, all or nothing. The item files are brought up to
 * date later, by the checkpoint.
 *
 * An item that cannot be serialized is reported and left as it was committed; an I/O failure
 * commits nothing.
 */
export class SnapshotWriter {
  constructor(
    private readonly journal: Journal,
    private readonly index: CommittedIndex,
    private readonly root: string,
    private readonly report: (error: PersistenceError) => void,
  ) {}

  /**
   * @param beforeWrite runs after the snapshots are taken and before anything is compared or written
   *   (the store checks that its folder still exists there).
   */
  async save(
    adapters: readonly PersistenceAdapter[],
    codec: ItemFileCodec,
    beforeWrite: () => Promise<void> = () => Promise.resolve(),
  ): Promise<SaveResult> {
    const started = performance.now();
    const timestamp = new Date();
    const snapshots: Array<[PersistenceAdapter, ReadonlyMap<string, unknown>]> = [];
    for (const adapter of adapters) {
      try {
        snapshots.push([adapter, await adapter.snapshot()]);
      } catch (error) {
        throw new PersistenceError(
          PersistenceErrorCode.AdapterFailed,
          adapterFailed(adapter.name, 'snapshot', reasonOf(error)),
          { operation: 'save', adapter: adapter.name, cause: error },
        );
      }
    }
    await beforeWrite();
    const meta: SaveMetadata = {
      path: this.root,
      format: codec.serializer.format,
      size: 0,
      timestamp,
      items: 0,
      adapters: {},
      changed: 0,
      deleted: 0,
      durationMs: 0,
    };
    const ops: JournalOp[] = [];
    const updates: Array<[Map<string, CommittedEntry>, string, CommittedEntry | undefined]> = [];
    let failed = 0;
    let count = 0;
    for (const [adapter, items] of snapshots) {
      const collection = adapter.name;
      let committed = this.index.get(collection);
      if (!committed) {
        committed = new Map();
        this.index.set(collection, committed);
      }
      const seen = new Set<string>();
      let saved = 0;
      for (const [id, value] of items) {
        if (++count % YIELD_EVERY === 0) await yieldToEventLoop();
        let stem: string | undefined;
        try {
          stem = encodeId(id);
          seen.add(stem);
          const entry = committed.get(stem);
          const fileName = stem + codec.extension;
          const current =
            entry !== undefined && entry.fileName === fileName && entry.keyId === codec.keyId;
          if (current && entry.ref === value && !entry.others) {
            saved++;
            continue;
          }
          const plain = await codec.serialize(id, value);
          const hash = hashBytes(plain);
          if (current && entry.hash === hash && !entry.others) {
            entry.ref = value;
            saved++;
            continue;
          }
          const data = codec.seal(collection, stem, plain);
          ops.push({ collection, fileName, data });
          for (const old of [entry?.fileName, ...(entry?.others ?? [])]) {
            if (old !== undefined && old !== fileName) ops.push({ collection, fileName: old });
          }
          updates.push([committed, stem, { fileName, ref: value, hash, keyId: codec.keyId }]);
          meta.size += data.length;
          meta.changed++;
          saved++;
        } catch (error) {
          failed++;
          this.report(
            error instanceof PersistenceError
              ? new PersistenceError(error.code, error.message, {
                  operation: 'save',
                  adapter: collection,
                  itemId: id,
                })
              : new PersistenceError(
                  PersistenceErrorCode.SerializeFailed,
                  serializeFailed(collection, id, reasonOf(error)),
                  { operation: 'save', adapter: collection, itemId: id, cause: error },
                ),
          );
        }
      }
      for (const [stem, entry] of committed) {
        if (seen.has(stem)) continue;
        for (const fileName of [entry.fileName, ...(entry.others ?? [])]) {
          ops.push({ collection, fileName });
        }
        updates.push([committed, stem, undefined]);
        meta.deleted++;
      }
      meta.items += saved;
      meta.adapters[collection] = saved;
    }
    if (ops.length > 0) {
      try {
        await this.journal.append(ops);
      } catch (error) {
        throw new PersistenceError(
          PersistenceErrorCode.IoFailed,
          ioFailed('commit the save to', this.journal.path, reasonOf(error)),
          { operation: 'save', path: this.journal.path, cause: error },
        );
      }
    }
    for (const [committed, stem, entry] of updates) {
      if (entry) committed.set(stem, entry);
      else committed.delete(stem);
    }
    meta.durationMs = performance.now() - started;
    const incomplete =
      failed > 0
        ? new PersistenceError(
            PersistenceErrorCode.SaveIncomplete,
            saveIncomplete(failed, meta.items + failed),
            { operation: 'save', path: this.root },
          )
        : undefined;
    return { meta, ops, incomplete };
  }
}
