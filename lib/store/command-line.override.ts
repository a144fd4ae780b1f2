import { resolve } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { migrateWrongStore } from '../persistence.messages';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { realPathOf } from '../storage/path.util';
import { ResolvedPersistenceOptions } from '../interfaces/persistence-module-options.interface';

/**
 * What `nestjs-persistence migrate` asks of the stores of the application module it boots. It is
 * set on `globalThis` under a registered symbol before the module is loaded, so it reaches the
 * store even when the application resolves its own copy of the library.
 */
export interface CommandLineOverride {
  /** The command, for messages. */
  command: string;
  /** The store folder the user named: any other store of the module is refused at init. */
  path: string;
}

export const COMMAND_LINE_OVERRIDE = Symbol.for('nestjs-persistence.command-line-override');

type WithOverride = { [COMMAND_LINE_OVERRIDE]?: CommandLineOverride };

/** Sets (or, with `undefined`, clears) the override for the stores created from now on. */
export function setCommandLineOverride(override: CommandLineOverride | undefined): void {
  const scope = globalThis as WithOverride;
  if (override) scope[COMMAND_LINE_OVERRIDE] = override;
  else delete scope[COMMAND_LINE_OVERRIDE];
}

/**
 * The options a store runs with under the command line: its own, for the named folder only, not
 * loaded at start (the command calls `loadAll()` to see every problem), with no auto-save, no
 * scheduled backups and no save at shutdown (the command saves and checkpoints itself). Throws,
 * before anything is written, for a store of another folder.
 */
export async function applyCommandLineOverride(
  options: ResolvedPersistenceOptions,
  fs: PersistenceFileSystem,
): Promise<ResolvedPersistenceOptions> {
  const override = (globalThis as WithOverride)[COMMAND_LINE_OVERRIDE];
  if (!override) return options;
  // The same folder as given, or once links are followed (the CLI given a link to the store).
  const real = (path: string): Promise<string> =>
    realPathOf(fs, resolve(path)).catch(() => resolve(path));
  if (
    resolve(options.path) !== resolve(override.path) &&
    (await real(options.path)) !== (await real(override.path))
  ) {
    throw new PersistenceError(
      PersistenceErrorCode.InvalidOptions,
      migrateWrongStore(override.command, resolve(override.path), resolve(options.path)),
      { operation: 'init' },
    );
  }
  return {
    ...options,
    readOnly: false,
    loadOnBoot: false,
    autoSave: false,
    saveOnShutdown: false,
    backups: options.backups ? { ...options.backups, cron: undefined } : options.backups,
  };
}
