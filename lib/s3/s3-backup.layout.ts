/**
 * The keys of an {@link S3BackupTarget} under its prefix: `backups/<id>.json` (manifests),
 * `objects/<sha256>` (content-addressed files), `uploads/<id>.json` (uploads in progress). Any other
 * key under the prefix is ignored, never listed and never deleted.
 */
export class S3BackupLayout {
  /** The prefix, empty or ending with `/`. */
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
  }

  get backupsPrefix(): string {
    return `${this.prefix}backups/`;
  }

  get objectsPrefix(): string {
    return `${this.prefix}objects/`;
  }

  get uploadsPrefix(): string {
    return `${this.prefix}uploads/`;
  }

  manifestKey(id: string): string {
    return `${this.backupsPrefix}${id}.json`;
  }

  objectKey(sha256: string): string {
    return `${this.objectsPrefix}${sha256}`;
  }

  uploadKey(id: string): string {
    return `${this.uploadsPrefix}${id}.json`;
  }

  /** The id of a manifest key, or undefined for any other key. */
  manifestId(key: string): string | undefined {
    return idIn(key, this.backupsPrefix);
  }

  /** The id of an upload marker key, or undefined for any other key. */
  uploadId(key: string): string | undefined {
    return idIn(key, this.uploadsPrefix);
  }

  /** The SHA-256 an object key names, or undefined for any other key. */
  objectSha(key: string): string | undefined {
    if (!key.startsWith(this.objectsPrefix)) return undefined;
    const sha = key.slice(this.objectsPrefix.length);
    return /^[0-9a-f]{64}$/.test(sha) ? sha : undefined;
  }
}

function idIn(key: string, prefix: string): string | undefined {
  if (!key.startsWith(prefix) || !key.endsWith('.json')) return undefined;
  const id = key.slice(prefix.length, -'.json'.length);
  return id.includes('/') || id === '' ? undefined : id;
}
