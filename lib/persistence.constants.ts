/** Name of the auto-save interval in `SchedulerRegistry`. */
export const PERSISTENCE_AUTO_SAVE_INTERVAL = 'nestjs-persistence:auto-save';

/** Name of the auto-save timeout (`autoSave.debounce`: a save soon after a change) in `SchedulerRegistry`. */
export const PERSISTENCE_AUTO_SAVE_DEBOUNCE = 'nestjs-persistence:auto-save-debounce';

/** Folder under the store path where unreadable files are moved, never deleted (on-disk.names.ts). */
export { QUARANTINE_DIR } from './storage/on-disk.names';

/** Version written into every item file's envelope. */
export const ITEM_FILE_VERSION = 1;

/** Version written into a backup's manifest. */
export const BACKUP_MANIFEST_VERSION = 1;

/** File name of a backup's manifest. */
export const BACKUP_MANIFEST_FILE = 'persistence-backup.json';

/** Logger context. */
export const PERSISTENCE_LOGGER_CONTEXT = 'Persistence';

/**
 * The `SchedulerRegistry` auto-save uses: the application's when it imports `ScheduleModule.forRoot()`,
 * else one private to this module (internal token).
 */
export const PERSISTENCE_SCHEDULER_REGISTRY = Symbol('PERSISTENCE_SCHEDULER_REGISTRY');

/** Metadata key set by `@PersistedState()`. */
export const PERSISTED_STATE_METADATA = 'nestjs-persistence:persisted-state';

/**
 * DI token of every adapter the store persists (built-in and yours), filled when the module
 * initialises. Inject it with `@InjectPersistenceAdapters()`.
 */
export const PERSISTENCE_ADAPTERS = Symbol('PERSISTENCE_ADAPTERS');

/** Name of the scheduled backup's `CronJob` in `SchedulerRegistry` (option `backups.cron`). */
export const PERSISTENCE_BACKUP_CRON = 'nestjs-persistence:backup';

/** How many backups in `backups.directory` retention keeps by default (option `backups.keep`). */
export const DEFAULT_BACKUPS_KEPT = 7;

/** Name of the lease a scheduled backup takes on a storage driver (one replica per run). */
export const BACKUP_LEASE = 'backup';
/** Time-to-live of the backup lease, renewed every third of it while the backup runs. */
export const BACKUP_LEASE_TTL_MS = 30_000;
