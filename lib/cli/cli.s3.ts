import { Command } from 'commander';
import type { BackupTarget } from '../interfaces/backup-target.interface';
import { parseS3Url } from '../s3/s3-url.util';
import { isBackupId } from '../storage/backup-id.util';
import { CliError } from './cli.error';
import { s3BackupUrl, s3SdkMissing } from './cli.messages';

/** The connection flags of the commands that take an `s3://bucket/prefix` location. */
export interface S3CliOptions {
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
}

export const isS3Url = (location: string): boolean => location.startsWith('s3://');

/** Adds `--endpoint`, `--region` and `--force-path-style` to `command`. */
export function withS3Options(command: Command): Command {
  return command
    .option('--endpoint <url>', 'with an s3:// location: the endpoint of an S3-compatible store')
    .option('--region <region>', 'with an s3:// location: the region (default: the AWS chain)')
    .option('--force-path-style', 'with an s3:// location: path-style URLs (MinIO, Ceph …)');
}

/**
 * The S3 backup target of `s3://bucket/prefix`, with the SDK's usual credentials chain
 * (`AWS_ACCESS_KEY_ID`…, profiles, roles). Loaded only here, so that the CLI runs without the SDK.
 */
export async function s3Target(url: string, options: S3CliOptions): Promise<BackupTarget> {
  const location = parseS3Url(url);
  if (!location) throw new CliError(s3BackupUrl(url));
  let s3: typeof import('../s3');
  try {
    s3 = await import('../s3');
  } catch (error) {
    if (String((error as Error)?.message).includes('@aws-sdk/client-s3')) {
      throw new CliError(s3SdkMissing());
    }
    throw error;
  }
  const region =
    options.region ??
    (options.endpoint && !process.env.AWS_REGION && !process.env.AWS_DEFAULT_REGION
      ? 'us-east-1' // S3-compatible stores mostly ignore it, the SDK needs one
      : undefined);
  return new s3.S3BackupTarget({
    bucket: location.bucket,
    prefix: location.prefix,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(region ? { region } : {}),
    forcePathStyle: options.forcePathStyle ?? false,
  });
}

/** `s3://bucket/prefix/<id>` as the target of `s3://bucket/prefix` and the id. */
export async function s3Backup(
  url: string,
  options: S3CliOptions,
): Promise<{ target: BackupTarget; id: string }> {
  const at = url.lastIndexOf('/');
  const id = url.slice(at + 1);
  if (!isBackupId(id) || at < 's3://'.length) throw new CliError(s3BackupUrl(url));
  return { target: await s3Target(url.slice(0, at), options), id };
}
