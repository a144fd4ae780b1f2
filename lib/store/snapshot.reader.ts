import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { LoadMetadata } from '../interfaces/persistence-metadata.interface';
import {
  adapterFailed,
  corruptFile,
  decryptionFailed,
  ioFailed,
  reasonOf,
} from '../persistence.messages';
import { decodeStem } from '../storage/file-name.codec';
import { FileSystemStorage, ItemFile } from '../storage/file-system.storage';
import { ItemDecodeError, ItemFileCodec } from '../storage/item-file.codec';
import { mapLimit } from '../storage/map-limit.util';
import { UnsafeFileError } from '../storage/safe-read';

/**
 * Reads every adapter's files, then restores the adapters. What happens to a file that cannot be
 * loaded depends on why:
 *   - not a valid item (bad bytes, bad envelope, rejected by `revive()`, over the size limit):
 *     moved to `.quarantine/`, reported, the rest loads;
 *   - encrypted and not readable with the keys at hand, or refused by the file system: left in place
 *     and pinned (no save removes it), reported, the rest loads.
 * The adapters are restored only once every folder was read, so an unreadable folder leaves the
 * in-memory state as it was.
 */
export class SnapshotReader {
  constructor(
    private readonly storage: FileSystemStorage,
    private readonly ioConcurrency: number,
    private readonly report: (error: PersistenceError) => void,
  ) {}

  async load(adapters: readonly PersistenceAdapter[], codec: ItemFileCodec): Promise<LoadMetadata> {
    const started = performance.now();
    const meta: LoadMetadata = {
      path: this.storage.root,
      format: codec.serializer.format,
      size: 0,
      timestamp: new Date(),
      items: 0,
      adapters: {},
      skipped: 0,
      durationMs: 0,
    };
    const states: Array<[PersistenceAdapter, Map<string, unknown>]> = [];
    for (const adapter of adapters) {
      const items = await this.readCollection(adapter, codec, meta);
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
    codec: ItemFileCodec,
    meta: LoadMetadata,
  ): Promise<Map<string, unknown>> {
    const collection = adapter.name;
    let files: ItemFile[];
    try {
      files = await this.storage.list(collection, codec.serializer.extension);
    } catch (error) {
      const dir = this.storage.collectionPath(collection);
      throw new PersistenceError(
        PersistenceErrorCode.IoFailed,
        ioFailed('read', dir, reasonOf(error)),
        { operation: 'load', adapter: collection, path: dir, cause: error },
      );
    }
    // Where one item has files in two formats (a crash between writing the new one and removing the
    // old one), the file in the current format is the newer: read it last so it wins.
    files.sort(
      (a, b) => Number(a.extension === codec.extension) - Number(b.extension === codec.extension),
    );
    const decoded = await mapLimit(files, this.ioConcurrency, async (file) => {
      try {
        const data = await this.storage.read(file.path);
        const envelope = await codec.decode(collection, file, data);
        if (adapter.revive) {
          envelope.data = adapter.revive(envelope.data, envelope.id);
        }
        meta.size += data.length;
        return envelope;
      } catch (error) {
        meta.skipped++;
        await this.setAside(collection, file, error);
        return undefined;
      }
    });
    const items = new Map<string, unknown>();
    for (const envelope of decoded) {
      if (envelope) items.set(envelope.id, envelope.data);
    }
    return items;
  }

  private async setAside(collection: string, file: ItemFile, cause: unknown): Promise<void> {
    const context = {
      operation: 'load' as const,
      adapter: collection,
      itemId: decodeStem(file.stem) ?? file.stem,
      path: file.path,
      cause,
    };
    const invalid =
      cause instanceof UnsafeFileError ||
      (cause instanceof ItemDecodeError && cause.kind === 'corrupt') ||
      !(cause instanceof ItemDecodeError || isSystemError(cause));
    if (!invalid) {
      this.storage.pin(file.path);
      this.report(
        cause instanceof ItemDecodeError
          ? new PersistenceError(
              PersistenceErrorCode.DecryptionFailed,
              decryptionFailed(file.path, cause.message),
              context,
            )
          : new PersistenceError(
              PersistenceErrorCode.IoFailed,
              ioFailed('read', file.path, reasonOf(cause)),
              context,
            ),
      );
      return;
    }
    let movedTo: string | undefined;
    try {
      movedTo = await this.storage.quarantine(collection, file);
    } catch {
      this.storage.pin(file.path); // left where it is: no save may remove it
    }
    this.report(
      new PersistenceError(
        PersistenceErrorCode.CorruptFile,
        corruptFile(file.path, reasonOf(cause), movedTo),
        context,
      ),
    );
  }
}

/** An error from the file system (it has an errno code such as EACCES or EIO). */
function isSystemError(error: unknown): boolean {
  return typeof (error as NodeJS.ErrnoException | undefined)?.code === 'string';
}
