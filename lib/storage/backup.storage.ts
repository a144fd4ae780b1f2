import { createHash, randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { BACKUP_MANIFEST_FILE, BACKUP_MANIFEST_VERSION } from '../persistence.constants';
import { BackupContents, BackupEntry, BackupManifest } from '../interfaces/backup-target.interface';
import { atomicWrite } from './atomic-write';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { FileSystemStorage, parseItemFileName } from './file-system.storage';
import { ensureDirectory, fsyncDirectory, removeTree } from './fs.util';
import { forEachLimit } from './map-limit.util';
import { readRegularFile, UnsafeFileError } from './safe-read';
import { JOURNAL_HEADER_BYTES } from './journal';
import { JOURNAL_FILE, LOCK_FILE, QUARANTINE_DIR, sealedSegmentNumber } from './on-disk.names';

/** One file of a backup, relative to its root (`<collection>/<file name>`). */
export interface BackupFile {
  collection: string;
  fileName: string;
  stem: string;
  extension: string;
  data: Buffer;
  /**
   * Why the backup holds this file as it was, unchecked (its manifest lists it in `unverified`): a
   * restore puts it back as it is, for the load to treat as it did before.
   */
  unverified?: string;
}

export type { BackupManifest };

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** Backup files written at once. */
const BACKUP_WRITE_CONCURRENCY = 16;

/** Thrown with a reason a user can act on; the caller wraps it in a PersistenceError. */
export class BackupProblem extends Error {
  constructor(
    message: string,
    /** The backup's file it is about (`<collection>/<file name>`, or the manifest), when one is. */
    readonly file?: string,
  ) {
    super(message);
  }
}

/** The committed item files of `collections`, one at a time, as backup entries. */
export async function* storeEntries(
  storage: FileSystemStorage,
  collections: readonly string[],
  extraExtension: string | undefined,
): AsyncGenerator<BackupEntry> {
  for (const collection of collections) {
    for (const file of await storage.list(collection, extraExtension)) {
      const data = await storage.read(file.path);
      yield { path: `${collection}/${file.fileName}`, data, sha256: sha256(data) };
    }
  }
}

/**
 * Copies the item files of `collections` into a staging folder beside `destination`, writes the
 * manifest last, then renames the staging folder into place: a reader sees no backup or a whole one.
 * The caller checkpoints first, so the item files are the committed state.
 */
export async function writeBackup(
  storage: FileSystemStorage,
  collections: readonly string[],
  destination: string,
  entries: AsyncIterable<BackupEntry>,
  extra: Pick<BackupManifest, 'verified' | 'unverified'> = {},
): Promise<{ files: number; size: number }> {
  const manifest = await writeBackupFolder(
    storage.fs,
    storage.settings,
    destination,
    `.${basename(destination)}.backup-${randomBytes(6).toString('hex')}`,
    {
      version: BACKUP_MANIFEST_VERSION,
      createdAt: new Date().toISOString(),
      collections: [...collections],
      ...extra,
    },
    entries,
  );
  return { files: manifest.files.length, size: manifest.newBytes ?? 0 };
}

/**
 * Writes a backup folder: a staging folder `stagingName` beside `destination` gets one folder per
 * collection and every entry (a new file through {@link atomicWrite}, or, when `share` holds the same
 * bytes under the same path, a hard link to that file), each folder fsynced; then the manifest
 * (written last, folder fsynced); then the staging folder is renamed to `destination` and the parent
 * fsynced. A crash leaves no backup (only a hidden staging folder) or the whole one.
 */
export async function writeBackupFolder(
  fs: PersistenceFileSystem,
  modes: { dirMode: number; fileMode: number },
  destination: string,
  stagingName: string,
  header: Omit<BackupManifest, 'files' | 'newBytes'>,
  entries: AsyncIterable<BackupEntry>,
  share?: { folder: string; manifest: BackupManifest },
): Promise<BackupManifest> {
  const { dirMode, fileMode } = modes;
  const parent = dirname(destination);
  await ensureDirectory(fs, parent, dirMode);
  const staging = join(parent, stagingName);
  await fs.mkdir(staging, dirMode);
  try {
    const manifest: BackupManifest = { ...header, files: [], newBytes: 0 };
    for (const collection of header.collections) {
      await fs.mkdir(join(staging, collection), dirMode);
    }
    const shareable = new Map((share?.manifest.files ?? []).map((f) => [f.path, f]));
    const files: BackupManifest['files'] = [];
    let newBytes = 0;
    // Several files at once: each is fsynced before the manifest is written, and the file system
    // commits concurrent fsyncs together.
    await forEachLimit(entries, BACKUP_WRITE_CONCURRENCY, async (entry, index) => {
      const target = join(staging, ...entry.path.split('/'));
      const old = shareable.get(entry.path);
      let shared = false;
      if (share && old && old.sha256 === entry.sha256 && old.size === entry.data.length) {
        shared = await shareFile(fs, join(share.folder, ...entry.path.split('/')), target, entry);
      }
      if (!shared) {
        await atomicWrite(fs, target, entry.data, { syncDirectory: false, mode: fileMode });
        newBytes += entry.data.length;
      }
      files[index] = { path: entry.path, size: entry.data.length, sha256: entry.sha256 };
    });
    manifest.files = files;
    manifest.newBytes = newBytes;
    for (const collection of header.collections) {
      await fsyncDirectory(fs, join(staging, collection));
    }
    await atomicWrite(
      fs,
      join(staging, BACKUP_MANIFEST_FILE),
      Buffer.from(JSON.stringify(manifest, null, 2)),
      { mode: fileMode },
    );
    await fs.rename(staging, destination);
    await fsyncDirectory(fs, parent);
    return manifest;
  } catch (error) {
    await removeTree(fs, staging).catch(() => undefined);
    throw error;
  }
}

/**
 * Links `existing` (a file of an older backup) as `target` when it holds exactly the entry's bytes;
 * false when it does not, or cannot be linked (another file system, a link limit): the caller copies.
 */
async function shareFile(
  fs: PersistenceFileSystem,
  existing: string,
  target: string,
  entry: BackupEntry,
): Promise<boolean> {
  try {
    const data = await readRegularFile(fs, existing, entry.data.length);
    if (!data.equals(entry.data)) return false;
    await fs.link(existing, target);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks what a {@link BackupTarget} read back, as a restore needs it: every file in a folder of this
 * store's adapters, named as an item file, and exactly the files of the manifest with their sizes and
 * checksums. The files' contents are checked by the caller.
 */
export function checkBackupContents(
  contents: BackupContents,
  collections: readonly string[],
  extraExtension: string | undefined,
): BackupFile[] {
  const known = new Set(collections);
  const files: BackupFile[] = [];
  for (const { path, data } of contents.files) {
    const parts = path.split('/');
    if (parts.length !== 2 || !known.has(parts[0])) {
      throw new BackupProblem(
        `it holds "${path}", which is not in a folder of this store's adapters (${[...known].join(', ')})`,
      );
    }
    const parsed = parseItemFileName(parts[1], extraExtension);
    if (!parsed) throw new BackupProblem(`"${path}" is not an item file`);
    files.push({ collection: parts[0], fileName: parts[1], ...parsed, data });
  }
  checkManifest(parseManifestObject(contents.manifest), files);
  return files;
}

/**
 * False when `destination` holds something (a file, or a folder with entries). A path that cannot
 * exist (a parent is a file) counts as free: writing the backup then fails with the real reason.
 */
export async function isFreeDestination(
  fs: PersistenceFileSystem,
  destination: string,
): Promise<boolean> {
  try {
    const stat = await fs.lstat(destination);
    return stat.type === 'directory' && (await fs.readdir(destination)).length === 0;
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return true;
    throw error;
  }
}

/**
 * Reads a backup folder into memory and checks its shape: only the store's collection folders (and the
 * manifest, and a `.quarantine` folder that is ignored), only regular single-link files in them, and,
 * when a manifest is present, exactly the files it lists with their checksums. The files' contents are
 * checked by the caller. Nothing is followed through a link.
 */
export async function readBackup(
  fs: PersistenceFileSystem,
  source: string,
  collections: readonly string[],
  extraExtension: string | undefined,
  maxFileBytes: number,
): Promise<BackupFile[]> {
  const read = (path: string, label: string): Promise<Buffer> =>
    readRegularFile(fs, path, maxFileBytes, { singleLink: true }).catch((error: unknown) => {
      throw new BackupProblem(
        `"${label}" cannot be restored: ${error instanceof UnsafeFileError ? error.message : String(error)}`,
      );
    });
  const rootStat = await fs.lstat(source).catch((error: NodeJS.ErrnoException) => {
    throw new BackupProblem(error.code === 'ENOENT' ? 'it does not exist' : error.message);
  });
  if (rootStat.type !== 'directory') {
    throw new BackupProblem('it is not a folder');
  }
  const known = new Set(collections);
  const files: BackupFile[] = [];
  let manifest: BackupManifest | undefined;
  for (const entry of await fs.readdir(source)) {
    if (entry.name === BACKUP_MANIFEST_FILE && entry.type === 'file') {
      manifest = parseManifest(await read(join(source, entry.name), entry.name));
      continue;
    }
    if (entry.name === QUARANTINE_DIR && entry.type === 'directory') continue;
    if (entry.name === LOCK_FILE && entry.type === 'file') continue;
    if (
      entry.type === 'file' &&
      (entry.name === JOURNAL_FILE || sealedSegmentNumber(JOURNAL_FILE, entry.name) !== undefined)
    ) {
      // Checkpointed, a journal holds its header only: no record, nothing else.
      if ((await fs.lstat(join(source, entry.name))).size > JOURNAL_HEADER_BYTES) {
        throw new BackupProblem(
          `it holds a journal with saves not yet written into the item files; call checkpoint() (or stop the application) before copying a store folder, or use backup()`,
        );
      }
      continue;
    }
    if (entry.type !== 'directory' || !known.has(entry.name)) {
      throw new BackupProblem(
        `it holds "${entry.name}", which is not a folder of this store's adapters (${[...known].join(', ')})`,
      );
    }
    const dir = join(source, entry.name);
    for (const item of await fs.readdir(dir)) {
      const parsed =
        item.type === 'file' ? parseItemFileName(item.name, extraExtension) : undefined;
      if (!parsed) {
        throw new BackupProblem(`"${entry.name}/${item.name}" is not an item file`);
      }
      files.push({
        collection: entry.name,
        fileName: item.name,
        ...parsed,
        data: await read(join(dir, item.name), `${entry.name}/${item.name}`),
      });
    }
  }
  if (manifest) {
    checkManifest(manifest, files);
  }
  return files;
}

/** Parses a manifest's bytes; throws a {@link BackupProblem} unless this release can read it. */
export function parseManifest(data: Buffer): BackupManifest {
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(data.toString('utf8')) as BackupManifest;
  } catch {
    throw new BackupProblem(`${BACKUP_MANIFEST_FILE} is not valid JSON`, BACKUP_MANIFEST_FILE);
  }
  return parseManifestObject(manifest);
}

function parseManifestObject(manifest: BackupManifest): BackupManifest {
  if (
    typeof manifest !== 'object' ||
    manifest === null ||
    typeof manifest.version !== 'number' ||
    manifest.version > BACKUP_MANIFEST_VERSION ||
    !Array.isArray(manifest.files) ||
    !manifest.files.every(
      (f) =>
        typeof f === 'object' &&
        f !== null &&
        typeof f.path === 'string' &&
        typeof f.size === 'number' &&
        typeof f.sha256 === 'string',
    )
  ) {
    throw new BackupProblem(
      `${BACKUP_MANIFEST_FILE} is not a manifest this release can read`,
      BACKUP_MANIFEST_FILE,
    );
  }
  return manifest;
}

function checkManifest(manifest: BackupManifest, files: readonly BackupFile[]): void {
  const present = new Map(files.map((f) => [`${f.collection}/${f.fileName}`, f]));
  const unverified = new Map(
    (Array.isArray(manifest.unverified) ? manifest.unverified : []).map((u) => [
      u?.path,
      String(u?.reason),
    ]),
  );
  for (const listed of manifest.files) {
    const file = present.get(listed.path);
    if (!file) {
      throw new BackupProblem(
        `"${listed.path}" is listed in the manifest but missing`,
        listed.path,
      );
    }
    const { data } = file;
    const reason = unverified.get(listed.path);
    if (reason !== undefined) file.unverified = reason;
    if (data.length !== listed.size || sha256(data) !== listed.sha256) {
      throw new BackupProblem(
        `"${listed.path}" does not match its checksum in the manifest`,
        listed.path,
      );
    }
    present.delete(listed.path);
  }
  const extra = [...present.keys()];
  if (extra.length > 0) {
    throw new BackupProblem(`"${extra[0]}" is not listed in the manifest`, extra[0]);
  }
}
