import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { ItemFileCodec } from '../serializers/item-file.codec';
import { FileSystemStorage } from '../storage/file-system.storage';
import { mapLimit } from '../storage/map-limit.util';
import { AdapterCaller } from './adapter.caller';
import { CommittedIndex, NOT_LOADED_YET } from './committed.index';
import { reviveStored } from './schema.migrator';

/**
 * Before a restore on files: the item files a store started with `loadOnBoot: false` has not read
 * yet are read, decoded and revived (nothing reaches the adapters), and each one this code cannot
 * read (another key, a newer schema version, a missing package, bad bytes) is pinned, like the
 * load pins what it cannot read, so the restore keeps it instead of deleting it with the old folder.
 */
export async function pinUnreadableUnread(
  storage: FileSystemStorage,
  index: CommittedIndex,
  adapters: readonly PersistenceAdapter[],
  codec: ItemFileCodec,
  caller: AdapterCaller,
  concurrency: number,
): Promise<void> {
  for (const adapter of adapters) {
    const entries = index.get(adapter.name);
    if (!entries) continue;
    const files = (await storage.list(adapter.name, codec.serializer.extension)).filter(
      (file) => entries.get(file.stem)?.unloaded === NOT_LOADED_YET,
    );
    await mapLimit(files, concurrency, async (file) => {
      try {
        const { envelope } = await codec.decode(adapter.name, file, await storage.read(file.path));
        reviveStored(caller, adapter, envelope);
      } catch {
        storage.pin(file.path);
      }
    });
  }
}
