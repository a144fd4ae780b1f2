import { ConfigurableModuleAsyncOptions, ModuleMetadata } from '@nestjs/common';
import { PersistenceModuleOptions } from './interfaces/persistence-module-options.interface';

/** Implement it for `forRootAsync({ useClass })` / `useExisting`. */
export interface PersistenceOptionsFactory {
  createPersistenceOptions(): PersistenceModuleOptions | Promise<PersistenceModuleOptions>;
}

/** Options of `PersistenceModule.forRoot()`: the module options, plus `isGlobal`. */
export interface PersistenceModuleForRootOptions extends PersistenceModuleOptions {
  /**
   * Register the module's providers (the store and the managers) globally, so any module can
   * inject them without importing `PersistenceModule`.
   * @default false
   */
  isGlobal?: boolean;
}

/**
 * Options of `PersistenceModule.forRootAsync()`: `useFactory` (with `inject` and `imports`),
 * `useClass` or `useExisting` (a {@link PersistenceOptionsFactory}), plus `isGlobal`.
 */
export type PersistenceModuleAsyncOptions = ConfigurableModuleAsyncOptions<
  PersistenceModuleOptions,
  'createPersistenceOptions'
> & {
  /**
   * Register the module's providers globally.
   * @default false
   */
  isGlobal?: boolean;
};

/** Options of `PersistenceModule.forFeature()`. */
export interface PersistenceFeatureOptions {
  /**
   * Modules whose exported providers the adapters inject.
   * @default []
   */
  imports?: ModuleMetadata['imports'];
}
