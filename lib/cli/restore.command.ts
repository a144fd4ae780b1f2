import { Command } from 'commander';
import { resolve } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { isPersistenceError } from '../errors/persistence.error';
import { ADAPTER_NAME } from '../store/adapter.resolver';
import { listDirectory } from '../storage/fs.util';
import { CliError, ExitCode } from './cli.error';
import { collectKey, encryptionFrom } from './cli.keys';
import { restoreNeedsKey, restoreSourceMissing, storeHeld } from './cli.messages';
import { out, plural } from './cli.output';
import { isS3Url, s3Backup, S3CliOptions, withS3Options } from './cli.s3';
import {
  driverCollections,
  requirePath,
  StorageCliOptions,
  storageDriver,
  storeArguments,
  withStorageOptions,
} from './cli.storage';
import { NodeFileSystem } from '../storage/node-file-system';
import { StoreFolder } from './store.folder';

export function registerRestore(program: Command, done: (code: ExitCode) => void): void {
  const command = withS3Options(program.command('restore'))
    .summary("Replace the store's state with a backup")
    .description(
      "Replace the store's state with a backup (or a plain copy of a store folder with an empty journal), through the store's restore(): every file is checked first, and the swap happens whole or not at all. Refused while an application holds the store.",
    )
    .argument('[path]', 'the store folder (created when missing; left out with --storage)')
    .argument(
      '[backup]',
      'a folder written by "backup" or PersistenceStore.backup(), or s3://bucket/prefix/<id> (an id from "backups list")',
    )
    .option(
      '--key <key>',
      'key to check encrypted backups: KEY or ID:KEY (repeatable)',
      collectKey,
    );
  withStorageOptions(command, true).action(
    async (first: string | undefined, second: string | undefined, options: RestoreOptions) => {
      const [path, backup] = storeArguments('restore', options, [first, second]);
      if (backup === undefined) throw new CliError(restoreSourceMissing(), ExitCode.Usage);
      const encryption = encryptionFrom(options.key);
      const storage = await storageDriver(options);
      const folder = storage ? undefined : new StoreFolder(requirePath(path));
      const lock = await folder?.lock();
      if (folder && lock?.running) throw new CliError(storeHeld('restore', folder.root, lock));
      // Every collection of the store and of the backup: the store becomes what the backup holds.
      // A driver lists none: those of --collections, if given.
      const collections = new Set(
        folder
          ? (await folder.collections()).names
          : options.collections === undefined
            ? []
            : driverCollections(options),
      );
      let source = resolve(backup);
      let target;
      if (isS3Url(backup)) {
        const s3 = await s3Backup(backup, options);
        ({ target, id: source } = s3);
        const manifest = (await target.list()).find((b) => b.id === source)?.manifest;
        for (const name of manifest?.collections ?? []) {
          if (ADAPTER_NAME.test(name)) collections.add(name);
        }
      } else {
        for (const entry of await listDirectory(new NodeFileSystem(), source)) {
          if (entry.type === 'directory' && ADAPTER_NAME.test(entry.name))
            collections.add(entry.name);
        }
      }
      const { StoreApp } = await import('./store.app');
      const app = await StoreApp.open({
        command: 'restore',
        folder,
        storage,
        collections: [...collections].sort(),
        readOnly: false,
        encryption,
        ...(target ? { backups: { target, keep: Number.MAX_SAFE_INTEGER } } : {}),
      });
      try {
        // A driver's store writes only once it knows what the other replicas wrote.
        if (storage) await app.load();
        const meta = await app.store.restore(source);
        out(
          `Restored ${plural(meta.files, 'file')} from ${meta.source} into ${storage?.location ?? folder!.root}; ${plural(meta.load.items, 'item')} read back.`,
        );
      } catch (error) {
        if (
          isPersistenceError(error, PersistenceErrorCode.InvalidBackup) &&
          !encryption &&
          error.message.includes('encrypted')
        ) {
          throw new CliError(`${error.message} ${restoreNeedsKey()}`);
        }
        throw error;
      } finally {
        await app.close();
      }
      done(ExitCode.Ok);
    },
  );
}

type RestoreOptions = { key?: string[] } & S3CliOptions & StorageCliOptions;
