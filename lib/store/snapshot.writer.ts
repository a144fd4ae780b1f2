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
import { FileSystemStorage, FileToWrite } from '../storage/file-system.storage';
import { encodeId } from '../storage/file-name.codec';
import { ItemFileCodec } from '../storage/item-file.codec';

/**
 * Writes the adapters' state: every snapshot is taken first (one moment for all adapters), then each
 * collection's items are serialized, written atomically, and files of items gone from memory removed.
 *
 * An item that cannot be serialized is reported and skipped, and its previous file is kept; an I/O
 * failure stops the save before anything is removed.
 */
export class SnapshotWriter {
  constructor(
    private readonly storage: FileSystemStorage,
    private readonly report: (error: PersistenceError) => void,
  ) {}

  async save(adapters: readonly PersistenceAdapter[], codec: ItemFileCodec): Promise<SaveMetadata> {
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
    const meta: SaveMetadata = {
      path: this.storage.root,
      format: codec.serializer.format,
      size: 0,
      timestamp,
      items: 0,
      adapters: {},
      deleted: 0,
      durationMs: 0,
    };
    let failed = 0;
    for (const [adapter, items] of snapshots) {
      const result = await this.saveCollection(adapter.name, items, codec);
      meta.size += result.size;
      meta.items += result.written;
      meta.adapters[adapter.name] = result.written;
      meta.deleted += result.deleted;
      failed += result.failed;
    }
    if (failed > 0) {
      throw new PersistenceError(
        PersistenceErrorCode.SaveIncomplete,
        saveIncomplete(failed, meta.items + failed),
        { operation: 'save', path: this.storage.root },
      );
    }
    meta.durationMs = performance.now() - started;
    return meta;
  }

  private async saveCollection(
    collection: string,
    items: ReadonlyMap<string, unknown>,
    codec: ItemFileCodec,
  ): Promise<{ written: number; failed: number; deleted: number; size: number }> {
    const dir = this.storage.collectionPath(collection);
    const files: FileToWrite[] = [];
    const written = new Set<string>();
    const writtenStems = new Set<string>();
    const keptStems = new Set<string>();
    let size = 0;
    let failed = 0;
    let count = 0;
    for (const [id, value] of items) {
      if (++count % YIELD_EVERY === 0) {
        await yieldToEventLoop();
      }
      try {
        const encoded = await codec.encode(collection, id, value);
        files.push(encoded);
        written.add(encoded.fileName);
        writtenStems.add(encoded.stem);
        size += encoded.data.length;
      } catch (error) {
        failed++;
        const keptStem = stemOrUndefined(id);
        if (keptStem !== undefined) keptStems.add(keptStem);
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
    try {
      const existing = await this.storage.list(collection, codec.serializer.extension);
      await this.storage.write(collection, files);
      const stale = existing.filter(
        (file) => !written.has(file.fileName) && !keptStems.has(file.stem),
      );
      await this.storage.remove(
        collection,
        stale.map((file) => file.fileName),
      );
      const deleted = stale.filter((file) => !writtenStems.has(file.stem)).length;
      return { written: files.length, failed, deleted, size };
    } catch (error) {
      throw new PersistenceError(
        PersistenceErrorCode.IoFailed,
        ioFailed('save into', dir, reasonOf(error)),
        { operation: 'save', adapter: collection, path: dir, cause: error },
      );
    }
  }
}

/** Serializing is synchronous CPU work: let the application's I/O in between batches. */
const YIELD_EVERY = 64;

export const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => setImmediate(resolve));

function stemOrUndefined(id: string): string | undefined {
  try {
    return encodeId(id);
  } catch {
    return undefined;
  }
}
