import { Command } from 'commander';
import { CliError, ExitCode } from './cli.error';
import { storeHeld } from './cli.messages';
import { formatBytes, out, plural } from './cli.output';
import { StoreFolder } from './store.folder';

export function registerBackup(program: Command, done: (code: ExitCode) => void): void {
  program
    .command('backup')
    .summary('Write a complete, checked backup of the store')
    .description(
      "Write a complete, checked copy of the store (with its manifest) to a new or empty folder, through the store's backup(). Needs the store to itself: refused while an application holds it (call PersistenceStore.backup() there instead).",
    )
    .argument('<path>', 'the store folder')
    .argument('<destination>', 'a new or empty folder outside the store')
    .action(async (path: string, destination: string) => {
      const folder = new StoreFolder(path);
      await folder.assertExists();
      const lock = await folder.lock();
      if (lock?.running) throw new CliError(storeHeld('back up', folder.root, lock));
      const { StoreContext } = await import('./store.context');
      const { names } = await folder.collections();
      const context = await StoreContext.open({
        command: 'back up',
        folder,
        collections: names,
        readOnly: false,
      });
      try {
        const meta = await context.store.backup(destination);
        out(
          `Backed up ${plural(meta.files, 'file')} (${formatBytes(meta.size)}) of ${plural(names.length, 'collection')} to ${meta.path}.`,
        );
      } finally {
        await context.close();
      }
      done(ExitCode.Ok);
    });
}
