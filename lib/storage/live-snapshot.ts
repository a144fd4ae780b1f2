import { BackupEntry } from '../interfaces/backup-target.interface';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { FileSystemStorage } from './file-system.storage';
import { decodeSegment, listSealedSegments } from './journal';
import { readRegularFile } from './safe-read';
import { createHash } from 'node:crypto';

/**
 * Attempts at a consistent read before giving up: each one that fails saw a checkpoint (or a
 * restore) of the writer between its reads.
 */
const DEFAULT_ATTEMPTS = 50;

/** The journal as one instant saw it: every segment's complete records, oldest first. */
interface JournalRead {
  /** The complete records' bytes of every segment, concatenated in replay order. */
  bytes: Buffer;
  /** Every segment's records, in replay order. */
  records: ReturnType<typeof decodeSegment>['records'];
}

/** The item files of the collections as read: `<collection>/<file name>` → bytes. */
type FileRead = Map<string, Buffer>;

/** The folder changed between two reads of one attempt: the attempt starts over. */
export class SnapshotMoved extends Error {}

/**
 * The committed state of a store folder that another process writes (a live application),
 * read without writing anything and without its lock. The rule it relies on is the one crash
 * recovery relies on: at every instant, the item files with the journal's complete records replayed
 * over them (sealed segments in order, then the active journal) are the state after the last of
 * those records. One attempt reads the journal (J0), every item file, the journal again (J1) and
 * every item file again; it holds when
 *  - each journal read saw the same sealed segments at its start and end (no segment sealed or
 *    removed while it read);
 *  - J0's records are a prefix of J1's: nothing was checkpointed away meanwhile (a sealed segment is
 *    removed, and the active journal emptied, only after its records are in the item files, and
 *    before anything newer is applied);
 *  - the second read of the item files found the same names with the same bytes (item files are
 *    only ever replaced whole, so this also catches a restore, which leaves no journal record).
 * The result is then the files of the first read with J1 replayed over them: the state after J1's
 * last record. An attempt that fails is retried; after `attempts` the last reason is thrown.
 */
export async function readLiveSnapshot(
  storage: FileSystemStorage,
  journalPath: string,
  collections: readonly string[],
  extraExtension: string | undefined,
  attempts = DEFAULT_ATTEMPTS,
): Promise<BackupEntry[]> {
  let last: SnapshotMoved | undefined;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      return await readOnce(storage, journalPath, collections, extraExtension);
    } catch (error) {
      if (!(error instanceof SnapshotMoved)) throw error;
      last = error;
      // Let the writer finish the checkpoint it is in before looking again.
      await new Promise((resolve) => setTimeout(resolve, Math.min(5 * (attempt + 1), 100)));
    }
  }
  throw last ?? new SnapshotMoved('no attempt was made');
}

async function readOnce(
  storage: FileSystemStorage,
  journalPath: string,
  collections: readonly string[],
  extraExtension: string | undefined,
): Promise<BackupEntry[]> {
  const before = await readJournal(storage.fs, journalPath);
  const files = await readFiles(storage, collections, extraExtension);
  const after = await readJournal(storage.fs, journalPath);
  if (
    after.bytes.length < before.bytes.length ||
    !after.bytes.subarray(0, before.bytes.length).equals(before.bytes)
  ) {
    throw new SnapshotMoved('the journal was checkpointed while the item files were read');
  }
  const again = await readFiles(storage, collections, extraExtension);
  if (again.size !== files.size) {
    throw new SnapshotMoved('item files were added or removed while they were read');
  }
  for (const [path, data] of files) {
    if (!again.get(path)?.equals(data)) {
      throw new SnapshotMoved(`${path} was rewritten while the item files were read`);
    }
  }
  const wanted = new Set(collections);
  for (const record of after.records) {
    for (const op of record) {
      if (!wanted.has(op.collection)) continue;
      const path = `${op.collection}/${op.fileName}`;
      if (op.data) files.set(path, op.data);
      else files.delete(path);
    }
  }
  return [...files]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([path, data]) => ({
      path,
      data,
      sha256: createHash('sha256').update(data).digest('hex'),
    }));
}

/** Every item file of `collections`, read as the store reads them. */
async function readFiles(
  storage: FileSystemStorage,
  collections: readonly string[],
  extraExtension: string | undefined,
): Promise<FileRead> {
  const files: FileRead = new Map();
  for (const collection of collections) {
    for (const file of await storage.list(collection, extraExtension)) {
      let data: Buffer;
      try {
        data = await storage.read(file.path);
      } catch (error) {
        // Replaced (or removed) by the writer between the listing and the read.
        if (errorCode(error) === 'ENOENT') throw new SnapshotMoved(`${file.path} went away`);
        throw error;
      }
      files.set(`${collection}/${file.fileName}`, data);
    }
  }
  return files;
}

/** The journal's segments, read with the same sealed segments at the start and at the end. */
async function readJournal(fs: PersistenceFileSystem, journalPath: string): Promise<JournalRead> {
  const sealed = await listSealedSegments(fs, journalPath);
  const pieces: Buffer[] = [];
  const records: JournalRead['records'] = [];
  for (const { path, isSealed } of [
    ...sealed.map((s) => ({ path: s.path, isSealed: true })),
    { path: journalPath, isSealed: false },
  ]) {
    let bytes: Buffer;
    try {
      bytes = await readRegularFile(fs, path, Number.MAX_SAFE_INTEGER);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      if (isSealed) throw new SnapshotMoved(`${path} was checkpointed while the journal was read`);
      continue; // no active journal: sealed right now, or never written (seen at the re-listing)
    }
    const decoded = decodeSegment(bytes, isSealed);
    // A torn tail (an append in flight) is not a commit yet.
    pieces.push(bytes.subarray(0, decoded.validLength));
    records.push(...decoded.records);
  }
  const again = await listSealedSegments(fs, journalPath);
  if (again.length !== sealed.length || again.some((s, i) => s.path !== sealed[i].path)) {
    throw new SnapshotMoved('the journal was sealed or checkpointed while it was read');
  }
  return { bytes: Buffer.concat(pieces), records };
}
