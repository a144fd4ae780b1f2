import { ConfigurableModuleBuilder } from '@nestjs/common';
import { PersistenceModuleOptions } from './interfaces/persistence-module-options.interface';

export const {
  ConfigurableModuleClass: ConfigurablePersistenceModule,
  MODULE_OPTIONS_TOKEN: PERSISTENCE_MODULE_OPTIONS,
  OPTIONS_TYPE: PERSISTENCE_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: PERSISTENCE_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<PersistenceModuleOptions>()
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createPersistenceOptions')
  .setExtras({ isGlobal: false }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
  }))
  .build();
