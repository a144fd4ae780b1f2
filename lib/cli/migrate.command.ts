import { INestApplicationContext } from '@nestjs/common';
import { Command } from 'commander';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { PersistenceError } from '../errors/persistence.error';
import { setCommandLineOverride } from '../store/command-line.override';
import { PersistenceStore } from '../store/persistence.store';
import { CliError, ExitCode } from './cli.error';
import { cipherFrom, collectKey, encryptionFrom } from './cli.keys';
import {
  moduleExportMissing,
  moduleNotLoaded,
  noPersistenceStore,
  storeHeld,
} from './cli.messages';
import { err, formatCounts, out, plural, table } from './cli.output';
import { CollectionReport, inspectStore } from './inspect.command';
import { refuseStorage } from './cli.storage';
import { StoreFolder } from './store.folder';

interface MigrateOptions {
  module: string;
  export: string;
  key?: string[];
}

/**
 * `migrate`: boots the application's own module (whose adapters declare `version` and
 * `migrations`), loads every item through them, saves what the migrations changed and checkpoints,
 * so every file of the store is in its adapter's current schema version.
 */
export function registerMigrate(program: Command, done: (code: ExitCode) => void): void {
  refuseStorage(
    program.command('migrate'),
    'migrate',
    'it boots your module, whose PersistenceModule options name the storage; on a storage driver every replica migrates the items it loads, and the next saves write them (docs/migrations.md).',
  )
    .summary("Rewrite every item in its adapter's current schema version")
    .description(
      "Boot the application's module (a compiled CommonJS file, e.g. dist/app.module.js) with its store on <path>, load every item through the adapters' migrations, save the migrated items and checkpoint, so every file is in the current schema version. The application's own auto-save, scheduled backups and save at shutdown are off meanwhile. Needs the store to itself.",
    )
    .argument('<path>', "the store folder (the module's PersistenceModule path)")
    .requiredOption('--module <file>', 'the compiled module that imports PersistenceModule')
    .option('--export <name>', 'the name the module class is exported under', 'AppModule')
    .option(
      '--key <key>',
      'key to report schema versions of encrypted files: KEY or ID:KEY (repeatable)',
      collectKey,
    )
    .action(async (path: string, options: MigrateOptions) => {
      const folder = new StoreFolder(path);
      await folder.assertExists();
      const lock = await folder.lock();
      if (lock?.running) throw new CliError(storeHeld('migrate', folder.root, lock));
      const cipher = cipherFrom(encryptionFrom(options.key));
      const before = await inspectStore(folder, cipher);
      const moduleClass = loadModuleClass(options.module, options.export);

      const { NestFactory } = await import('@nestjs/core');
      const { StderrLogger } = await import('./store.app');
      const problems: PersistenceError[] = [];
      setCommandLineOverride({ command: 'migrate', path: folder.root });
      let app;
      try {
        app = await NestFactory.createApplicationContext(moduleClass, {
          logger: new StderrLogger(),
          abortOnError: false,
        });
      } finally {
        setCommandLineOverride(undefined);
      }
      try {
        const store = findStore(app, options.export);
        store.onError((event) => problems.push(event.error));
        const loaded = await store.loadAll();
        const saved = await store.saveAll();
        await store.checkpoint();
        out(
          `Loaded ${plural(loaded.items, 'item')} through the adapters' migrations; saved ${plural(saved.changed, 'changed item')}, checkpointed.`,
        );
      } finally {
        await app.close();
      }
      const after = await inspectStore(folder, cipher);
      out(formatMigration(before.collections, after.collections));
      for (const problem of problems) err(`problem: ${problem.message} (${problem.code})`);
      done(problems.length > 0 ? ExitCode.Failed : ExitCode.Ok);
    });
}

function loadModuleClass(file: string, name: string): new (...args: never[]) => unknown {
  const path = resolve(process.cwd(), file);
  let exports: Record<string, unknown>;
  try {
    exports = createRequire(path)(path) as Record<string, unknown>;
  } catch (error) {
    throw new CliError(
      moduleNotLoaded(path, error instanceof Error ? error.message : String(error)),
    );
  }
  const found = exports?.[name];
  if (typeof found !== 'function') {
    const classes = Object.keys(exports ?? {}).filter((key) => typeof exports[key] === 'function');
    throw new CliError(moduleExportMissing(path, name, classes));
  }
  return found as new (...args: never[]) => unknown;
}

function findStore(app: INestApplicationContext, name: string): PersistenceStore {
  try {
    return app.get(PersistenceStore, { strict: false });
  } catch {
    throw new CliError(noPersistenceStore(name));
  }
}

/** Schema versions per collection, before and after. */
function formatMigration(before: CollectionReport[], after: CollectionReport[]): string {
  const rows = after.map((c) => {
    const old = before.find((b) => b.name === c.name);
    return [
      c.name,
      String(c.items),
      old ? formatCounts(old.schemaVersions, 'v') : '-',
      formatCounts(c.schemaVersions, 'v'),
    ];
  });
  return table([['COLLECTION', 'ITEMS', 'SCHEMA BEFORE', 'SCHEMA AFTER'], ...rows]);
}
