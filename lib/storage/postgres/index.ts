/*
 * The `nestjs-persistence/postgres` entry point: the only code whose types reach `pg`, kept out of
 * the main entry so that an application without PostgreSQL type-checks without it.
 */
export { PostgresStorageDriver } from './postgres.storage-driver';
export type { PostgresStorageDriverOptions } from './postgres.options';
