import { Command } from 'commander';
import { dirname, join } from 'node:path';
import { ADAPTER_NAME } from '../store/adapter.resolver';
import { DEFAULT_OPTIONS } from '../store/persistence.options';
import { JsonSerializer } from '../serializers/json.serializer';
import { parseItemFileName } from '../storage/file-system.storage';
import { fsyncDirectory } from '../storage/fs.util';
import { ItemFileCodec } from '../serializers/item-file.codec';
import { CliError, ExitCode } from './cli.error';
import { cipherFrom, collectKey, encryptionFrom } from './cli.keys';
import {
  discardNeedsYes,
  quarantineFileAmbiguous,
  quarantineFileUnknown,
  quarantineItemExists,
  quarantineNameUnknown,
  quarantineUnreadable,
  storeHeld,
} from './cli.messages';
import { formatBytes, out, plural, table } from './cli.output';
import { refuseStorage } from './cli.storage';
import { QuarantinedFile, StoreFolder } from './store.folder';

/** The quarantined file named `<collection>/<name>`, or `<name>` when only one has that name. */
async function findQuarantined(folder: StoreFolder, spec: string): Promise<QuarantinedFile> {
  const all = await folder.quarantined();
  const matches = all.filter((q) => `${q.collection}/${q.name}` === spec || q.name === spec);
  if (matches.length === 0) throw new CliError(quarantineFileUnknown(spec, folder.root));
  if (matches.length > 1) {
    throw new CliError(
      quarantineFileAmbiguous(
        spec,
        matches.map((q) => `${q.collection}/${q.name}`),
      ),
    );
  }
  return matches[0];
}

/** Runs `work` while this process holds the store (locked, recovered), refusing a store in use. */
async function withStore(
  folder: StoreFolder,
  command: string,
  collections: string[],
  work: () => Promise<void>,
): Promise<void> {
  await folder.assertExists();
  const lock = await folder.lock();
  if (lock?.running) throw new CliError(storeHeld(command, folder.root, lock));
  const { StoreApp } = await import('./store.app');
  const app = await StoreApp.open({ command, folder, collections, readOnly: false });
  try {
    await work();
  } finally {
    await app.close();
  }
}

async function list(path: string, json: boolean): Promise<void> {
  const folder = new StoreFolder(path);
  await folder.assertExists();
  const files = await folder.quarantined();
  if (json) {
    out(
      JSON.stringify(
        files.map((q) => ({
          file: `${q.collection}/${q.name}`,
          collection: q.collection,
          size: q.size,
          quarantinedAt: q.quarantinedAt ?? null,
          itemFile: q.originalName ?? null,
        })),
        null,
        2,
      ),
    );
  } else if (files.length === 0) {
    out(`No quarantined files in ${folder.root}.`);
  } else {
    out(`${plural(files.length, 'quarantined file')} in ${folder.root}:`);
    out(
      table([
        ['FILE', 'SIZE', 'QUARANTINED AT', 'ITEM FILE'],
        ...files.map((q) => [
          `${q.collection}/${q.name}`,
          formatBytes(q.size),
          q.quarantinedAt ?? '?',
          q.originalName ?? '?',
        ]),
      ]),
    );
  }
}

