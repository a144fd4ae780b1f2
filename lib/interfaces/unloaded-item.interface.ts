import type { PersistenceErrorCode } from '../errors/persistence-error-code.enum';

/**
 * Why an item's stored copy was not loaded, by kind: `'not-loaded'` (`loadOnBoot: false`, left alone
 * on purpose), `'wrong-key'` (not decryptable with the configured keys), `'unreadable'` (the file
 * system refused it), `'corrupt'` (not a valid item, left in place), `'newer-schema'` (written by a
 * newer schema version), `'migration-failed'`, `'missing-package'` (an optional package to read it
 * is not installed), `'restore-failed'` (the adapter's `restore()` threw).
 */
export type UnloadedKind =
  | 'not-loaded'
  | 'wrong-key'
  | 'unreadable'
  | 'corrupt'
  | 'newer-schema'
  | 'migration-failed'
  | 'missing-package'
  | 'restore-failed';

/** An item whose stored copy this store did not load (`listUnloaded()`). */
export interface UnloadedItem {
  adapter: string;
  id: string;
  path: string;
  reason: string;
  /** The kind of problem (`'wrong-key'`, `'corrupt'`, …; see {@link UnloadedKind}). */
  kind: UnloadedKind;
  /**
   * The error code its load reported (`PERSISTENCE_MIGRATION_FAILED`,
   * `PERSISTENCE_ITEM_FROM_NEWER_VERSION`, `PERSISTENCE_DECRYPTION_FAILED`, …); absent when it was
   * simply not loaded yet (`loadOnBoot: false`).
   */
  code?: PersistenceErrorCode;
}
