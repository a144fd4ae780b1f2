import { PersistenceFile, PersistenceFileSystem } from './file-system.interface';

/**
 * `undefined` when a write may go ahead at once; otherwise a promise that settles first (and
 * rejects to refuse the write).
 */
export type WriteGuard = () => Promise<void> | undefined;

/** Runs `write` after `guard` allows it; no extra turn of the event loop when it allows at once. */
function guarded<T>(guard: WriteGuard, write: () => Promise<T>): Promise<T> {
  const wait = guard();
  return wait ? wait.then(write) : write();
}

/** A file whose writes (and truncation) wait for the guard. */
function guardFile(file: PersistenceFile, guard: WriteGuard): PersistenceFile {
  return {
    stat: () => file.stat(),
    read: (buffer, offset, length, position) => file.read(buffer, offset, length, position),
    write: (data, position) => guarded(guard, () => file.write(data, position)),
    truncate: (length) => guarded(guard, () => file.truncate(length)),
    chmod: (mode) => file.chmod(mode),
    sync: () => file.sync(),
    ...(file.datasync ? { datasync: () => file.datasync!() } : {}),
    close: () => file.close(),
  };
}

/**
 * The file system of a store folder's writer: every call that changes something (creating, writing,
 * renaming, linking or removing a file or folder) first passes `guard`, so a store that lost its
 * lock writes nothing at all — saves, checkpoints, clear, restore alike — and cannot corrupt what
 * the new owner writes. Reads pass through.
 */
export function guardWrites(fs: PersistenceFileSystem, guard: WriteGuard): PersistenceFileSystem {
  const openSyncedAppend = fs.openSyncedAppend?.bind(fs);
  const readWhole = fs.readWhole?.bind(fs);
  return {
    open: async (path, how, mode) => {
      if (how === 'read' || how === 'directory') return fs.open(path, how, mode);
      return guardFile(await guarded(guard, () => fs.open(path, how, mode)), guard);
    },
    ...(openSyncedAppend
      ? {
          openSyncedAppend: async (path: string, mode?: number) =>
            guardFile(await guarded(guard, () => openSyncedAppend(path, mode)), guard),
        }
      : {}),
    readdir: (path) => fs.readdir(path),
    lstat: (path) => fs.lstat(path),
    mkdir: (path, mode) => guarded(guard, () => fs.mkdir(path, mode)),
    rename: (from, to) => guarded(guard, () => fs.rename(from, to)),
    link: (existing, newPath) => guarded(guard, () => fs.link(existing, newPath)),
    unlink: (path) => guarded(guard, () => fs.unlink(path)),
    rmdir: (path) => guarded(guard, () => fs.rmdir(path)),
    access: (path, how) => fs.access(path, how),
    statfs: (path) => fs.statfs(path),
    ...(readWhole ? { readWhole } : {}),
  };
}
