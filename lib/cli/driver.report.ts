import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { EncryptionOptions } from '../interfaces/persistence-module-options.interface';
import type { StorageDriver } from '../interfaces/storage-driver.interface';
import { out, plural, table } from './cli.output';

/** What `inspect --storage … --json` (and `verify --storage …`) learn of a driver's store. */
export interface DriverReport {
  /** The driver's location (no password). */
  storage: string;
  collections: Array<{ name: string; items: number }>;
  /** What the load could not use, as the application's load reports it. */
  problems: Array<{ problem: string; code: PersistenceErrorCode }>;
}

/**
 * Loads a driver's store read-only through the store itself (the driver's loadAll(): one
 * consistent state), counting the items and collecting what could not be read.
 */
export async function driverReport(
  storage: StorageDriver,
  collections: readonly string[],
  encryption: EncryptionOptions | undefined,
): Promise<DriverReport> {
  const { StoreApp } = await import('./store.app');
  const context = await StoreApp.open({
    command: 'inspect',
    storage,
    collections,
    readOnly: true,
    encryption,
  });
  try {
    await context.load();
    return {
      storage: storage.location,
      collections: collections.map((name) => ({
        name,
        items: context.adapters.get(name)?.state.size ?? 0,
      })),
      problems: context.problems.map((error) => ({ problem: error.message, code: error.code })),
    };
  } finally {
    await context.close();
  }
}

/** The report for people. */
export function printDriverReport(report: DriverReport): void {
  out(
    [
      `Storage     ${report.storage}`,
      'Collections',
      table([['NAME', 'ITEMS'], ...report.collections.map((c) => [c.name, String(c.items)])]),
      report.problems.length === 0
        ? 'Problems    none'
        : `Problems    ${plural(report.problems.length, 'problem')}:\n${report.problems
            .map((p) => `  ${p.problem} (${p.code})`)
            .join('\n')}`,
    ].join('\n'),
  );
}

/**
 * `inspect`/`verify` on a driver's store: the report of `collections`, printed (or as JSON); the
 * report, for the command's exit code.
 */
export async function runDriverReport(
  storage: StorageDriver,
  collections: readonly string[],
  encryption: EncryptionOptions | undefined,
  json: boolean | undefined,
): Promise<DriverReport> {
  const report = await driverReport(storage, collections, encryption);
  if (json) out(JSON.stringify(report, null, 2));
  else printDriverReport(report);
  return report;
}
