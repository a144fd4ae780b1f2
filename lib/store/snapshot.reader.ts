import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { LoadMetadata } from '../interfaces/persistence-metadata.interface';
import { Serializer } from '../interfaces/serializer.interface';
import { adapterFailed, corruptFile, ioFailed, reasonOf } from '../persistence.messages';
import { FileSystemStorage, ItemFile } from '../storage/file-system.storage';
import { decodeStem } from '../storage/file-name.codec';
import { decodeItem } from '../storage/item-file.codec';
import { mapLimit } from '../storage/map-limit.util';

/**
 * Reads every adapter's files, then restores the adapters. A file that cannot be read or parsed is
 * reported, moved to `.quarantine/`, and the rest loads. The adapters are restored only once every
 * folder was read, so an unreadable folder leaves the in-memory state as it was.
 */
export class SnapshotReader {
  constructor(
    private readonly storage: FileSystemStorage,
    private readonly ioConcurrency: number,
    private readonly report: (error: PersistenceError) => void,
  ) {}

  async load(
    adapters: readonly PersistenceAdapter[],
    serializer: Serializer,
  ): Promise<LoadMetadata> {
    const started = performance.now();
    const meta: LoadMetadata = {
      path: this.storage.root,
      format: serializer.format,
      size: 0,
      timestamp: new Date(),
      items: 0,
      adapters: {},
      skipped: 0,
      durationMs: 0,
    };
    const states: Array<[PersistenceAdapter, Map<string, unknown>]> = [];
    for (const adapter of adapters) {
      const items = await this.readCollection(adapter, serializer, meta);
      states.push([adapter, items]);
      meta.items += items.size;
      meta.adapters[adapter.name] = items.size;
    }
    for (const [adapter, items] of states) {
      try {
        await adapter.restore(items);
      } catch (error) {
        meta.skipped += items.size;
        meta.items -= items.size;
        meta.adapters[adapter.name] = 0;
        this.report(
          new PersistenceError(
            PersistenceErrorCode.AdapterFailed,
            adapterFailed(adapter.name, 'restore', reasonOf(error)),
            { operation: 'load', adapter: adapter.name, cause: error },
          ),
        );
      }
    }
    meta.durationMs = performance.now() - started;
    return meta;
  }

  private async readCollection(
    adapter: PersistenceAdapter,
    serializer: Serializer,
    meta: LoadMetadata,
  ): Promise<Map<string, unknown>> {
    const collection = adapter.name;
    let files: ItemFile[];
    try {
      files = await this.storage.list(collection, serializer.extension);
    } catch (error) {
      const dir = this.storage.collectionPath(collection);
      throw new PersistenceError(
        PersistenceErrorCode.IoFailed,
        ioFailed('read', dir, reasonOf(error)),
        {
          operation: 'load',
          adapter: collection,
          path: dir,
          cause: error,
        },
      );
    }
    // Where one item has files in two formats (a crash between writing the new one and removing the
    // old one), the file in the current format is the newer.
    files.sort(
      (a, b) =>
        Number(a.extension === serializer.extension) - Number(b.extension === serializer.extension),
    );
    const decoded = await mapLimit(files, this.ioConcurrency, async (file) => {
      const data = await this.storage.read(file.path).catch((error: unknown) => error as Error);
      if (!Buffer.isBuffer(data)) {
        this.report(
          new PersistenceError(
            PersistenceErrorCode.IoFailed,
            ioFailed('read', file.path, data.message),
            {
              operation: 'load',
              adapter: collection,
              path: file.path,
              cause: data,
            },
          ),
        );
        meta.skipped++;
        return undefined;
      }
      try {
        const envelope = await decodeItem(serializer, file, data);
        if (adapter.revive) {
          envelope.data = adapter.revive(envelope.data, envelope.id);
        }
        meta.size += data.length;
        return envelope;
      } catch (error) {
        meta.skipped++;
        await this.quarantine(collection, file, error);
        return undefined;
      }
    });
    const items = new Map<string, unknown>();
    for (const envelope of decoded) {
      if (envelope) items.set(envelope.id, envelope.data);
    }
    return items;
  }

  private async quarantine(collection: string, file: ItemFile, cause: unknown): Promise<void> {
    let movedTo: string | undefined;
    try {
      movedTo = await this.storage.quarantine(collection, file);
    } catch {
      // Left where it is; pinned so that no save removes it.
      this.storage.pin(file.path);
    }
    this.report(
      new PersistenceError(
        PersistenceErrorCode.CorruptFile,
        corruptFile(file.path, reasonOf(cause), movedTo),
        {
          operation: 'load',
          adapter: collection,
          itemId: decodeStem(file.stem) ?? file.stem,
          path: file.path,
          cause,
        },
      ),
    );
  }
}
