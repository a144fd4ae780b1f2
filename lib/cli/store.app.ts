import { LoggerService, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { isPersistenceError, PersistenceError } from '../errors/persistence.error';
import type { BackupTarget } from '../interfaces/backup-target.interface';
import { EncryptionOptions } from '../interfaces/persistence-module-options.interface';
import type { StorageDriver } from '../interfaces/storage-driver.interface';
import { BuiltInFormat } from '../interfaces/serializer.interface';
import { PERSISTENCE_LOGGER_CONTEXT } from '../persistence.constants';
import { PersistenceModule } from '../persistence.module';
import { PersistenceStore } from '../store/persistence.store';
import { CliError } from './cli.error';
import { storeHeld } from './cli.messages';
import { err } from './cli.output';
import { GenericAdapter } from './generic.adapter';
import { StoreFolder } from './store.folder';

/** The store's own log lines (recovery, stale lock) and every warning or error go to stderr. */
export class StderrLogger implements LoggerService {
  log(message: unknown, context?: unknown): void {
    if (context === PERSISTENCE_LOGGER_CONTEXT) err(String(message));
  }
  warn(message: unknown): void {
    err(`warning: ${String(message)}`);
  }
  error(): void {
    // Failures reach the CLI as rejections and are printed once, there.
  }
}

export interface StoreAppOptions {
  /** The command, for messages ("import", "restore", …). */
  command: string;
  /** The store folder; or `storage`: */
  folder?: StoreFolder;
  /** A storage driver's store (`--storage`), opened through the store as the application opens it. */
  storage?: StorageDriver;
  /** One generic adapter per collection. */
  collections: readonly string[];
  /** Open without writing: no lock, no recovery. Otherwise the store is locked for this process. */
  readOnly: boolean;
  encryption?: EncryptionOptions;
  /** Format of the files this process writes. @default 'json' */
  format?: BuiltInFormat;
  /** Backups into a folder of their own or a target (differential, with retention), as the `backups` option. */
  backups?: { directory?: string; target?: BackupTarget; keep?: number };
}

/**
 * The store opened by the library itself in a Nest application context, so the CLI reads and writes
 * through the real paths (journal, checkpoint, atomic writes, lock, recovery). Nothing is loaded at
 * start: call `load()`, so that every problem of the load is collected in `problems`.
 */
export class StoreApp {
  /** Errors the store reported (unreadable files, …) since it was opened. */
  readonly problems: PersistenceError[] = [];

  private constructor(
    private readonly close$: () => Promise<void>,
    readonly store: PersistenceStore,
    readonly adapters: ReadonlyMap<string, GenericAdapter>,
  ) {
    store.onError((event) => this.problems.push(event.error));
  }

  static async open(options: StoreAppOptions): Promise<StoreApp> {
    const adapters = new Map(options.collections.map((name) => [name, new GenericAdapter(name)]));

    @Module({
      imports: [
        EventEmitterModule.forRoot(),
        PersistenceModule.forRoot({
          ...(options.storage ? { storage: options.storage } : { path: options.folder?.root }),
          readOnly: options.readOnly,
          format: options.format ?? 'json',
          encryption: options.encryption,
          backups: options.backups,
          autoSave: false,
          saveOnShutdown: false,
          loadOnBoot: false,
          builtInAdapters: false,
          adapters: [...adapters.values()],
        }),
      ],
    })
    class CliStoreModule {}

    let app;
    try {
      app = await NestFactory.createApplicationContext(CliStoreModule, {
        logger: new StderrLogger(),
        abortOnError: false,
      });
    } catch (error) {
      const { folder } = options;
      if (folder && isPersistenceError(error, PersistenceErrorCode.StoreLocked)) {
        const lock = await folder.lock();
        throw new CliError(lock ? storeHeld(options.command, folder.root, lock) : error.message);
      }
      throw error;
    }
    const context = app;
    return new StoreApp(() => context.close(), context.get(PersistenceStore), adapters);
  }

  /** Loads every collection through the store's read path; problems go to `problems`. */
  async load(): Promise<void> {
    await this.store.loadAll();
  }

  /** Saves, checkpoints (when writable) and releases the store. */
  close(): Promise<void> {
    return this.close$();
  }
}
