import { DynamicModule, Module } from '@nestjs/common';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceModule } from '../persistence.module';
import { invalidOption } from '../persistence.messages';
import type { PersistenceModuleForRootOptions } from '../persistence.types';
import { InMemoryStorage, InMemoryStorageDriver } from '../storage/memory/in-memory.storage-driver';

/** Options of {@link PersistenceTestingModule.forRoot}: the module's, with in-memory storage. */
export interface PersistenceTestingModuleOptions extends Omit<
  PersistenceModuleForRootOptions,
  'storage' | 'path'
> {
  /**
   * Where the items are kept. Pass the same `InMemoryStorage` to the application you build again
   * to test a restart, or to several applications to test replicas.
   * @default a new InMemoryStorage per call
   */
  storage?: InMemoryStorage;
}

/**
 * `PersistenceModule` for an application's tests: the same store, managers, adapters, formats,
 * encryption and events, on the in-memory driver of this entry point instead of a folder, with
 * auto-save off (call `store.saveAll()` where the test needs a save). Nothing is written to disk,
 * and no timer or handle outlives `app.close()`.
 *
 * @example
 * ```ts
 * const moduleRef = await Test.createTestingModule({
 *   imports: [PersistenceTestingModule.forRoot()],
 *   providers: [ChatService],
 * }).compile();
 * ```
 */
@Module({})
export class PersistenceTestingModule {
  static forRoot(options: PersistenceTestingModuleOptions = {}): DynamicModule {
    const { storage, ...rest } = options;
    if (storage !== undefined && !(storage instanceof InMemoryStorage)) {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidOptions,
        invalidOption(
          'PersistenceTestingModule.forRoot({ storage })',
          storage,
          'Pass a new InMemoryStorage() from nestjs-persistence/testing, or leave it out; for a real driver use PersistenceModule.forRoot({ storage }).',
        ),
      );
    }
    return PersistenceModule.forRoot({
      autoSave: false,
      ...rest,
      storage: new InMemoryStorageDriver({ storage }),
    });
  }
}
