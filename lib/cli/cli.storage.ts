import { Command } from 'commander';
import type { StorageDriver } from '../interfaces/storage-driver.interface';
import { ADAPTER_NAME } from '../store/adapter.resolver';
import { CliError, ExitCode } from './cli.error';
import {
  driverCollectionsMissing,
  driverCollectionsInvalid,
  driverKeyPrefixMissing,
  driverPackageMissing,
  driverStoreArguments,
  driverUrlUnknown,
  driverOptionWithoutStorage,
  notOnDriver,
  storePathMissing,
} from './cli.messages';

/** The flags of the commands that work on a storage driver's store instead of a folder. */
export interface StorageCliOptions {
  storage?: string;
  keyPrefix?: string;
  table?: string;
  collections?: string;
}

type Scheme = 'redis' | 'postgres';

function schemeOf(url: string): Scheme | undefined {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'redis' || scheme === 'rediss') return 'redis';
  if (scheme === 'postgres' || scheme === 'postgresql') return 'postgres';
  return undefined;
}

/**
 * Adds `--storage`, `--key-prefix`, `--table` and (`collections`: for the commands that read a
 * driver's items, whose contract lists no collections) `--collections` to `command`.
 */
export function withStorageOptions(command: Command, collections: boolean): Command {
  command
    .option(
      '--storage <url>',
      'a storage driver instead of a folder: redis://… or rediss://… (with --key-prefix), postgres://… or postgresql://… (with --table); the <path> argument is then left out',
    )
    .option('--key-prefix <prefix>', "with a redis:// --storage: the driver's keyPrefix (required)")
    .option(
      '--table <name>',
      "with a postgres:// --storage: the driver's table (default: the driver's default)",
    );
  if (collections) {
    command.option(
      '--collections <names>',
      "with --storage: the store's collections (the application's adapter names), comma-separated",
    );
  }
  return command;
}

/** The `--collections` of a driver store: required, each an adapter name. */
export function driverCollections(options: StorageCliOptions): string[] {
  if (options.collections === undefined) {
    throw new CliError(driverCollectionsMissing(), ExitCode.Usage);
  }
  const names = [
    ...new Set(
      options.collections
        .split(',')
        .map((name) => name.trim())
        .filter((name) => name !== ''),
    ),
  ];
  const bad = names.filter((name) => !ADAPTER_NAME.test(name));
  if (names.length === 0 || bad.length > 0) {
    throw new CliError(driverCollectionsInvalid(bad), ExitCode.Usage);
  }
  return names.sort();
}

/**
 * The positional arguments of a command whose first one is the store folder: without `--storage`
 * as given; with it, the folder left out: the arguments move one place on (`[undefined, ...args]`).
 */
export function storeArguments(
  command: string,
  options: StorageCliOptions,
  given: ReadonlyArray<string | undefined>,
): Array<string | undefined> {
  const args = given.filter((arg): arg is string => arg !== undefined);
  if (options.storage === undefined) {
    for (const flag of ['keyPrefix', 'table', 'collections'] as const) {
      if (options[flag] !== undefined) {
        throw new CliError(driverOptionWithoutStorage(flag), ExitCode.Usage);
      }
    }
    return [...given];
  }
  if (args.length >= given.length) {
    throw new CliError(driverStoreArguments(command), ExitCode.Usage);
  }
  return [undefined, ...args, ...new Array<undefined>(given.length - 1 - args.length)];
}

/** The store folder argument, required without `--storage`. */
export function requirePath(path: string | undefined): string {
  if (path === undefined) throw new CliError(storePathMissing(), ExitCode.Usage);
  return path;
}

/**
 * The storage driver `--storage` names, its package loaded only here (ioredis for redis://, pg
 * for postgres://), so that the CLI runs without either. `undefined` without `--storage`.
 */
export async function storageDriver(
  options: StorageCliOptions,
): Promise<StorageDriver | undefined> {
  const url = options.storage;
  if (url === undefined) return undefined;
  const scheme = schemeOf(url);
  if (scheme === 'redis') {
    if (options.table !== undefined) throw new CliError(driverOptionWithoutStorage('table'));
    if (!options.keyPrefix) throw new CliError(driverKeyPrefixMissing(), ExitCode.Usage);
    await requirePackage('ioredis', scheme);
    const { RedisStorageDriver } = await import('../storage/redis');
    return new RedisStorageDriver({ url, keyPrefix: options.keyPrefix });
  }
  if (scheme === 'postgres') {
    if (options.keyPrefix !== undefined) {
      throw new CliError(driverOptionWithoutStorage('keyPrefix'));
    }
    await requirePackage('pg', scheme);
    const { PostgresStorageDriver } = await import('../storage/postgres');
    return new PostgresStorageDriver({
      connectionString: url,
      ...(options.table === undefined ? {} : { table: options.table }),
    });
  }
  throw new CliError(driverUrlUnknown(url), ExitCode.Usage);
}

/** Resolves the optional package a driver loads when it opens, for a clear message up front. */
async function requirePackage(name: string, scheme: Scheme): Promise<void> {
  try {
    await import(name);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') {
      throw new CliError(driverPackageMissing(name, scheme));
    }
    throw error;
  }
}

/**
 * A `--storage` that `command` refuses, with why: the command works on what only a store folder has.
 */
export function refuseStorage(command: Command, name: string, why: string): Command {
  return command.option('--storage <url>', `not supported: ${why}`, (): never => {
    throw new CliError(notOnDriver(name, why), ExitCode.Usage);
  });
}
