import { ConfigurableModuleBuilder } from '@nestjs/common';
import { PersistenceModuleOptions } from './interfaces/persistence-module-options.interface';

/*
 * The builder gives `forRoot()`/`forRootAsync()` and the options token. Its OPTIONS_TYPE and
 * ASYNC_OPTIONS_TYPE are type-only proxies (reading them throws), so they are not used or exported:
 * the named types are in persistence.types.ts.
 */
const definition = new ConfigurableModuleBuilder<PersistenceModuleOptions>()
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createPersistenceOptions')
  .setExtras({ isGlobal: false }, (module, extras) => ({
    ...module,
    global: extras.isGlobal,
  }))
  .build();

/** The class `PersistenceModule` extends (not exported from the package). */
export const ConfigurablePersistenceModule = definition.ConfigurableModuleClass;

/**
 * DI token of the options given to `forRoot()` or made by `forRootAsync()` (before defaults are
 * merged in): `@Inject(PERSISTENCE_MODULE_OPTIONS) options: PersistenceModuleOptions`.
 */
export const PERSISTENCE_MODULE_OPTIONS = definition.MODULE_OPTIONS_TOKEN;
