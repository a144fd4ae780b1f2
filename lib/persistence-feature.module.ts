import { Module } from '@nestjs/common';
import { PersistenceAdapterClass } from './interfaces/persistence-adapter.interface';

/** The module `PersistenceModule.forFeature()` returns: it provides and exports the adapters. */
@Module({})
export class PersistenceFeatureModule {}

/**
 * A provider of each `forFeature()` module, naming the adapter classes it registered: the store
 * finds it through `DiscoveryService` and takes the adapter instances from the same module.
 */
export class PersistenceFeature {
  constructor(readonly adapters: readonly PersistenceAdapterClass[]) {}
}
