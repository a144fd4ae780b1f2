import { Command, CommanderError } from 'commander';
import { isPersistenceError } from '../errors/persistence.error';
import { registerBackup } from './backup.command';
import { registerBackups } from './backups.command';
import { CliError, ExitCode } from './cli.error';
import { KEY_ENV } from './cli.keys';
import { err } from './cli.output';
import { registerExport } from './export.command';
import { registerImport } from './import.command';
import { registerInspect } from './inspect.command';
import { registerMigrate } from './migrate.command';
import { registerQuarantine } from './quarantine.command';
import { registerRestore } from './restore.command';
import { registerVerify } from './verify.command';

/** Commander's codes for help and version output, which are not errors. */
const NOT_ERRORS = new Set(['commander.helpDisplayed', 'commander.version']);

/**
 * The package's version, from its package.json: two folders up from this file in the sources
 * (`lib/cli/`) and in the installed package (`dist/cli/`) alike.
 */
function packageVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../../package.json') as { version: string }).version;
}

/** The command line: every command registered, errors thrown instead of exiting. */
export function createProgram(done: (code: ExitCode) => void): Command {
  const program = new Command('nestjs-persistence')
    .description(
      'Inspect, verify, export, import, back up and restore a nestjs-persistence store folder, or ' +
        "a storage driver's store (--storage redis://… or postgres://…). Reading commands and backup " +
        'work while an application holds the folder (read-only); the other writing commands need it ' +
        'to themselves.',
    )
    .addHelpText(
      'after',
      `\nExit codes: 0 ok, 1 problems found or operation failed, 2 usage.\nEncrypted stores: --key KEY (or ID:KEY), or the ${KEY_ENV} environment variable.`,
    )
    .version(packageVersion(), '-V, --version', 'print the version of nestjs-persistence')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)');
  registerInspect(program, done);
  registerVerify(program, done);
  registerExport(program, done);
  registerImport(program, done);
  registerMigrate(program, done);
  registerBackup(program, done);
  registerBackups(program, done);
  registerRestore(program, done);
  registerQuarantine(program, done);
  return program;
}

/** Runs the CLI on `argv` (as `process.argv`) and resolves with the exit code; never throws. */
export async function run(argv: readonly string[]): Promise<ExitCode> {
  let code = ExitCode.Ok;
  try {
    await createProgram((result) => (code = result)).parseAsync([...argv]);
    return code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed the problem (or the help) already.
      return NOT_ERRORS.has(error.code) ? ExitCode.Ok : ExitCode.Usage;
    }
    if (error instanceof CliError) {
      err(`error: ${error.message}`);
      return error.exitCode;
    }
    if (isPersistenceError(error)) {
      err(`error: ${error.message} (${error.code})`);
      return ExitCode.Failed;
    }
    err(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return ExitCode.Failed;
  }
}
