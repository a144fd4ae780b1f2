import { DiskSpace } from '../storage/file-system.interface';
import type { UnloadedKind } from './unloaded-item.interface';
import { PersistenceErrorRecord } from './persistence-event.interface';

/** What `PersistenceStore.getStatus()` reports: the facts a health check needs, measured now. */
export interface PersistenceStatus {
  /** Absolute path of the store folder. */
  path: string;
  /** `starting` until `app.init()` has opened the store; `closed` once the application shut down. */
  state: 'starting' | 'ready' | 'closing' | 'closed';
  readOnly: boolean;
  /** The store can save now: ready, not read-only, and the folder is writable at this moment. */
  writable: boolean;
  /** Why it cannot save, when `writable` is false. */
  notWritableReason?: string;
  /** When the store opened (its start-up load finished); `null` before. */
  startedAt: Date | null;
  /** Start of the last successful save (`getLastSaveTime()`); `null` before the first. */
  lastSaveTime: Date | null;
  /** The last error reported; `null` before any. */
  lastError: PersistenceErrorRecord | null;
  /** True when an error was reported after the last successful save (or with no save yet). */
  errorSinceLastSave: boolean;
  /**
   * The message of the last save when it was incomplete (`PERSISTENCE_SAVE_INCOMPLETE`: some items
   * could not be written), until a save writes everything; `null` otherwise.
   */
  lastSaveIncomplete: string | null;
  /**
   * Stored items that could not be loaded and wait for someone to act (see `listUnloaded()`): not
   * decryptable, not readable, corrupt in place, a failed migration, a missing package, a failed
   * `restore()`. Not those left alone on purpose (`loadOnBoot: false`) nor those of a newer schema
   * version. Counted per kind; resolved by `discardUnloaded()` or a `loadAll()` that reads them.
   */
  unresolved: { items: number; kinds: Partial<Record<UnloadedKind, number>> };
  /** Why the last load failed as a whole (nothing was loaded), until a load succeeds; `null` otherwise. */
  loadFailure: string | null;
  /** Committed saves not yet written into the item files by a checkpoint. */
  journal: {
    /** Size of the journal: the active file and the sealed segments not yet checkpointed. */
    bytes: number;
    /** Item writes and removals waiting in them. */
    pendingItems: number;
  };
  /** Where the items are: the folder `path`, or a `storage` driver (no folder, no disk to measure). */
  storage: 'file-system' | 'driver';
  /**
   * Space of the file system holding the store; `null` when it could not be measured, and always
   * with a `storage` driver.
   */
  disk: DiskSpace | null;
}
