import { Command, InvalidArgumentError } from 'commander';
import { resolve } from 'node:path';
import { CliError, ExitCode } from './cli.error';
import { backupWhere, liveBackupNote } from './cli.messages';
import { err, formatBytes, out, plural } from './cli.output';
import { isS3Url, s3Target, S3CliOptions, withS3Options } from './cli.s3';
import type { StoreApp, StoreAppOptions } from './store.app';
import {
  driverCollections,
  requirePath,
  StorageCliOptions,
  storageDriver,
  storeArguments,
  withStorageOptions,
} from './cli.storage';
import { StoreFolder } from './store.folder';

export function registerBackup(program: Command, done: (code: ExitCode) => void): void {
  const command = withS3Options(program.command('backup'))
    .summary('Write a complete, checked backup of the store (also while an application runs)')
    .description(
      "Write a complete, checked copy of the store (with its manifest) to a new or empty folder, through the store's backup(). While an application holds the store, the copy is a consistent snapshot of its committed state (the state after one whole save), read without the lock and without writing into the store (docs/cli.md). With --storage, the driver's store, read in one consistent state.",
    )
    .argument('[path]', 'the store folder (left out with --storage)')
    .argument('[destination]', 'a new or empty folder outside the store')
    .option(
      '--into <directory>',
      'instead of a destination: a backups folder, as the backups.directory option, or an S3 target s3://bucket/prefix (a differential backup sharing unchanged files with the newest one there; see "backups list")',
    )
    .option(
      '--keep <count>',
      'with --into: backups of this store kept there (oldest removed)',
      parseKeep,
    );
  withStorageOptions(command, true).action(
    async (first: string | undefined, second: string | undefined, options: BackupOptions) => {
      const [path, destination] = storeArguments('backup', options, [first, second]);
      if ((destination === undefined) === (options.into === undefined)) {
        throw new CliError(backupWhere(), ExitCode.Usage);
      }
      const backups = options.into
        ? {
            ...(isS3Url(options.into)
              ? { target: await s3Target(options.into, options) }
              : { directory: resolve(options.into) }),
            keep: options.keep ?? Number.MAX_SAFE_INTEGER,
          }
        : undefined;
      const { StoreApp } = await import('./store.app');
      let context: StoreApp;
      let names: string[];
      const storage = await storageDriver(options);
      if (storage) {
        names = driverCollections(options);
        context = await StoreApp.open({
          command: 'back up',
          storage,
          collections: names,
          readOnly: true,
          backups,
        });
      } else {
        const folder = new StoreFolder(requirePath(path));
        await folder.assertExists();
        names = (await folder.collections()).names;
        context = await openFolder(StoreApp, folder, names, backups);
      }
      try {
        const meta = await context.store.backup(destination);
        out(
          `Backed up ${plural(meta.files, 'file')} (${formatBytes(meta.size)}) of ${plural(names.length, 'collection')} to ${meta.path}` +
            (meta.id !== undefined && meta.newBytes !== undefined && meta.newBytes < meta.size
              ? ` (${formatBytes(meta.newBytes)} new, the rest shared with the previous backup).`
              : '.'),
        );
      } finally {
        await context.close();
      }
      done(ExitCode.Ok);
    },
  );
}

/**
 * The store folder, for a backup: locked and checkpointed when no application holds it; read-only
 * (a consistent snapshot, see `readLiveSnapshot`) while one does, or when one takes it meanwhile.
 */
async function openFolder(
  Context: typeof StoreApp,
  folder: StoreFolder,
  collections: string[],
  backups: StoreAppOptions['backups'],
): Promise<StoreApp> {
  const open = (readOnly: boolean): Promise<StoreApp> =>
    Context.open({ command: 'back up', folder, collections, readOnly, backups });
  const lock = await folder.lock();
  if (!lock?.running) {
    try {
      return await open(false);
    } catch (error) {
      const now = await folder.lock();
      if (!(error instanceof CliError) || !now?.running) throw error;
    }
  }
  const holder = await folder.lock();
  if (holder) err(liveBackupNote(holder));
  return open(true);
}

interface BackupOptions extends S3CliOptions, StorageCliOptions {
  into?: string;
  keep?: number;
}

function parseKeep(value: string): number {
  const keep = Number(value);
  if (!Number.isInteger(keep) || keep < 1) {
    throw new InvalidArgumentError('use a whole number, 1 or more.');
  }
  return keep;
}
