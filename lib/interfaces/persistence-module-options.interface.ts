import { PersistenceAdapterRef } from './persistence-adapter.interface';
import { BuiltInFormat, Serializer } from './serializer.interface';

/** Auto-save settings. */
export interface AutoSaveOptions {
  /**
   * Milliseconds between two saves. A tick that comes while a save still runs is skipped.
   * @default 300000 (five minutes)
   */
  interval: number;
  /**
   * After consecutive failed saves, skip 0, 1, 3, 7, … ticks (up to this many) before trying again, so
   * a full disk is not hammered. A successful save resets it.
   * @default 8
   */
  maxBackoffTicks?: number;
}

/** Options of `PersistenceModule.forRoot()` and of the factory in `forRootAsync()`. */
export interface PersistenceModuleOptions {
  /**
   * Folder holding the store; relative paths resolve against `process.cwd()` at start-up.
   * @default './data'
   */
  path?: string;
  /**
   * How items are written: `'json'` (indented), `'json-compact'`, `'json-gzip'`, or your own
   * {@link Serializer}. Files of any built-in format are always read, so switching format is safe.
   * @default 'json'
   */
  format?: BuiltInFormat | Serializer;
  /**
   * Periodic saving through `@nestjs/schedule` (import `ScheduleModule.forRoot()`), or `false`.
   * @default { interval: 300000 }
   */
  autoSave?: AutoSaveOptions | false;
  /**
   * Load the saved state into the adapters while the module initialises, before any
   * `onApplicationBootstrap()` hook of the application runs.
   * @default true
   */
  loadOnBoot?: boolean;
  /**
   * Save once more when the application shuts down (`app.close()`, or SIGTERM/SIGINT with
   * `app.enableShutdownHooks()`), after any save in flight has finished.
   * @default true
   */
  saveOnShutdown?: boolean;
  /**
   * Persist the built-in `SessionManager`, `MemoryManager` and `FocusManager`.
   * @default true
   */
  builtInAdapters?: boolean;
  /**
   * Your own adapters, persisted beside the built-in ones. A class is looked up among the
   * application's providers (register it in the module that owns its dependencies), or else
   * instantiated in this module; an object is used as it is.
   * @default []
   */
  adapters?: PersistenceAdapterRef[];
  /**
   * How many files are read or written at once.
   * @default 16
   */
  ioConcurrency?: number;
}

/** Options after defaults were merged in: what the store works with. */
export interface ResolvedPersistenceOptions {
  path: string;
  format: BuiltInFormat | Serializer;
  autoSave: Required<AutoSaveOptions> | false;
  loadOnBoot: boolean;
  saveOnShutdown: boolean;
  builtInAdapters: boolean;
  adapters: PersistenceAdapterRef[];
  ioConcurrency: number;
}
