import { S3Client } from '@aws-sdk/client-s3';
import { Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import {
  BackupContents,
  BackupEntry,
  BackupManifest,
  BackupTarget,
  StoredBackup,
} from '../interfaces/backup-target.interface';
import { PERSISTENCE_LOGGER_CONTEXT } from '../persistence.constants';
import * as messages from '../persistence.messages';
import { isBackupId } from '../storage/backup-id.util';
import { BackupProblem, parseManifest } from '../storage/backup.storage';
import { forEachLimit, mapLimit } from '../storage/map-limit.util';
import { S3BackupTargetOptions } from './s3-backup-target-options.interface';
import { S3BackupLayout } from './s3-backup.layout';
import { ListedObject, S3ObjectTooLargeError, S3Objects } from './s3.objects';

const MiB = 1024 * 1024;

/**
 * A {@link BackupTarget} on an S3 bucket (or any S3-compatible store), from
 * `nestjs-persistence/s3`:
 *
 * ```
 * <prefix>objects/<sha256>     one file's bytes as in the store (encrypted items stay encrypted),
 *                              named by their SHA-256 and shared by every backup holding them
 * <prefix>backups/<id>.json    a backup's manifest, written last: the backup exists once it does
 * <prefix>uploads/<id>.json    only while a backup is uploaded (who, since when)
 * ```
 *
 * A backup uploads the objects its base does not already hold, then its manifest: `list()` shows a
 * backup only once its manifest is there, so an upload cut off is never listed. `remove()` deletes
 * the manifest (one request: the backup is gone), then the objects no manifest refers to any more,
 * unless an upload is in progress (a marker younger than `staleUploadMs`), which may be writing or
 * reusing them: each backup restores on its own, and no writer removes another's objects.
 */
export class S3BackupTarget implements BackupTarget {
  readonly targetVersion = 1;
  readonly location: string;
  private readonly logger = new Logger(PERSISTENCE_LOGGER_CONTEXT);
  private readonly objects: S3Objects;
  private readonly layout: S3BackupLayout;
  private readonly partSize: number;
  private readonly concurrency: number;

  constructor(private readonly options: S3BackupTargetOptions) {
    const { bucket } = options;
    if (typeof bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      invalid('bucket', bucket, 'Give the name of an existing bucket (3 to 63 of a-z 0-9 . -).');
    }
    const prefix = options.prefix ?? '';
    if (typeof prefix !== 'string' || prefix.startsWith('/') || prefix.includes('//')) {
      invalid('prefix', prefix, 'Give a key prefix such as "app/backups/" (no leading "/").');
    }
    this.partSize = options.partSize ?? 8 * MiB;
    if (
      !Number.isInteger(this.partSize) ||
      this.partSize < 5 * MiB ||
      this.partSize > 5 * 1024 * MiB
    ) {
      invalid('partSize', options.partSize, 'S3 takes parts of 5 MiB (5242880) to 5 GiB.');
    }
    this.concurrency = options.concurrency ?? 4;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      invalid('concurrency', options.concurrency, 'Use a whole number, 1 or more.');
    }
    for (const name of [
      'maxAttempts',
      'requestTimeoutMs',
      'staleUploadMs',
      'listPageSize',
    ] as const) {
      const value = options[name];
      if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
        invalid(name, value, 'Use a whole number, 1 or more.');
      }
    }
    if (options.verifyReuse !== undefined && !['md5', 'size'].includes(options.verifyReuse)) {
      invalid('verifyReuse', options.verifyReuse, "Use 'md5' or 'size'.");
    }
    this.layout = new S3BackupLayout(prefix);
    this.location = `s3://${bucket}/${this.layout.prefix}`.replace(/\/$/, '');
    this.objects = new S3Objects(
      options.client ?? buildClient(options),
      bucket,
      options.listPageSize ?? 1000,
    );
  }

  /** The client in use (the application's, or the one built from the settings). */
  get client(): S3Client {
    return this.objects.client;
  }

  private get maxManifestBytes(): number {
    return this.options.maxManifestBytes ?? 64 * MiB;
  }

  /** Manifests under `backups/` named as a backup id whose content names that same id. */
  async list(): Promise<StoredBackup[]> {
    const ids = (await this.objects.list(this.layout.backupsPrefix))
      .map((o) => this.layout.manifestId(o.key))
      .filter((id): id is string => id !== undefined && isBackupId(id));
    const found = await mapLimit(ids, this.concurrency, async (id) => {
      const manifest = await this.readManifest(id).catch((error: unknown) => {
        if (error instanceof BackupProblem) return undefined; // damaged: not a complete backup
        throw error;
      });
      return manifest?.id === id ? { id, manifest } : undefined;
    });
    return found.filter((b): b is StoredBackup => b !== undefined);
  }

  async write(
    id: string,
    header: Omit<BackupManifest, 'files' | 'newBytes'>,
    entries: AsyncIterable<BackupEntry>,
    base?: StoredBackup,
  ): Promise<BackupManifest> {
    this.assertId(id);
    const marker = this.layout.uploadKey(id);
    await this.objects.put(
      marker,
      Buffer.from(JSON.stringify({ id, store: header.store, startedAt: new Date().toISOString() })),
      this.partSize,
    );
    try {
      const reusable = await this.reusableObjects(base);
      const uploads = new Map<string, Promise<boolean>>();
      /** Objects shared rather than uploaded: SHA-256 → the file, for the check below. */
      const shared = new Map<string, BackupEntry>();
      const files: BackupManifest['files'] = [];
      let newBytes = 0;
      await forEachLimit(entries, this.concurrency, async (entry, index) => {
        if (!/^[0-9a-f]{64}$/.test(entry.sha256)) {
          throw new BackupProblem(`"${entry.path}" comes without a SHA-256 checksum`);
        }
        files[index] = { path: entry.path, size: entry.data.length, sha256: entry.sha256 };
        // The same bytes twice in one backup go up once.
        let upload = uploads.get(entry.sha256);
        if (!upload) {
          upload = this.store(entry, reusable.get(entry.sha256));
          uploads.set(entry.sha256, upload);
          if (await upload) newBytes += entry.data.length;
          else shared.set(entry.sha256, entry);
        } else {
          await upload;
        }
      });
      await this.assertStillThere(shared);
      const manifest: BackupManifest = { ...header, files, newBytes };
      // Last: from here on the backup is listed.
      await this.objects.put(
        this.layout.manifestKey(id),
        Buffer.from(JSON.stringify(manifest, null, 2)),
        this.partSize,
      );
      return manifest;
    } finally {
      await this.objects.delete([marker]).catch(() => undefined); // stale after staleUploadMs
    }
  }

  /**
   * Reads a backup: its manifest, then the object of every file it lists (downloads stop at
   * `maxFileBytes`). An object that is missing is left out, so that the library's checks refuse the
   * backup by name; one that differs is handed back as it is and refused by its checksum.
   */
  async read(id: string, limits: { maxFileBytes: number }): Promise<BackupContents> {
    this.assertId(id);
    const manifest = await this.readManifest(id);
    if (manifest.id !== id) {
      throw new BackupProblem(`its manifest names another backup (${String(manifest.id)})`);
    }
    const downloads = new Map<string, Promise<Buffer | undefined>>();
    const files = await mapLimit(manifest.files, this.concurrency, async (file) => {
      if (!/^[0-9a-f]{64}$/.test(file.sha256)) {
        throw new BackupProblem(`"${file.path}" has no valid SHA-256 in the manifest`);
      }
      if (file.size > limits.maxFileBytes) {
        throw new BackupProblem(
          `"${file.path}" is larger (${file.size} bytes) than limits.maxFileBytes (${limits.maxFileBytes})`,
        );
      }
      let download = downloads.get(file.sha256);
      if (!download) {
        download = this.objects.get(this.layout.objectKey(file.sha256), limits.maxFileBytes);
        downloads.set(file.sha256, download);
      }
      const data = await download.catch((error: unknown) => {
        throw error instanceof S3ObjectTooLargeError
          ? new BackupProblem(`"${file.path}" cannot be restored: ${error.message}`)
          : error;
      });
      return data && { path: file.path, data };
    });
    return {
      manifest,
      files: files.filter((f): f is { path: string; data: Buffer } => f !== undefined),
    };
  }

  /**
   * Deletes the manifest (the backup is no longer listed), then the objects that no remaining
   * manifest refers to. A failure of the second step is logged and left to the next removal.
   */
  async remove(id: string): Promise<void> {
    this.assertId(id);
    await this.objects.delete([this.layout.manifestKey(id)]);
    await this.collectGarbage().catch((error: unknown) => {
      this.logger.warn(messages.s3GarbageFailed(this.location, messages.reasonOf(error)));
    });
  }

  /**
   * Removes the objects no manifest refers to, and stale upload markers, unless an upload is in
   * progress (it may be writing objects, or sharing ones whose last manifest was just removed). A
   * manifest that cannot be read keeps every object: what it refers to is unknown.
   */
  async collectGarbage(): Promise<void> {
    if ((await this.liveUploads()).live > 0) return;
    const referenced = new Set<string>();
    for (const object of await this.objects.list(this.layout.backupsPrefix)) {
      if (this.layout.manifestId(object.key) === undefined) continue;
      const data = await this.objects.get(object.key, this.maxManifestBytes);
      if (!data) continue; // removed meanwhile
      let manifest: BackupManifest;
      try {
        manifest = parseManifest(data);
      } catch {
        return;
      }
      for (const file of manifest.files) referenced.add(file.sha256);
    }
    const orphans = (await this.objects.list(this.layout.objectsPrefix))
      .filter((o) => {
        const sha = this.layout.objectSha(o.key);
        return sha !== undefined && !referenced.has(sha);
      })
      .map((o) => o.key);
    // Checked again right before deleting: an upload that started meanwhile keeps them.
    const { live, stale } = await this.liveUploads();
    if (live > 0) return;
    await this.objects.delete([...orphans, ...stale]);
  }

  /** Upload markers: how many are live, and the keys of the stale ones. */
  private async liveUploads(): Promise<{ live: number; stale: string[] }> {
    const maxAge = this.options.staleUploadMs ?? 86_400_000;
    const now = Date.now();
    const markers = (await this.objects.list(this.layout.uploadsPrefix)).filter(
      (o) => this.layout.uploadId(o.key) !== undefined,
    );
    const stale = markers.filter(
      (o) => o.lastModified !== undefined && now - o.lastModified.getTime() > maxAge,
    );
    const live = markers.length - stale.length;
    if (live > 0) this.logger.log(messages.s3GarbageSkipped(this.location, live));
    return { live, stale: stale.map((o) => o.key) };
  }

  /**
   * The objects of `base` that exist with the size its manifest gives: only those are shared (an
   * object no manifest refers to may be removed at any moment by another writer's clean-up).
   */
  private async reusableObjects(base?: StoredBackup): Promise<Map<string, ListedObject>> {
    const reusable = new Map<string, ListedObject>();
    if (!base) return reusable;
    const wanted = new Map(base.manifest.files.map((f) => [f.sha256, f.size]));
    for (const object of await this.objects.list(this.layout.objectsPrefix)) {
      const sha = this.layout.objectSha(object.key);
      if (sha !== undefined && wanted.get(sha) === object.size) reusable.set(sha, object);
    }
    return reusable;
  }

  /**
   * Before the manifest: every object this backup shares rather than uploads must still be there. One
   * may have been deleted meanwhile (a clean-up by another writer whose last marker check came just
   * before this upload began, a lifecycle rule, a person); the manifest is then not written, and the
   * next backup uploads the file again (its base no longer holds the object).
   */
  private async assertStillThere(shared: ReadonlyMap<string, BackupEntry>): Promise<void> {
    if (shared.size === 0) return;
    const present = new Map<string, number>();
    for (const object of await this.objects.list(this.layout.objectsPrefix)) {
      const sha = this.layout.objectSha(object.key);
      if (sha !== undefined) present.set(sha, object.size);
    }
    for (const [sha, entry] of shared) {
      if (present.get(sha) !== entry.data.length) {
        throw new PersistenceError(
          PersistenceErrorCode.IoFailed,
          messages.s3SharedObjectGone(this.location, entry.path, this.layout.objectKey(sha)),
          { operation: 'backup', path: this.location },
        );
      }
    }
  }

  /** Uploads the entry's object unless `existing` already holds its bytes; true when uploaded. */
  private async store(entry: BackupEntry, existing: ListedObject | undefined): Promise<boolean> {
    if (existing && existing.size === entry.data.length && this.trusted(existing, entry.data)) {
      return false;
    }
    await this.objects.put(this.layout.objectKey(entry.sha256), entry.data, this.partSize);
    return true;
  }

  private trusted(object: ListedObject, data: Buffer): boolean {
    // A multipart ETag is not an MD5 of the bytes (and differs between S3-compatible stores).
    if ((this.options.verifyReuse ?? 'md5') === 'size' || data.length > this.partSize) return true;
    return object.etag === createHash('md5').update(data).digest('hex');
  }

  private async readManifest(id: string): Promise<BackupManifest> {
    const key = this.layout.manifestKey(id);
    let data: Buffer | undefined;
    try {
      data = await this.objects.get(key, this.maxManifestBytes);
    } catch (error) {
      if (error instanceof S3ObjectTooLargeError) throw new BackupProblem(error.message);
      throw error;
    }
    if (!data) throw new BackupProblem('it does not exist');
    return parseManifest(data);
  }

  private assertId(id: string): void {
    if (!isBackupId(id)) throw new BackupProblem(`"${String(id)}" is not a backup id`);
  }
}

function invalid(option: string, got: unknown, fix: string): never {
  throw new PersistenceError(
    PersistenceErrorCode.InvalidOptions,
    messages.invalidOption(`S3BackupTarget ${option}`, got, fix),
    { operation: 'init' },
  );
}

/**
 * The client of a target given settings rather than a client. Checksums are computed and checked
 * only where S3 requires them: several S3-compatible stores reject or mangle the newer default ones,
 * and every object is checked against its SHA-256 at restore anyway.
 */
function buildClient(options: S3BackupTargetOptions): S3Client {
  return new S3Client({
    ...(options.region !== undefined ? { region: options.region } : {}),
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
    forcePathStyle: options.forcePathStyle ?? false,
    maxAttempts: options.maxAttempts ?? 5,
    requestHandler: {
      requestTimeout: options.requestTimeoutMs ?? 120_000,
      connectionTimeout: 10_000,
    },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
