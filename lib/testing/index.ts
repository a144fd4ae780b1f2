/*
 * The `nestjs-persistence/testing` entry point: what an application's tests use in place of real
 * storage. The in-memory driver runs the whole store (formats, encryption, events, replicas) with
 * no folder and no server.
 */
export { InMemoryStorage, InMemoryStorageDriver } from '../storage/memory/in-memory.storage-driver';
export type { InMemoryStorageDriverOptions } from '../storage/memory/in-memory.storage-driver';
export { PersistenceTestingModule } from './persistence-testing.module';
export type { PersistenceTestingModuleOptions } from './persistence-testing.module';
export { storageDriverChecks } from './storage-driver.conformance';
export type { DriverPlace, StorageDriverCheck } from './storage-driver.conformance';
