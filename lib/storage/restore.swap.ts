import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { atomicWrite, isTempFileName } from './atomic-write';
import type { BackupFile } from './backup.storage';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { FileSystemStorage, parseItemFileName } from './file-system.storage';
import { exists, fsyncDirectory, listDirectory, removeTree } from './fs.util';
import { DIR_MODE, RESTORE_PREFIX } from './on-disk.names';

/*
 * The restore swap on the file system: a backup's checked files replace the collections' folders
 * as one unit that survives a crash (completed or discarded at the next start-up).
 */

const COMMIT_MARKER = 'COMMIT';

/** A pinned file may be gone (its folder was removed under the store): nothing to keep then. */
const ignoreMissing = (error: unknown): undefined => {
  if (errorCode(error) !== 'ENOENT') throw error;
  return undefined;
};

/**
 * Replaces the collections' folders with the backup's files as one unit:
 *   1. stage every file under `<root>/.restore-<id>/new/<collection>/` and make it durable;
 *   2. write `<root>/.restore-<id>/COMMIT`: from here on the restore happens even after a crash;
 *   3. move each live folder to `old/` and each staged folder into its place;
 *   4. remove `.restore-<id>`.
 * {@link recoverRestores} finishes step 3 (or discards an uncommitted stage) at the next start-up.
 * The caller checkpoints first, so no journal record refers to the folders being replaced.
 * `carried` files of the live folders are staged too (hard links): they stay where they are.
 */
export async function swapInBackup(
  storage: FileSystemStorage,
  collections: readonly string[],
  files: readonly BackupFile[],
  carried: ReadonlyArray<{ collection: string; fileName: string }> = [],
): Promise<void> {
  const { fs, root } = storage;
  const { dirMode, fileMode } = storage.settings;
  const work = join(root, `${RESTORE_PREFIX}${randomBytes(6).toString('hex')}`);
  const staged = join(work, 'new');
  try {
    await fs.mkdir(work, dirMode);
    await fs.mkdir(staged, dirMode);
    for (const collection of collections) {
      const dir = join(staged, collection);
      await fs.mkdir(dir, dirMode);
      for (const file of files.filter((f) => f.collection === collection)) {
        await atomicWrite(fs, join(dir, file.fileName), file.data, {
          syncDirectory: false,
          mode: fileMode,
        });
      }
      for (const { fileName } of carried.filter((f) => f.collection === collection)) {
        await fs
          .link(join(storage.collectionPath(collection), fileName), join(dir, fileName))
          .catch(ignoreMissing);
      }
      await fsyncDirectory(fs, dir);
    }
    await fsyncDirectory(fs, staged);
    await fsyncDirectory(fs, work);
    await fsyncDirectory(fs, root);
    await atomicWrite(fs, join(work, COMMIT_MARKER), Buffer.from(new Date().toISOString()), {
      mode: fileMode,
    });
  } catch (error) {
    await removeTree(fs, work).catch(() => undefined);
    throw error;
  }
  await finishRestore(fs, root, work);
}

/**
 * {@link swapInBackup}, never deleting a file this code could not read (the pinned ones: another
 * key, a newer schema version, a missing package): one of an item the backup does not hold stays
 * where it is; one of an item the backup holds gets a second name in `.quarantine/<collection>/`
 * first (the backup's version is what the application asked for). Returns those names.
 */
export async function swapInBackupKeepingUnreadable(
  storage: FileSystemStorage,
  collections: readonly string[],
  files: readonly BackupFile[],
  extension: string,
): Promise<string[]> {
  const inBackup = new Set(files.map((f) => `${f.collection}/${f.stem}`));
  const carried: Array<{ collection: string; fileName: string }> = [];
  const replaced: string[] = [];
  const setAside: string[] = [];
  for (const collection of collections) {
    for (const fileName of storage.pinnedIn(collection)) {
      const stem = parseItemFileName(fileName, extension)?.stem;
      if (stem !== undefined && inBackup.has(`${collection}/${stem}`)) {
        const copy = await storage.quarantineLink(collection, fileName).catch(ignoreMissing);
        if (copy !== undefined) setAside.push(copy);
        replaced.push(join(storage.collectionPath(collection), fileName));
      } else {
        carried.push({ collection, fileName });
      }
    }
  }
  await swapInBackup(storage, collections, files, carried);
  for (const path of replaced) storage.unpin(path); // the backup's file is there now
  return setAside;
}

/**
 * At start-up: completes every committed restore and discards every uncommitted one. Returns what it
 * did, for the log.
 */
export async function recoverRestores(fs: PersistenceFileSystem, root: string): Promise<string[]> {
  const done: string[] = [];
  for (const entry of await listDirectory(fs, root)) {
    if (!entry.name.startsWith(RESTORE_PREFIX)) continue;
    const work = join(root, entry.name);
    if (await exists(fs, join(work, COMMIT_MARKER))) {
      await finishRestore(fs, root, work);
      done.push(`completed the interrupted restore ${entry.name}`);
    } else {
      await removeTree(fs, work);
      await fsyncDirectory(fs, root);
      done.push(`discarded the uncommitted restore ${entry.name}`);
    }
  }
  return done;
}

async function finishRestore(fs: PersistenceFileSystem, root: string, work: string): Promise<void> {
  const staged = join(work, 'new');
  const old = join(work, 'old');
  // After a crash, either folder may already be gone (every staged folder was moved into place).
  const remaining = await listDirectory(fs, staged);
  if (remaining.length > 0) {
    await fs.mkdir(old, DIR_MODE);
    for (const { name } of remaining.filter(
      (e) => e.type === 'directory' && !isTempFileName(e.name),
    )) {
      const live = join(root, name);
      await fs.rename(live, join(old, name)).catch((error: unknown) => {
        if (errorCode(error) !== 'ENOENT') throw error;
      });
      await fs.rename(join(staged, name), live);
    }
    await fsyncDirectory(fs, old);
    await fsyncDirectory(fs, staged);
  }
  await fsyncDirectory(fs, root);
  // The marker goes first: a crash while removing the rest leaves an uncommitted stage, discarded.
  await fs.unlink(join(work, COMMIT_MARKER)).catch((error: unknown) => {
    if (errorCode(error) !== 'ENOENT') throw error;
  });
  await fsyncDirectory(fs, work);
  await removeTree(fs, work);
  await fsyncDirectory(fs, root);
}
