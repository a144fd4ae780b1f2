import { Module, OnModuleInit, Type } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { PersistenceErrorCode } from './errors/persistence-error-code.enum';
import { PersistenceError } from './errors/persistence.error';
import { PersistenceAdapterClass } from './interfaces/persistence-adapter.interface';
import { PERSISTENCE_MODULE_OPTIONS } from './persistence.module-definition';
import { featureWithoutRoot } from './persistence.messages';

/**
 * The module `PersistenceModule.forFeature()` returns: it provides and exports the adapters, and
 * refuses to start without a root store (its adapters would never be saved).
 */
@Module({})
export class PersistenceFeatureModule implements OnModuleInit {
  constructor(private readonly moduleRef: ModuleRef) {}

  onModuleInit(): void {
    try {
      this.moduleRef.get(PERSISTENCE_MODULE_OPTIONS, { strict: false });
    } catch {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidOptions,
        featureWithoutRoot(this.constructor.name),
        { operation: 'init' },
      );
    }
  }

  /**
   * A module class of its own per `forFeature()` call, named after the call: Nest's dependency
   * errors name the module an adapter is resolved in, and "PersistenceFeatureModule" would tell the
   * user nothing about where to give the adapter's dependencies.
   */
  static named(adapters: readonly PersistenceAdapterClass[]): Type<PersistenceFeatureModule> {
    const feature = class extends PersistenceFeatureModule {};
    Object.defineProperty(feature, 'name', {
      value: `PersistenceModule.forFeature([${adapters.map((a) => a.name).join(', ')}])`,
    });
    return feature;
  }
}

/**
 * A provider of each `forFeature()` module, naming the adapter classes it registered: the store
 * finds it through `DiscoveryService` and takes the adapter instances from the same module.
 */
export class PersistenceFeature {
  constructor(readonly adapters: readonly PersistenceAdapterClass[]) {}
}
