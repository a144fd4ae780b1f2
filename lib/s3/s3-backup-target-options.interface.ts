import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';

/** Settings of an {@link S3BackupTarget}. */
export interface S3BackupTargetOptions {
  /** The bucket holding the backups (it must exist). */
  bucket: string;
  /**
   * Key prefix under which this target keeps everything (`backups/`, `objects/`, `uploads/` go
   * below it). A trailing `/` is added when missing. @default '' (the bucket's root)
   */
  prefix?: string;
  /**
   * The application's own client (its region, endpoint, credentials, retry strategy, request
   * handler). When given, `region`, `endpoint`, `credentials`, `forcePathStyle`, `maxAttempts` and
   * `requestTimeoutMs` are ignored. @default a client built from the settings below
   */
  client?: S3Client;
  /** Region of the client built here. @default the SDK's chain (`AWS_REGION`, profile …) */
  region?: string;
  /** Endpoint of an S3-compatible store (MinIO, Ceph, R2, GCS's S3 interface). @default AWS S3 */
  endpoint?: string;
  /**
   * Credentials of the client built here. @default the SDK's usual chain (environment, shared files,
   * instance or container role …)
   */
  credentials?: S3ClientConfig['credentials'];
  /** Path-style URLs (`endpoint/bucket/key`), as most S3-compatible stores need. @default false */
  forcePathStyle?: boolean;
  /**
   * Attempts of each request by the client built here, retrying throttling answers (503 SlowDown),
   * server errors and dropped connections with exponential backoff and jitter. @default 5
   */
  maxAttempts?: number;
  /** Time a request of the client built here may take before it fails (and is retried). @default 120000 */
  requestTimeoutMs?: number;
  /**
   * A file larger than this goes up as a multipart upload in parts of this size (S3 allows 5 MiB to
   * 5 GiB). @default 8388608 (8 MiB)
   */
  partSize?: number;
  /** Files uploaded or downloaded at once. @default 4 */
  concurrency?: number;
  /**
   * How an unchanged file's existing object is trusted before it is shared rather than uploaded:
   * `'md5'` also compares the ETag of a single-part object with the file's MD5, so an object
   * overwritten or altered on the server is uploaded again (which repairs it); `'size'` trusts the
   * size alone (for server-side encryption with KMS or customer keys, whose ETags are not MD5s).
   * `restore()` checks every object's SHA-256 either way. @default 'md5'
   */
  verifyReuse?: 'md5' | 'size';
  /**
   * An upload marker (`uploads/<id>.json`) older than this (its LastModified, against this machine's
   * clock) is taken for one of a process that died: it no longer holds back the removal of
   * unreferenced objects. Longer than any backup takes.
   * @default 86400000 (24 hours)
   */
  staleUploadMs?: number;
  /** Largest manifest read, in bytes. @default 67108864 (64 MiB) */
  maxManifestBytes?: number;
  /** Keys asked for per listing request (ListObjectsV2 `MaxKeys`). @default 1000 */
  listPageSize?: number;
}