async function restore(path: string, spec: string, keys: string[] | undefined): Promise<void> {
  const cipher = cipherFrom(encryptionFrom(keys));
  const folder = new StoreFolder(path);
  await folder.assertExists();
  const file = await findQuarantined(folder, spec);
  const label = `${file.collection}/${file.name}`;
  const parsed = file.originalName ? parseItemFileName(file.originalName) : undefined;
  if (!file.originalName || !parsed || !ADAPTER_NAME.test(file.collection)) {
    throw new CliError(quarantineNameUnknown(label));
  }
  const itemFile = file.originalName;
  const codec = new ItemFileCodec(
    new JsonSerializer(),
    cipher,
    DEFAULT_OPTIONS.limits.maxInflatedBytes,
  );
  /** Refuses a file that does not parse, or whose item has a file; returns the item's id. */
  const check = async (): Promise<string> => {
    let id: string;
    try {
      id = (await codec.decode(file.collection, parsed, await folder.read(file.path))).envelope.id;
    } catch (error) {
      throw new CliError(
        quarantineUnreadable(label, error instanceof Error ? error.message : String(error)),
      );
    }
    const existing = (await folder.itemFiles(file.collection)).find((f) => f.stem === parsed.stem);
    if (existing) {
      throw new CliError(
        quarantineItemExists(label, `${file.collection}/${existing.fileName}`, id),
      );
    }
    return id;
  };
  await check(); // fails fast, before taking the store
  await withStore(folder, 'restore a quarantined file', [file.collection], async () => {
    const id = await check(); // again, now that the store is locked and its journal replayed
    const dir = folder.storage.collectionPath(file.collection);
    await folder.fs.rename(file.path, join(dir, itemFile));
    await fsyncDirectory(folder.fs, dir);
    await fsyncDirectory(folder.fs, dirname(file.path));
    out(`Restored ${label} as ${file.collection}/${itemFile} (item ${JSON.stringify(id)}).`);
  });
}

async function discard(path: string, spec: string, yes: boolean): Promise<void> {
  const folder = new StoreFolder(path);
  await folder.assertExists();
  const file = await findQuarantined(folder, spec);
  const label = `${file.collection}/${file.name}`;
  if (!yes) throw new CliError(discardNeedsYes(label), ExitCode.Usage);
  await withStore(folder, 'discard a quarantined file', [], async () => {
    await folder.fs.unlink(file.path);
    await fsyncDirectory(folder.fs, dirname(file.path));
    out(`Deleted ${label}.`);
  });
}

const DRIVER_QUARANTINE =
  'a storage driver keeps the copies of unreadable items inside the storage (Redis: <prefix>quarantine keys; PostgreSQL: the <table>_quarantine table), never as files; see docs/storage-drivers.md.';

export function registerQuarantine(program: Command, done: (code: ExitCode) => void): void {
  const quarantine = program
    .command('quarantine')
    .summary('List, restore or discard quarantined files')
    .description(
      'List, restore or discard the files the store set aside as unreadable (<path>/.quarantine/<collection>/).',
    );
  refuseStorage(quarantine.command('list'), 'quarantine list', DRIVER_QUARANTINE)
    .description('List the quarantined files. Reads only; works while an application runs.')
    .argument('<path>', 'the store folder')
    .option('--json', 'print one JSON document (machine output)')
    .action(async (path: string, options: { json?: boolean }) => {
      await list(path, options.json ?? false);
      done(ExitCode.Ok);
    });
  refuseStorage(quarantine.command('restore'), 'quarantine restore', DRIVER_QUARANTINE)
    .description(
      'Move a quarantined file back into its collection, only if it now parses and no file of that item exists (never overwrites). Refused while an application holds the store.',
    )
    .argument('<path>', 'the store folder')
    .argument('<file>', 'the quarantined file, as listed: <collection>/<name>')
    .option('--key <key>', 'key to read an encrypted file: KEY or ID:KEY (repeatable)', collectKey)
    .action(async (path: string, file: string, options: { key?: string[] }) => {
      await restore(path, file, options.key);
      done(ExitCode.Ok);
    });
  refuseStorage(quarantine.command('discard'), 'quarantine discard', DRIVER_QUARANTINE)
    .description(
      'Delete a quarantined file for good (needs --yes). Refused while an application holds the store.',
    )
    .argument('<path>', 'the store folder')
    .argument('<file>', 'the quarantined file, as listed: <collection>/<name>')
    .option('--yes', 'confirm the deletion')
    .action(async (path: string, file: string, options: { yes?: boolean }) => {
      await discard(path, file, options.yes ?? false);
      done(ExitCode.Ok);
    });
}
