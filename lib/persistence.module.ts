import { DynamicModule, Module } from '@nestjs/common';
import { FocusAdapter } from './adapters/focus/focus.adapter';
import { FocusManager } from './adapters/focus/focus.manager';
import { MemoryAdapter } from './adapters/memory/memory.adapter';
import { MemoryManager } from './adapters/memory/memory.manager';
import { SessionAdapter } from './adapters/session/session.adapter';
import { SessionManager } from './adapters/session/session.manager';
import { PersistenceAdapter } from './interfaces/persistence-adapter.interface';
import {
  ConfigurablePersistenceModule,
  PERSISTENCE_OPTIONS_TYPE,
} from './persistence.module-definition';
import { PersistenceFileSystem } from './storage/file-system.interface';
import { NodeFileSystem } from './storage/node-file-system';
import { PersistenceStore } from './store/persistence.store';

/**
 * Persists the built-in managers' state and your own adapters' to the local file system.
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
      provide: PersistenceAdapter,
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
    PersistenceAdapter,
  ],
})
export class PersistenceModule extends ConfigurablePersistenceModule {
  /** Every option has a default, so `forRoot()` alone persists to `./data`. */
  static override forRoot(options: typeof PERSISTENCE_OPTIONS_TYPE = {}): DynamicModule {
    return super.forRoot(options);
  }
}
