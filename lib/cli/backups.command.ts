import { Command } from 'commander';
import { resolve } from 'node:path';
import { BackupInfo } from '../interfaces/persistence-metadata.interface';
import { backupInfoOf } from '../store/backup.orchestrator';
import { isBackupId } from '../storage/backup-id.util';
import { errorCode } from '../storage/file-system.interface';
import { LocalBackupTarget } from '../storage/local-backup.target';
import { NodeFileSystem } from '../storage/node-file-system';
import { CliError, ExitCode } from './cli.error';
import { noBackupsFolder } from './cli.messages';
import { formatBytes, out, plural, table } from './cli.output';
import { isS3Url, s3Target, S3CliOptions, withS3Options } from './cli.s3';

/**
 * The backups of a backups folder (or of an `s3://bucket/prefix` target), newest first, as the
 * store's `listBackups()` gives them.
 */
export async function listBackupsIn(
  directory: string,
  s3: S3CliOptions = {},
): Promise<BackupInfo[]> {
  let target;
  if (isS3Url(directory)) {
    target = await s3Target(directory, s3);
  } else {
    target = new LocalBackupTarget(new NodeFileSystem(), { directory: resolve(directory) });
    try {
      await new NodeFileSystem().lstat(target.location);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') throw new CliError(noBackupsFolder(target.location));
      throw error;
    }
  }
  return (await target.list())
    .filter((b) => isBackupId(b.id))
    .sort((a, b) => (a.id < b.id ? 1 : -1))
    .map(backupInfoOf);
}

export function formatBackups(directory: string, backups: readonly BackupInfo[]): string {
  const where = isS3Url(directory) ? directory : resolve(directory);
  if (backups.length === 0) return `No complete backup in ${where}.`;
  const held = backups.reduce((sum, b) => sum + b.newBytes, 0);
  return [
    table([
      ['ID', 'TAKEN', 'FILES', 'SIZE', 'NEW', 'SHARES WITH'],
      ...backups.map((b) => [
        b.id,
        b.time.toISOString(),
        String(b.files),
        formatBytes(b.bytes),
        formatBytes(b.newBytes),
        b.base ?? '-',
      ]),
    ]),
    `${plural(backups.length, 'backup')}, ${formatBytes(held)} stored in all (each restores on its own).`,
  ].join('\n');
}

export function registerBackups(program: Command, done: (code: ExitCode) => void): void {
  const backups = program
    .command('backups')
    .summary('List the backups of a backups folder (backups.directory)');
  withS3Options(backups.command('list'))
    .summary('List the backups of a backups folder, newest first, with sizes')
    .description(
      'List the complete backups of a backups folder (the backups.directory option, or backup --into) or of an S3 target (s3://bucket/prefix, credentials from the AWS chain), newest first: id (for restore), time, files, size, bytes stored anew and the backup it shares unchanged files with. Reads only.',
    )
    .argument('<directory>', 'the backups folder, or s3://bucket/prefix')
    .option('--json', 'print one JSON document (machine output)')
    .action(async (directory: string, options: { json?: boolean } & S3CliOptions) => {
      const list = await listBackupsIn(directory, options);
      out(options.json ? JSON.stringify(list, null, 2) : formatBackups(directory, list));
      done(ExitCode.Ok);
    });
}
