import { BackupEntry } from '../interfaces/backup-target.interface';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { FileSystemStorage } from './file-system.storage';
import { decodeSegment, JournalOp, listSealedSegments } from './journal';
import { readRegularFile } from './safe-read';
import { createHash } from 'node:crypto';

/**
 * Attempts at a consistent read before giving up: each one that fails saw a checkpoint (or a
 * restore) of the writer between its reads.
 */
const DEFAULT_ATTEMPTS = 50;

/** One journal file as read: its complete records' bytes and the records. */
interface SegmentRead {
  /** The sealed segment's number; `undefined` for the active journal. */
  n?: number;
  /** Bytes up to the end of its last complete record (a torn tail, an append in flight, is not a commit yet). */
  bytes: Buffer;
  records: JournalOp[][];
}

/** The journal as one instant saw it: its sealed segments in order, then the active journal. */
interface JournalRead {
  sealed: SegmentRead[];
  active: SegmentRead;
}

/** The item files of the collections as read: `<collection>/<file name>` → bytes. */
type FileRead = Map<string, Buffer>;

/** The folder changed between two reads of one attempt: the attempt starts over. */
export class SnapshotMoved extends Error {}

/**
 * The committed state of a store folder that another process writes (a live application), read
 * without writing anything and without its lock. It relies on the rule crash recovery relies on: at
 * every instant, the item files with the journal's complete records replayed over them (sealed
 * segments in order, then the active journal) are the state after the last of those records; and on
 * how the writer changes the folder: item files are only ever replaced whole, by the checkpoint of
 * journal records (or by a restore, which first empties the journal); a sealed segment is never
 * changed, and removed only once its records are in the item files and before anything newer is
 * applied; the active journal only grows, until it is sealed (renamed to the next segment) or
 * emptied by a full checkpoint.
 *
 * One attempt reads the journal (J0), every item file, and the journal again (J1); each journal read
 * sees the same sealed segments at its start and its end. The records of J0 followed by those of J1
 * that J0 did not have must be contiguous: J0's active journal is found again, its bytes first,
 * as J1's active journal or as the segment it was sealed into (else a checkpoint emptied or removed
 * it meanwhile, and records may be missing). Every record a checkpoint applied to a file during the
 * reads is then among them, and the item files with those records replayed are the state after J1's
 * last record. An emptying (a full checkpoint, or the one a restore starts with) writes a new
 * generation salt into the journal's header, so it shows as J0's bytes not found again; only a
 * journal absent at J0 leaves no trace, and the item files are then read a second time and must be
 * the same bytes. An attempt that fails is retried; after `attempts` the last reason is thrown.
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
  const { records, checkFiles } = replayed(before, after);
  if (checkFiles) {
    const again = await readFiles(storage, collections, extraExtension);
    if (again.size !== files.size) {
      throw new SnapshotMoved('item files were added or removed while they were read');
    }
    for (const [path, data] of files) {
      if (!again.get(path)?.equals(data)) {
        throw new SnapshotMoved(`${path} was rewritten while the item files were read`);
      }
    }
  }
  const wanted = new Set(collections);
  for (const record of records) {
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

/**
 * The records to replay over the item files read between `before` and `after`: J0's, then J1's
 * newer ones (see {@link readLiveSnapshot}). `checkFiles`: the journal cannot tell whether it was
 * emptied meanwhile, so the item files must be read again.
 */
function replayed(
  before: JournalRead,
  after: JournalRead,
): { records: JournalOp[][]; checkFiles: boolean } {
  const last = before.sealed.length > 0 ? before.sealed[before.sealed.length - 1].n! : 0;
  const known = new Map(before.sealed.map((segment) => [segment.n!, segment]));
  const records = [...before.sealed, before.active].flatMap((segment) => segment.records);
  const active = before.active.bytes;
  let continued = false;
  for (const segment of [...after.sealed, after.active]) {
    if (segment.n !== undefined && segment.n <= last) {
      // Still there from J0: never changed since (else the writer started again meanwhile).
      if (!known.get(segment.n)?.bytes.equals(segment.bytes)) {
        throw new SnapshotMoved(
          `the journal segment ${segment.n} changed while the store was read`,
        );
      }
      continue;
    }
    if (!continued) {
      // The first file newer than J0's sealed ones must be J0's active journal, grown or sealed.
      // Without sealed segments in J0 the next number is unknown: the first newer segment is then
      // J0's active journal sealed if it starts with its bytes (and, when those were none, the item
      // files are read again: `checkFiles`).
      const sealedNext = segment.n === last + 1 || last === 0;
      if (!(sealedNext || segment.n === undefined) || !startsWith(segment.bytes, active)) {
        throw new SnapshotMoved('the journal was checkpointed while the item files were read');
      }
      continued = true;
      // It starts with J0's bytes (its header and records): only the records after those are new.
      records.push(...segment.records.slice(before.active.records.length));
      continue;
    }
    records.push(...segment.records);
  }
  // A journal emptied by a full checkpoint (or a restore) starts a new generation: its header's salt
  // differs, so J1 no longer starts with J0's bytes. Only a journal that was absent at J0 (never
  // written, or sealed at that instant) leaves no trace: the item files are then read again.
  return { records, checkFiles: active.length === 0 };
}

const startsWith = (bytes: Buffer, prefix: Buffer): boolean =>
  bytes.length >= prefix.length && bytes.subarray(0, prefix.length).equals(prefix);

/**
 * Every item file of `collections`, read as the store reads them: each one's bytes (or its absence)
 * as they were at some instant between the start and the end of the read.
 */
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
        // Removed by the writer since the listing: absent is what this read saw of it.
        if (errorCode(error) === 'ENOENT') continue;
        throw error;
      }
      files.set(`${collection}/${file.fileName}`, data);
    }
  }
  return files;
}

/** The journal's segments, read with the same sealed segments at the start and at the end. */
async function readJournal(fs: PersistenceFileSystem, journalPath: string): Promise<JournalRead> {
  const listed = await listSealedSegments(fs, journalPath);
  const sealed: SegmentRead[] = [];
  let active: SegmentRead = { bytes: Buffer.alloc(0), records: [] };
  for (const { path, n } of [...listed, { path: journalPath, n: undefined }]) {
    let bytes: Buffer;
    try {
      bytes = await readRegularFile(fs, path, Number.MAX_SAFE_INTEGER);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      if (n !== undefined) throw new SnapshotMoved(`${path} was checkpointed while it was read`);
      continue; // no active journal: sealed right now (seen at the listing below), or never written
    }
    const decoded = decodeSegment(bytes, n !== undefined);
    const read = { n, bytes: bytes.subarray(0, decoded.validLength), records: decoded.records };
    if (n === undefined) active = read;
    else sealed.push(read);
  }
  const again = await listSealedSegments(fs, journalPath);
  if (again.length !== listed.length || again.some((s, i) => s.n !== listed[i].n)) {
    throw new SnapshotMoved('the journal was sealed or checkpointed while it was read');
  }
  return { sealed, active };
}
