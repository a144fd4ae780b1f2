/** Options of `PersistenceHealthIndicator.isHealthy()`. */
export interface PersistenceHealthOptions {
  /**
   * Down when the file system holding the store has fewer free bytes than this: a checkpoint needs
   * room for the item files, and a save for its journal record.
   * @default 67108864 (64 MiB)
   */
  minFreeBytes?: number;
  /**
   * Down when the last successful save is older than this many milliseconds (before the first save:
   * when the store opened longer ago than this). Set it above the auto-save interval.
   * @default undefined (the age is reported, not checked)
   */
  maxAge?: number;
}
