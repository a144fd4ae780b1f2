import { DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { SchedulerRegistry } from '@nestjs/schedule';
import { FocusAdapter } from './adapters/focus/focus.adapter';
import { FocusManager } from './adapters/focus/focus.manager';
import { MemoryAdapter } from './adapters/memory/memory.adapter';
import { MemoryManager } from './adapters/memory/memory.manager';
import { SessionAdapter } from './adapters/session/session.adapter';
import { SessionManager } from './adapters/session/session.manager';
import { PersistenceErrorCode } from './errors/persistence-error-code.enum';
import { PersistenceError } from './errors/persistence.error';
import { PersistenceAdapterClass } from './interfaces/persistence-adapter.interface';
import { PersistenceFeature, PersistenceFeatureModule } from './persistence-feature.module';
import { PERSISTENCE_ADAPTERS, PERSISTENCE_SCHEDULER_REGISTRY } from './persistence.constants';
import { invalidOption } from './persistence.messages';
import { ConfigurablePersistenceModule } from './persistence.module-definition';
import { PersistenceFileSystem } from './storage/file-system.interface';
import { NodeFileSystem } from './storage/node-file-system';
import {
  PersistenceFeatureOptions,
  PersistenceModuleAsyncOptions,
  PersistenceModuleForRootOptions,
} from './persistence.types';
import { PersistenceAdapterExplorer } from './store/adapter.explorer';
import { PersistenceStore } from './store/persistence.store';

/**
 * Persists the built-in managers' state and your own adapters' to the local file system.
 *
 * Needs neither `ScheduleModule.forRoot()` nor `EventEmitterModule.forRoot()`: auto-save uses the
 * application's `SchedulerRegistry` when there is one (else its own), and events go to the
 * application's `EventEmitter2` when there is one (`store.events$` and the callbacks always work).
 *
 * @example
 * ```ts
 * @Module({
 *   imports: [
 *     EventEmitterModule.forRoot(),
 *     ScheduleModule.forRoot(),
 *     PersistenceModule.forRoot({ path: './data', format: 'json', autoSave: { interval: 300_000 } }),
 *   ],
 * })
 * export class AppModule {}
 * ```
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    SessionManager,
    MemoryManager,
    FocusManager,
    SessionAdapter,
    MemoryAdapter,
    FocusAdapter,
    PersistenceStore,
    { provide: PersistenceFileSystem, useClass: NodeFileSystem },
    {
      // The application's registry when it imports ScheduleModule.forRoot() (never a second one:
      // importing ScheduleModule.forRoot() here would, and would run every @Cron twice); else a
      // private one, which only holds the auto-save interval (the store clears it at shutdown).
      provide: PERSISTENCE_SCHEDULER_REGISTRY,
      useFactory: (appRegistry?: SchedulerRegistry) => appRegistry ?? new SchedulerRegistry(),
      inject: [{ token: SchedulerRegistry, optional: true }],
    },
    PersistenceAdapterExplorer,
    {
      provide: PERSISTENCE_ADAPTERS,
      useFactory: (store: PersistenceStore) => store.adapters,
      inject: [PersistenceStore],
    },
  ],
  exports: [
    PersistenceStore,
    SessionManager,
    MemoryManager,
    FocusManager,
    SessionAdapter,
    MemoryAdapter,
    FocusAdapter,
    PERSISTENCE_ADAPTERS,
  ],
})
export class PersistenceModule extends ConfigurablePersistenceModule {
  /** Every option has a default, so `forRoot()` alone persists to `./data`. */
  static override forRoot(options: PersistenceModuleForRootOptions = {}): DynamicModule {
    return super.forRoot(options);
  }

  /**
   * Like `forRoot()`, with the options made by a factory that may inject providers (such as
   * `ConfigService`), by a class implementing `PersistenceOptionsFactory` (`useClass`), or by an
   * existing provider of one (`useExisting`).
   *
   * @example
   * ```ts
   * PersistenceModule.forRootAsync({
   *   imports: [ConfigModule],
   *   inject: [ConfigService],
   *   useFactory: (config: ConfigService) => ({ path: config.getOrThrow<string>('STATE_DIR') }),
   * });
   * ```
   */
  static override forRootAsync(options: PersistenceModuleAsyncOptions): DynamicModule {
    return super.forRootAsync(options);
  }

  /**
   * Registers adapters in the feature module that owns their state, as `TypeOrmModule.forFeature()`
   * registers repositories: they become providers of the returned module (exported to the importing
   * module) and the root store collects them at init. Their constructor dependencies must be
   * visible there: global providers, or the modules given in `options.imports`. An adapter that needs
   * providers private to your feature module goes in that module's `providers` instead, decorated with
   * `@PersistedState()`.
   *
   * @example
   * ```ts
   * @Module({
   *   imports: [PersistenceModule.forFeature([CartAdapter], { imports: [CartStateModule] })],
   * })
   * export class CartModule {}
   * ```
   */
  static forFeature(
    adapters: PersistenceAdapterClass[],
    options: PersistenceFeatureOptions = {},
  ): DynamicModule {
    if (!Array.isArray(adapters) || adapters.some((adapter) => typeof adapter !== 'function')) {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidOptions,
        invalidOption(
          'forFeature(adapters)',
          adapters,
          'Pass an array of adapter classes, e.g. forFeature([CartAdapter]).',
        ),
      );
    }
    return {
      module: PersistenceFeatureModule.named(adapters),
      imports: options.imports ?? [],
      providers: [
        ...adapters,
        { provide: PersistenceFeature, useValue: new PersistenceFeature(adapters) },
      ],
      exports: adapters,
    };
  }
}
