import { ConfigurableModuleAsyncOptions, ModuleMetadata } from '@nestjs/common';
import { PersistenceModuleOptions } from './interfaces/persistence-module-options.interface';

/** Implement it for `forRootAsync({ useClass })` / `useExisting`. */
export interface PersistenceOptionsFactory {
  createPersistenceOptions(): PersistenceModuleOptions | Promise<PersistenceModuleOptions>;
}

/** Options of `PersistenceModule.forRootAsync()`. */
export type PersistenceModuleAsyncOptions = ConfigurableModuleAsyncOptions<
  PersistenceModuleOptions,
  'createPersistenceOptions'
> & { isGlobal?: boolean };

/** Options of `PersistenceModule.forFeature()`. */
export interface PersistenceFeatureOptions {
  /**
   * Modules whose exported providers the adapters inject.
   * @default []
   */
  imports?: ModuleMetadata['imports'];
}
