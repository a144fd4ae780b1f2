import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  BACKUP_MANIFEST_FILE,
  BACKUP_MANIFEST_VERSION,
  QUARANTINE_DIR,
} from '../persistence.constants';
import { atomicWrite, fsyncDirectory, isTempFileName } from './atomic-write';
import { FileSystemStorage, parseItemFileName } from './file-system.storage';
import { readRegularFile, UnsafeFileError } from './safe-read';

/** One file of a backup, relative to its root (`<collection>/<file name>`). */
export interface BackupFile {
  collection: string;
  fileName: string;
  stem: string;
  extension: string;
  data: Buffer;
}

/** `persistence-backup.json`: what a backup holds, so a restore can tell a complete one. */
export interface BackupManifest {
  version: number;
  createdAt: string;
  collections: string[];
  files: Array<{ path: string; size: number; sha256: string }>;
}

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

const RESTORE_PREFIX = '.restore-';
const COMMIT_MARKER = 'COMMIT';

/** Thrown with a reason a user can act on; the caller wraps it in a PersistenceError. */
export class BackupProblem extends Error {}

/**
 * Copies the item files of `collections` into a staging folder beside `destination`, writes the
 * manifest last, then renames the staging folder into place: a reader sees no backup or a whole one.
 */
export async function writeBackup(
  storage: FileSystemStorage,
  collections: readonly string[],
  destination: string,
  extraExtension: string | undefined,
): Promise<{ files: number; size: number }> {
  const { dirMode, fileMode } = storage.settings;
  const parent = dirname(destination);
  await mkdir(parent, { recursive: true, mode: dirMode });
  const staging = join(
    parent,
    `.${basename(destination)}.backup-${randomBytes(6).toString('hex')}`,
  );
  await mkdir(staging, { mode: dirMode });
  try {
    const manifest: BackupManifest = {
      version: BACKUP_MANIFEST_VERSION,
      createdAt: new Date().toISOString(),
      collections: [...collections],
      files: [],
    };
    let size = 0;
    for (const collection of collections) {
      const dir = join(staging, collection);
      await mkdir(dir, { mode: dirMode });
      for (const file of await storage.list(collection, extraExtension)) {
        const data = await storage.read(file.path);
        await atomicWrite(join(dir, file.fileName), data, { syncDirectory: false, mode: fileMode });
        manifest.files.push({
          path: `${collection}/${file.fileName}`,
          size: data.length,
          sha256: sha256(data),
        });
        size += data.length;
      }
      await fsyncDirectory(dir);
    }
    await atomicWrite(
      join(staging, BACKUP_MANIFEST_FILE),
      Buffer.from(JSON.stringify(manifest, null, 2)),
      { mode: fileMode },
    );
    await rename(staging, destination);
    await fsyncDirectory(parent);
    return { files: manifest.files.length, size };
  } catch (error) {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
}

/**
 * False when `destination` holds something (a file, or a folder with entries). A path that cannot
 * exist (a parent is a file) counts as free: writing the backup then fails with the real reason.
 */
export async function isFreeDestination(destination: string): Promise<boolean> {
  try {
    const stat = await lstat(destination);
    return stat.isDirectory() && (await readdir(destination)).length === 0;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return true;
    throw error;
  }
}

/**
 * Reads a backup folder into memory and checks its shape: only the store's collection folders (and the
 * manifest, and a `.quarantine` folder that is ignored), only regular files in them, and, when a
 * manifest is present, exactly the files it lists with their checksums. The files' contents are checked
 * by the caller. Nothing is followed through a link.
 */
export async function readBackup(
  source: string,
  collections: readonly string[],
  extraExtension: string | undefined,
  maxFileBytes: number,
): Promise<BackupFile[]> {
  const read = (path: string, label: string): Promise<Buffer> =>
    readRegularFile(path, maxFileBytes, { singleLink: true }).catch((error: unknown) => {
      throw new BackupProblem(
        `"${label}" cannot be restored: ${error instanceof UnsafeFileError ? error.message : String(error)}`,
      );
    });
  const rootStat = await lstat(source).catch((error: NodeJS.ErrnoException) => {
    throw new BackupProblem(error.code === 'ENOENT' ? 'it does not exist' : error.message);
  });
  if (!rootStat.isDirectory()) {
    throw new BackupProblem('it is not a folder');
  }
  const known = new Set(collections);
  const files: BackupFile[] = [];
  let manifest: BackupManifest | undefined;
  for (const entry of await readdir(source, { withFileTypes: true })) {
    if (entry.name === BACKUP_MANIFEST_FILE && entry.isFile()) {
      manifest = parseManifest(await read(join(source, entry.name), entry.name));
      continue;
    }
    if (entry.name === QUARANTINE_DIR && entry.isDirectory()) continue;
    if (!entry.isDirectory() || !known.has(entry.name)) {
      throw new BackupProblem(
        `it holds "${entry.name}", which is not a folder of this store's adapters (${[...known].join(', ')})`,
      );
    }
    const dir = join(source, entry.name);
    for (const item of await readdir(dir, { withFileTypes: true })) {
      const parsed = item.isFile() ? parseItemFileName(item.name, extraExtension) : undefined;
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

function parseManifest(data: Buffer): BackupManifest {
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(data.toString('utf8')) as BackupManifest;
  } catch {
    throw new BackupProblem(`${BACKUP_MANIFEST_FILE} is not valid JSON`);
  }
  if (
    typeof manifest !== 'object' ||
    manifest === null ||
    typeof manifest.version !== 'number' ||
    manifest.version > BACKUP_MANIFEST_VERSION ||
    !Array.isArray(manifest.files)
  ) {
    throw new BackupProblem(`${BACKUP_MANIFEST_FILE} is not a manifest this release can read`);
  }
  return manifest;
}

function checkManifest(manifest: BackupManifest, files: readonly BackupFile[]): void {
  const present = new Map(files.map((f) => [`${f.collection}/${f.fileName}`, f.data]));
  for (const listed of manifest.files) {
    const data = present.get(listed.path);
    if (!data) {
      throw new BackupProblem(`"${listed.path}" is listed in the manifest but missing`);
    }
    if (data.length !== listed.size || sha256(data) !== listed.sha256) {
      throw new BackupProblem(`"${listed.path}" does not match its checksum in the manifest`);
    }
    present.delete(listed.path);
  }
  const extra = [...present.keys()];
  if (extra.length > 0) {
    throw new BackupProblem(`"${extra[0]}" is not listed in the manifest`);
  }
}

/**
 * Replaces the collections' folders with the backup's files as one unit:
 *   1. stage every file under `<root>/.restore-<id>/new/<collection>/` and make it durable;
 *   2. write `<root>/.restore-<id>/COMMIT` — from here on the restore happens even after a crash;
 *   3. move each live folder to `old/` and each staged folder into its place;
 *   4. remove `.restore-<id>`.
 * {@link recoverRestores} finishes step 3 (or discards an uncommitted stage) at the next start-up.
 */
export async function swapInBackup(
  storage: FileSystemStorage,
  collections: readonly string[],
  files: readonly BackupFile[],
): Promise<void> {
  const work = join(storage.root, `${RESTORE_PREFIX}${randomBytes(6).toString('hex')}`);
  const staged = join(work, 'new');
  try {
    await mkdir(staged, { recursive: true, mode: storage.settings.dirMode });
    for (const collection of collections) {
      const dir = join(staged, collection);
      await mkdir(dir, { mode: storage.settings.dirMode });
      for (const file of files.filter((f) => f.collection === collection)) {
        await atomicWrite(join(dir, file.fileName), file.data, {
          syncDirectory: false,
          mode: storage.settings.fileMode,
        });
      }
      await fsyncDirectory(dir);
    }
    await fsyncDirectory(staged);
    await atomicWrite(join(work, COMMIT_MARKER), Buffer.from(new Date().toISOString()), {
      mode: storage.settings.fileMode,
    });
    await fsyncDirectory(storage.root);
  } catch (error) {
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
  await finishRestore(storage.root, work);
}

/**
 * At start-up: completes every committed restore and discards every uncommitted one. Returns what it
 * did, for the log.
 */
export async function recoverRestores(root: string): Promise<string[]> {
  const done: string[] = [];
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return done;
  }
  for (const name of entries.filter((n) => n.startsWith(RESTORE_PREFIX))) {
    const work = join(root, name);
    const committed = await lstat(join(work, COMMIT_MARKER)).then(
      () => true,
      () => false,
    );
    if (committed) {
      await finishRestore(root, work);
      done.push(`completed the interrupted restore ${name}`);
    } else {
      await rm(work, { recursive: true, force: true });
      done.push(`discarded the uncommitted restore ${name}`);
    }
  }
  return done;
}

async function finishRestore(root: string, work: string): Promise<void> {
  const staged = join(work, 'new');
  const old = join(work, 'old');
  await mkdir(old, { recursive: true, mode: 0o700 });
  const remaining = await readdir(staged).catch(() => [] as string[]);
  for (const collection of remaining.filter((n) => !isTempFileName(n))) {
    const live = join(root, collection);
    await rename(live, join(old, collection)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    await rename(join(staged, collection), live);
  }
  await fsyncDirectory(root);
  await rm(work, { recursive: true, force: true });
  await fsyncDirectory(root);
}
