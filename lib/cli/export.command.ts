import { Command } from 'commander';
import { resolve } from 'node:path';
import { atomicWrite } from '../storage/atomic-write';
import { FILE_MODE } from '../storage/on-disk.names';
import { isReallySameOrInside } from '../storage/path.util';
import { CliError, ExitCode } from './cli.error';
import { collectKey, encryptionFrom } from './cli.keys';
import { exportInsideStore, readOnlyNote } from './cli.messages';
import { err, out, plural } from './cli.output';
import { createExportDocument } from './export.document';
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

interface ExportOptions extends StorageCliOptions {
  out?: string;
  key?: string[];
}

export function registerExport(program: Command, done: (code: ExitCode) => void): void {
  const command = program
    .command('export')
    .summary('Write the whole state as one JSON document')
    .description(
      "Write the whole state (item files and committed journal records) as one JSON document, read through the store's own read path. Reads only; works while an application runs. Exits 1 when some files could not be read (they are listed; the rest is exported).",
    )
    .argument('[path]', 'the store folder (left out with --storage)')
    .option('-o, --out <file>', 'write to this file (atomically, mode 0600) instead of stdout')
    .option('--key <key>', 'key to read encrypted files: KEY or ID:KEY (repeatable)', collectKey);
  withStorageOptions(command, true).action(
    async (given: string | undefined, options: ExportOptions) => {
      const [path] = storeArguments('export', options, [given]);
      const target = options.out === undefined ? undefined : resolve(options.out);
      const storage = await storageDriver(options);
      let folder: StoreFolder | undefined;
      let names: string[];
      if (storage) {
        names = driverCollections(options);
      } else {
        folder = new StoreFolder(requirePath(path));
        await folder.assertExists();
        // Compared as real paths: through a link to the store (or from inside it), an export would
        // land inside the store, decrypted, and the next start would quarantine it.
        if (target && (await isReallySameOrInside(folder.fs, target, folder.root))) {
          throw new CliError(exportInsideStore(target, folder.root), ExitCode.Usage);
        }
        const lock = await folder.lock();
        if (lock?.running) err(readOnlyNote(lock));
        names = (await folder.collections()).names;
      }
      const { StoreApp } = await import('./store.app');
      const context = await StoreApp.open({
        command: 'export',
        folder,
        storage,
        collections: names,
        readOnly: true,
        encryption: encryptionFrom(options.key),
      });
      let items = 0;
      let text: string;
      try {
        await context.load();
        const state = new Map([...context.adapters].map(([name, a]) => [name, a.state]));
        for (const collection of state.values()) items += collection.size;
        const versions = new Map(
          [...context.adapters].map(([name, a]) => [name, a.schemaVersions]),
        );
        text =
          JSON.stringify(
            createExportDocument(storage?.location ?? folder!.root, state, versions),
            null,
            2,
          ) + '\n';
      } finally {
        await context.close();
      }
      if (target) {
        await atomicWrite(new NodeFileSystem(), target, Buffer.from(text, 'utf8'), {
          mode: FILE_MODE,
        });
      } else {
        process.stdout.write(text);
      }
      for (const problem of context.problems) err(`problem: ${problem.message}`);
      const summary = `Exported ${plural(items, 'item')} from ${plural(names.length, 'collection')}${target ? ` to ${target}` : ''}.`;
      if (context.problems.length > 0) {
        err(`${summary} ${plural(context.problems.length, 'file')} could not be read (above).`);
        done(ExitCode.Failed);
      } else {
        if (target) out(summary);
        done(ExitCode.Ok);
      }
    },
  );
}
