import { Command, InvalidArgumentError } from 'commander';
import { resolve } from 'node:path';
import { CliError, ExitCode } from './cli.error';
import { backupWhere, storeHeld } from './cli.messages';
import { formatBytes, out, plural } from './cli.output';
import { isS3Url, s3Target, S3CliOptions, withS3Options } from './cli.s3';
import { StoreFolder } from './store.folder';

export function registerBackup(program: Command, done: (code: ExitCode) => void): void {
  withS3Options(program.command('backup'))
    .summary('Write a complete, checked backup of the store')
    .description(
      "Write a complete, checked copy of the store (with its manifest) to a new or empty folder, through the store's backup(). Needs the store to itself: refused while an application holds it (call PersistenceStore.backup() there instead).",
    )
    .argument('<path>', 'the store folder')
    .argument('[destination]', 'a new or empty folder outside the store')
    .option(
      '--into <directory>',
      'instead of a destination: a backups folder, as the backups.directory option, or an S3 target s3://bucket/prefix (a differential backup sharing unchanged files with the newest one there; see "backups list")',
    )
    .option(
      '--keep <count>',
      'with --into: backups of this store kept there (oldest removed)',
      parseKeep,
    )
    .action(async (path: string, destination: string | undefined, options: BackupOptions) => {
      if ((destination === undefined) === (options.into === undefined)) {
        throw new CliError(backupWhere(), ExitCode.Usage);
      }
      const folder = new StoreFolder(path);
      await folder.assertExists();
      const lock = await folder.lock();
      if (lock?.running) throw new CliError(storeHeld('back up', folder.root, lock));
      const { StoreApp } = await import('./store.app');
      const { names } = await folder.collections();
      const app = await StoreApp.open({
        command: 'back up',
        folder,
        collections: names,
        readOnly: false,
        backups: options.into
          ? {
              ...(isS3Url(options.into)
                ? { target: await s3Target(options.into, options) }
                : { directory: resolve(options.into) }),
              keep: options.keep ?? Number.MAX_SAFE_INTEGER,
            }
          : undefined,
      });
      try {
        const meta = await app.store.backup(destination);
        out(
          `Backed up ${plural(meta.files, 'file')} (${formatBytes(meta.size)}) of ${plural(names.length, 'collection')} to ${meta.path}` +
            (meta.id !== undefined && meta.newBytes !== undefined && meta.newBytes < meta.size
              ? ` (${formatBytes(meta.newBytes)} new, the rest shared with the previous backup).`
              : '.'),
        );
      } finally {
        await app.close();
      }
      done(ExitCode.Ok);
    });
}

interface BackupOptions extends S3CliOptions {
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
