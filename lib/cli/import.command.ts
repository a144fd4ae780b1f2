import { Command } from 'commander';
import { resolve } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { isPersistenceError } from '../errors/persistence.error';
import { BuiltInFormat } from '../interfaces/serializer.interface';
import { BUILT_IN_FORMATS } from '../serializers/serializer.factory';
import { ENCRYPTED_SUFFIX } from '../storage/on-disk.names';
import { readRegularFile } from '../storage/safe-read';
import { CliError, ExitCode } from './cli.error';
import { collectKey, encryptionFrom } from './cli.keys';
import {
  badFormat,
  collectionsNotEmpty,
  encryptedNeedsKey,
  importFileMissing,
  storeHeld,
} from './cli.messages';
import { err, out, plural } from './cli.output';
import { parseExportDocument } from './export.document';
import {
  requirePath,
  StorageCliOptions,
  storageDriver,
  storeArguments,
  withStorageOptions,
} from './cli.storage';
import { NodeFileSystem } from '../storage/node-file-system';
import { StoreFolder } from './store.folder';

interface ImportOptions extends StorageCliOptions {
  replace?: boolean;
  format: string;
  key?: string[];
}

/** Checks `--format`. */
export function parseFormat(format: string): BuiltInFormat {
  if (!(BUILT_IN_FORMATS as readonly string[]).includes(format)) {
    throw new CliError(badFormat(format), ExitCode.Usage);
  }
  return format as BuiltInFormat;
}

export function registerImport(program: Command, done: (code: ExitCode) => void): void {
  const command = program
    .command('import')
    .summary('Write an export document into a store (through its save path)')
    .description(
      "Write an export document into a store through the store's own save path (one journaled, atomic commit, then a checkpoint). Refuses a store held by a running application, and collections that already hold items unless --replace.",
    )
    .argument('[path]', 'the store folder (created when missing; left out with --storage)')
    .argument('[file]', 'a document written by "export"')
    .option(
      '--replace',
      'replace the items of the collections named in the document (their other items are deleted); other collections are kept',
    )
    .option(
      '--format <format>',
      'format of the files written: json, json-compact, json-gzip, msgpack, auto',
      'json',
    )
    .option(
      '--key <key>',
      'encrypt with this key: KEY or ID:KEY (repeatable; the first is used)',
      collectKey,
    );
  withStorageOptions(command, false).action(
    async (first: string | undefined, second: string | undefined, options: ImportOptions) => {
      const [path, file] = storeArguments('import', options, [first, second]);
      if (file === undefined) throw new CliError(importFileMissing(), ExitCode.Usage);
      const format = parseFormat(options.format);
      const encryption = encryptionFrom(options.key);
      const storage = await storageDriver(options);
      const folder = storage ? undefined : new StoreFolder(requirePath(path));
      const fs = new NodeFileSystem();
      const source = resolve(file);
      const text = (
        await readRegularFile(fs, source, Number.MAX_SAFE_INTEGER).catch((error: unknown) => {
          throw new CliError(
            `Cannot read ${source}: ${error instanceof Error ? error.message : String(error)}.`,
          );
        })
      ).toString('utf8');
      const doc = parseExportDocument(text, source);
      const names = Object.keys(doc.collections).sort();
      const lock = await folder?.lock();
      if (folder && lock?.running) throw new CliError(storeHeld('import', folder.root, lock));
      if (folder && (await folder.exists())) {
        const nonEmpty: string[] = [];
        let encrypted = false;
        for (const name of (await folder.collections()).names) {
          const files = await folder.itemFiles(name);
          if (files.length > 0 && names.includes(name)) nonEmpty.push(name);
          encrypted ||= files.some((f) => f.extension.endsWith(ENCRYPTED_SUFFIX));
        }
        if (nonEmpty.length > 0 && !options.replace) {
          throw new CliError(collectionsNotEmpty(folder.root, nonEmpty));
        }
        if (encrypted && !encryption) throw new CliError(encryptedNeedsKey(folder.root));
      }
      const { StoreApp } = await import('./store.app');
      const app = await StoreApp.open({
        command: 'import',
        folder,
        storage,
        collections: names,
        readOnly: false,
        encryption,
        format,
      });
      let items = 0;
      try {
        // Load first: a save replaces or removes only what the store loaded (never a file it did
        // not read), so --replace is an explicit replacement of every loaded item.
        await app.store.loadAll();
        if (storage && !options.replace) {
          // A driver's store is checked here, through the load: the same refusal as for a folder.
          const nonEmpty = names.filter((name) => (app.adapters.get(name)?.state.size ?? 0) > 0);
          if (nonEmpty.length > 0) {
            throw new CliError(collectionsNotEmpty(storage.location, nonEmpty));
          }
        }
        for (const name of names) {
          const entries = Object.entries(doc.collections[name]);
          items += entries.length;
          const versions = Object.entries(doc.schemaVersions?.[name] ?? {});
          app.adapters.get(name)?.set(new Map(entries), new Map(versions));
        }
        await app.store.saveAll();
      } catch (error) {
        if (isPersistenceError(error, PersistenceErrorCode.SaveIncomplete)) {
          for (const problem of app.problems) err(`problem: ${problem.message}`);
        }
        throw error;
      } finally {
        await app.close();
      }
      out(
        `Imported ${plural(items, 'item')} into ${plural(names.length, 'collection')} of ${storage?.location ?? folder!.root}.`,
      );
      done(ExitCode.Ok);
    },
  );
}
