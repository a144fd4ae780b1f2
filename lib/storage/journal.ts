import { createHash, Hash, randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { atomicWrite } from './atomic-write';
import { errorCode, PersistenceFile, PersistenceFileSystem } from './file-system.interface';
import { fsyncDirectory } from './fs.util';
import { DAMAGED_COPY_INFIX, sealedSegmentNumber } from './on-disk.names';
import { TimeSlicer } from './event-loop.util';
import { readRegularFile } from './safe-read';

/*
 * The write-ahead journal, `<path>/.journal`. A save appends one record and fsyncs the journal once:
 * that is the commit. When it grows past `checkpointBytes` it is sealed: renamed to `.journal.<n>`
 * (n = 1, 2, …; see {@link sealedSegmentPath}) and a new, empty `.journal` takes the next commits,
 * while the sealed segment is written into the item files in the background. Recovery replays the
 * sealed segments in ascending n, then the active one. Record layout (integers little-endian):
 *
 *   offset  size  field
 *   0       4     magic "NPJ" + version 0x02
 *   4       4     payload length P
 *   8       8     first 8 bytes of SHA-256(payload)
 *   16      P     payload: the files' bytes, in order, then the header JSON (H bytes), then H (4)
 *
 * Header JSON: { "ops": [ { "c": collection, "f": file name, "n": byte length, or -1 for a removal } ] }
 *
 * The header is a trailer so that a save can stream each file's bytes into the journal as it
 * serializes them (see {@link Journal.begin}) and list them once it knows them all. Version 0x01
 * records (header length, header JSON, then the files' bytes) are still read.
 *
 * Reading (see {@link decodeRecords}) tells two kinds of bad bytes apart:
 *  - a torn tail: bad bytes with no valid record after them at the end of the active journal, as a
 *    crash during an append leaves (that save was never acknowledged); it is cut off. A sealed
 *    segment has none: bad bytes at its end are damage (see {@link decodeSegment});
 *  - damage in the middle: bad bytes followed by valid records. The records before and after it are
 *    all kept; only the damaged bytes are unreadable. The store copies such a journal aside and
 *    reports it (PERSISTENCE_JOURNAL_DAMAGED).
 */

/** "NPJ": the first three bytes of every record; the fourth is the record version. */
const MAGIC_PREFIX = Buffer.from([0x4e, 0x50, 0x4a]);
/** Version 0x01: the header before the files' bytes (read only). */
const VERSION_HEADER_FIRST = 0x01;
/** Version 0x02: the header as a trailer after the files' bytes (written). */
const VERSION_TRAILER = 0x02;
const RECORD_HEADER = 16;

/**
 * A journal file that committed ops point into. The journal owns it and re-points it when it seals
 * the file (`rotate`), so ops of a sealed segment still find their bytes.
 */
export interface JournalFileRef {
  path: string;
}

/** Where a committed op's bytes are: `length` bytes at `offset` of a journal file. */
export interface JournalSource {
  file: JournalFileRef;
  offset: number;
  length: number;
}

/**
 * One change: a file's new bytes, or its removal (neither `data` nor `source`). A save's ops hold
 * their bytes only until they are in the journal; committed, they keep a `source` into it instead
 * (see {@link readOpData}). Ops read back from the journal (recovery) carry their `data`.
 */
export interface JournalOp {
  collection: string;
  fileName: string;
  data?: Buffer;
  source?: JournalSource;
}

/** True when the op writes a file (false: a removal). */
export const writesFile = (op: JournalOp): boolean => op.data !== undefined || !!op.source;

/** The byte length of what the op writes (-1 for a removal). */
const opLength = (op: JournalOp): number => op.data?.length ?? op.source?.length ?? -1;

/**
 * Reads committed ops' bytes back from the journal files they point into: `read(op)` gives an op's
 * bytes (its `data` when it has them). Each file is opened once; `close()` when done.
 */
export class JournalSourceReader {
  private readonly handles = new Map<string, Promise<PersistenceFile>>();

  constructor(private readonly fs: PersistenceFileSystem) {}

  async read(op: JournalOp): Promise<Buffer | undefined> {
    if (op.data || !op.source) return op.data;
    const { file, offset, length } = op.source;
    let handle = this.handles.get(file.path);
    if (!handle) {
      handle = this.fs.open(file.path, 'read');
      handle.catch(() => undefined);
      this.handles.set(file.path, handle);
    }
    const data = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const read = await (await handle).read(data, done, length - done, offset + done);
      if (read === 0)
        throw new Error(`${file.path} ends before the committed bytes of ${op.fileName}`);
      done += read;
    }
    return data;
  }

  async close(): Promise<void> {
    const handles = [...this.handles.values()];
    this.handles.clear();
    for (const handle of handles) await (await handle.catch(() => undefined))?.close();
  }
}

/** The ops with their bytes in memory (the load overlay needs them; checkpoints read them lazily). */
export async function readOpData(
  fs: PersistenceFileSystem,
  ops: readonly JournalOp[],
): Promise<JournalOp[]> {
  const reader = new JournalSourceReader(fs);
  try {
    const result: JournalOp[] = [];
    for (const op of ops) {
      const data = await reader.read(op);
      result.push(data ? { collection: op.collection, fileName: op.fileName, data } : op);
    }
    return result;
  } finally {
    await reader.close();
  }
}

const checksum = (payload: Uint8Array): Buffer =>
  createHash('sha256').update(payload).digest().subarray(0, 8);

/** The trailer is made in pieces of about this many characters, with yields between them. */
const TRAILER_PIECE_CHARS = 64 * 1024;
/** Longest run of trailer-making before the event loop gets a turn. */
const TRAILER_SLICE_MS = 5;

/** Size of the staging buffer small pieces are gathered in before one write. */
const STAGE_BYTES = 1024 * 1024;

/** The header JSON of a record: every op with its byte length (-1 for a removal). */
function headerOf(ops: readonly JournalOp[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      ops: ops.map((op) => ({ c: op.collection, f: op.fileName, n: opLength(op) })),
    }),
    'utf8',
  );
}

/** The record's trailer: header JSON then its length. */
function trailerOf(ops: readonly JournalOp[]): Buffer {
  const header = headerOf(ops);
  const trailer = Buffer.allocUnsafe(header.length + 4);
  header.copy(trailer, 0);
  trailer.writeUInt32LE(header.length, header.length);
  return trailer;
}

/** The 16-byte record prefix: magic, payload length, first 8 bytes of the payload's SHA-256. */
function recordPrefix(length: number, digest: Buffer, version = VERSION_TRAILER): Buffer {
  const prefix = Buffer.alloc(RECORD_HEADER);
  MAGIC_PREFIX.copy(prefix, 0);
  prefix[3] = version;
  prefix.writeUInt32LE(length, 4);
  digest.copy(prefix, 8, 0, 8);
  return prefix;
}

/**
 * A whole record in one buffer (tests and tools; the journal itself streams it, see `begin`). The ops
 * must carry their `data`. `version` 0x01 writes the old layout, for tests of reading it.
 */
export function encodeRecord(ops: readonly JournalOp[], version = VERSION_TRAILER): Buffer {
  const files = ops.flatMap((op) => (op.data ? [op.data] : []));
  let pieces: Buffer[];
  if (version === VERSION_HEADER_FIRST) {
    const header = headerOf(ops);
    const headerLength = Buffer.alloc(4);
    headerLength.writeUInt32LE(header.length);
    pieces = [headerLength, header, ...files];
  } else {
    pieces = [...files, trailerOf(ops)];
  }
  const payload = Buffer.concat(pieces);
  return Buffer.concat([recordPrefix(payload.length, checksum(payload), version), payload]);
}

/** A byte range of the journal that could not be read, between valid records. */
export interface DamagedRegion {
  offset: number;
  length: number;
}

/** What a journal holds, read past any damage. */
export interface DecodedJournal {
  /** Every valid record, in file order: those before a damaged region and those after it. */
  records: JournalOp[][];
  /** End of the last valid record; the bytes after it (if any) are a torn tail. */
  validLength: number;
  /** Unreadable ranges with valid records after them (damage in the middle), in file order. */
  damaged: DamagedRegion[];
}

/**
 * Reads every valid record of a journal. A record is valid when its magic, a length that fits, its
 * checksum and its payload all check. At a record that is not valid, reading resumes at the next
 * record start, found in this order:
 *  1. the bad record's own frame: when its length leads exactly to a valid record, only the bad
 *     record is lost (its payload, checksum or magic was damaged);
 *  2. otherwise a scan for valid records after it. Bytes inside a payload could look like a record,
 *     so the scan prefers the first record whose chain of contiguous valid records runs to the end
 *     of the file or up to a torn tail (nothing valid after it). A valid record before that one is
 *     kept only when it is anchored: the bad record right after its chain has a frame leading to a
 *     valid record, as a save between two damaged records has.
 * When no valid record follows, the rest is a torn tail (`validLength` marks where it starts).
 */
export function decodeRecords(data: Buffer): DecodedJournal {
  const reader = new RecordReader(data);
  const records: JournalOp[][] = [];
  const damaged: DamagedRegion[] = [];
  let offset = 0;
  for (;;) {
    for (let record = reader.at(offset); record; record = reader.at(offset)) {
      records.push(record.ops);
      offset = record.end;
    }
    if (offset >= data.length) break;
    const next = reader.resync(offset);
    if (next === undefined) break;
    damaged.push({ offset, length: next - offset });
    offset = next;
  }
  return { records, validLength: offset, damaged };
}

interface DecodedRecord {
  ops: JournalOp[];
  end: number;
}

/** Decodes records at any offset of one journal, remembering what it already checked. */
class RecordReader {
  private readonly records = new Map<number, DecodedRecord | null>();
  private readonly chainEnds = new Map<number, number>();

  constructor(private readonly data: Buffer) {}

  /** The valid record starting at `offset`, if there is one. */
  at(offset: number): DecodedRecord | undefined {
    let record = this.records.get(offset);
    if (record === undefined) {
      record = this.decode(offset) ?? null;
      this.records.set(offset, record);
    }
    return record ?? undefined;
  }

  /** Where reading resumes after the bad bytes at `offset`; undefined for a torn tail. */
  resync(offset: number): number | undefined {
    const framed = this.framedEnd(offset);
    if (framed !== undefined) return framed;
    const candidates: number[] = [];
    for (
      let found = this.data.indexOf(MAGIC_PREFIX, offset + 1);
      found !== -1;
      found = this.data.indexOf(MAGIC_PREFIX, found + 1)
    ) {
      if (this.at(found)) candidates.push(found);
    }
    // The chain that runs to the end or to a torn tail. There is one whenever there are candidates:
    // the last candidate's chain qualifies, as nothing valid starts after it.
    const anchor = candidates.find((start) => {
      const end = this.chainEnd(start);
      return end === this.data.length || candidates.every((other) => other < end);
    });
    if (anchor === undefined) return undefined;
    const island = candidates.find((start) => {
      if (start >= anchor) return false;
      const end = this.chainEnd(start);
      if (end > anchor) return false;
      const framed = this.framedEnd(end);
      return framed !== undefined && framed <= anchor;
    });
    return island ?? anchor;
  }

  /** The end of the run of contiguous valid records starting at `offset` (a valid record). */
  private chainEnd(offset: number): number {
    const known = this.chainEnds.get(offset);
    if (known !== undefined) return known;
    const visited: number[] = [];
    let position = offset;
    for (let record = this.at(position); record; record = this.at(position)) {
      visited.push(position);
      position = record.end;
      const after = this.chainEnds.get(position);
      if (after !== undefined) {
        position = after;
        break;
      }
    }
    for (const start of visited) this.chainEnds.set(start, position);
    return position;
  }

  /** The end a bad record's own length gives, when a valid record starts exactly there. */
  private framedEnd(offset: number): number | undefined {
    if (offset + RECORD_HEADER > this.data.length) return undefined;
    const end = offset + RECORD_HEADER + this.data.readUInt32LE(offset + 4);
    return end < this.data.length && this.at(end) ? end : undefined;
  }

  private decode(offset: number): DecodedRecord | undefined {
    const data = this.data;
    if (offset + RECORD_HEADER > data.length) return undefined;
    if (!data.subarray(offset, offset + 3).equals(MAGIC_PREFIX)) return undefined;
    const version = data[offset + 3];
    if (version !== VERSION_HEADER_FIRST && version !== VERSION_TRAILER) return undefined;
    const end = offset + RECORD_HEADER + data.readUInt32LE(offset + 4);
    if (end > data.length) return undefined;
    const payload = data.subarray(offset + RECORD_HEADER, end);
    if (!checksum(payload).equals(data.subarray(offset + 8, offset + 16))) return undefined;
    const ops = parsePayload(payload, version);
    return ops ? { ops, end } : undefined;
  }
}

/** The operations of a payload, or undefined unless it is exactly a header and the files it lists. */
function parsePayload(payload: Buffer, version: number): JournalOp[] | undefined {
  try {
    if (payload.length < 4) return undefined;
    const trailer = version === VERSION_TRAILER;
    const headerLength = payload.readUInt32LE(trailer ? payload.length - 4 : 0);
    if (4 + headerLength > payload.length) return undefined;
    const headerStart = trailer ? payload.length - 4 - headerLength : 4;
    const header = JSON.parse(
      payload.subarray(headerStart, headerStart + headerLength).toString('utf8'),
    ) as { ops?: unknown };
    if (!Array.isArray(header.ops)) return undefined;
    let position = trailer ? 0 : 4 + headerLength;
    const filesEnd = trailer ? headerStart : payload.length;
    const ops: JournalOp[] = [];
    for (const op of header.ops as Array<{ c?: unknown; f?: unknown; n?: unknown }>) {
      if (typeof op?.c !== 'string' || typeof op.f !== 'string') return undefined;
      if (!Number.isSafeInteger(op.n) || (op.n as number) < -1) return undefined;
      const length = op.n as number;
      if (length < 0) {
        ops.push({ collection: op.c, fileName: op.f });
        continue;
      }
      if (position + length > filesEnd) return undefined;
      ops.push({
        collection: op.c,
        fileName: op.f,
        data: Buffer.from(payload.subarray(position, position + length)),
      });
      position += length;
    }
    return position === filesEnd ? ops : undefined;
  } catch {
    return undefined;
  }
}

/** A sealed segment on disk. */
export interface SealedSegment {
  n: number;
  path: string;
}

/** The sealed segments beside the journal at `activePath`, oldest (lowest n) first. */
export async function listSealedSegments(
  fs: PersistenceFileSystem,
  activePath: string,
): Promise<SealedSegment[]> {
  let entries;
  try {
    entries = await fs.readdir(dirname(activePath));
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
  const found: SealedSegment[] = [];
  for (const entry of entries) {
    const n = entry.type === 'file' ? sealedSegmentNumber(activePath, entry.name) : undefined;
    if (n !== undefined) found.push({ n, path: join(dirname(activePath), entry.name) });
  }
  return found.sort((a, b) => a.n - b.n);
}

/** One journal file as read: its records, its damage and its torn tail. */
export interface DecodedSegment extends DecodedJournal {
  /** Bytes after the last valid record with nothing valid after them (0 for a sealed segment). */
  tornTailBytes: number;
}

/**
 * Judges one journal file, for the start and for `verify` alike. In the active journal, bad bytes
 * with no valid record after them are a torn tail (a crash during an append). A sealed segment was
 * complete when it was sealed (it is renamed only after its last commit) and is never written again,
 * so bad bytes at its end are damage too: committed saves were lost there.
 */
export function decodeSegment(bytes: Buffer, sealed: boolean): DecodedSegment {
  const decoded = decodeRecords(bytes);
  const tail = bytes.length - decoded.validLength;
  if (!sealed || tail === 0) return { ...decoded, tornTailBytes: tail };
  return {
    records: decoded.records,
    validLength: bytes.length,
    damaged: [...decoded.damaged, { offset: decoded.validLength, length: tail }],
    tornTailBytes: 0,
  };
}

const damageOf = (damaged: readonly DamagedRegion[], copyPath: string): JournalDamage => ({
  copyPath,
  regions: [...damaged],
  unreadableBytes: damaged.reduce((sum, region) => sum + region.length, 0),
});

/**
 * Reads a sealed segment (never changed: it is removed whole once checkpointed). Damage anywhere in
 * it, its end included (see {@link decodeSegment}), is copied aside as for the active journal.
 */
export async function readSealedSegment(
  fs: PersistenceFileSystem,
  path: string,
  fileMode: number,
): Promise<JournalContents> {
  const bytes = await readRegularFile(fs, path, Number.MAX_SAFE_INTEGER);
  const { records, damaged } = decodeSegment(bytes, true);
  const damage =
    damaged.length > 0 ? damageOf(damaged, await copyAside(fs, path, bytes, fileMode)) : undefined;
  return { records, tornTailBytes: 0, damage };
}

/** A journal file read by {@link readAllSegments}. */
export interface ReadSegment extends DecodedSegment {
  path: string;
  sealed: boolean;
}

/**
 * Every journal file, the sealed segments (in order) then the active journal, each judged by
 * {@link decodeSegment}, read without changing anything (read-only stores, the CLI). A missing
 * active journal is left out.
 */
export async function readAllSegments(
  fs: PersistenceFileSystem,
  activePath: string,
): Promise<ReadSegment[]> {
  const paths = [
    ...(await listSealedSegments(fs, activePath)).map((s) => ({ path: s.path, sealed: true })),
    { path: activePath, sealed: false },
  ];
  const segments: ReadSegment[] = [];
  for (const { path, sealed } of paths) {
    let data: Buffer;
    try {
      data = await readRegularFile(fs, path, Number.MAX_SAFE_INTEGER);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      throw error;
    }
    segments.push({ path, sealed, ...decodeSegment(data, sealed) });
  }
  return segments;
}

/** Writes `bytes` to a new `<journal>.damaged-<time>-<random>` beside it, never over a file. */
async function copyAside(
  fs: PersistenceFileSystem,
  journalPath: string,
  bytes: Buffer,
  fileMode: number,
): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (;;) {
    const target = join(
      dirname(journalPath),
      `${basename(journalPath)}${DAMAGED_COPY_INFIX}${stamp}-${randomBytes(4).toString('hex')}`,
    );
    const taken = await fs.lstat(target).then(
      () => true,
      (error: unknown) => {
        if (errorCode(error) === 'ENOENT') return false;
        throw error;
      },
    );
    if (taken) continue;
    await atomicWrite(fs, target, bytes, { mode: fileMode });
    return target;
  }
}

/** Valid records before and after damage were kept, and the whole journal was copied aside. */
export interface JournalDamage {
  /** The copy of the whole damaged journal, as it was found. */
  copyPath: string;
  /** The unreadable ranges, each followed by valid records. */
  regions: DamagedRegion[];
  /** Total bytes of those ranges. */
  unreadableBytes: number;
}

/** What {@link Journal.open} found. */
export interface JournalContents {
  /** Every valid record, in order, those after a damaged region included. */
  records: JournalOp[][];
  /** Bytes cut off the end: a save interrupted by a crash, never acknowledged. 0 when none. */
  tornTailBytes: number;
  /** Set when valid records followed unreadable bytes. */
  damage?: JournalDamage;
}

/** The journal file, kept open while the store is. */
export class Journal {
  private handle?: PersistenceFile;
  private length = 0;
  /** The active file, as committed ops point into it (re-pointed when it is sealed). */
  private file: JournalFileRef;
  /** False after a rotation until the new journal's name is fsynced into the folder. */
  private created = true;
  /** The journal opened for durable writes (O_DSYNC), beside `handle`, when the platform has it. */
  private synced?: PersistenceFile;

  constructor(
    private readonly fs: PersistenceFileSystem,
    readonly path: string,
    private readonly fileMode: number,
  ) {
    this.file = { path };
  }

  /** Bytes of committed records not yet checkpointed. */
  get size(): number {
    return this.length;
  }

  /**
   * Opens (creating if needed) the journal and returns its valid records, those after a damaged
   * region included. When valid records follow unreadable bytes (damage, not a crash), the whole
   * journal is first copied aside, never over an existing file. A torn tail is then cut off, so the
   * next append starts right after the last valid record.
   */
  async open(): Promise<JournalContents> {
    await this.closeHandles(); // opened again (never twice at once)
    this.handle = await this.fs.open(this.path, 'append', this.fileMode);
    this.synced = await this.openSynced();
    this.file = { path: this.path };
    const { size } = await this.handle.stat();
    const data = Buffer.alloc(size);
    let offset = 0;
    while (offset < size) {
      const read = await this.handle.read(data, offset, size - offset, offset);
      if (read === 0) break;
      offset += read;
    }
    const bytes = data.subarray(0, offset);
    const { records, validLength, damaged } = decodeSegment(bytes, false);
    const damage =
      damaged.length > 0
        ? damageOf(damaged, await copyAside(this.fs, this.path, bytes, this.fileMode))
        : undefined;
    if (validLength !== size) {
      await this.handle.truncate(validLength);
      await this.handle.sync();
    }
    this.length = validLength;
    return { records, tornTailBytes: size - validLength, damage };
  }

  /**
   * Appends one record and fsyncs: when this resolves, the record is committed. The ops' bytes are
   * handed over: each op with `data` keeps a `source` into the journal instead (see {@link begin}).
   */
  async append(ops: readonly JournalOp[]): Promise<number> {
    const session = this.begin();
    try {
      for (const op of ops) await session.add(op);
    } catch (error) {
      await session.abort();
      throw error;
    }
    return session.commit();
  }

  /**
   * Starts appending one record whose files' bytes are written as they are added, so a save never
   * holds them all: `add` each op (its `data` is written, then dropped for a `source` into this
   * journal), then `commit` (the single sync). A record that fits in the staging buffer is written
   * in one write at the commit; a larger one streams its payload and writes the prefix (magic,
   * length, checksum) last. Either way the record exists for a reader only once a whole payload
   * matches its checksum; a failed or aborted append cuts the journal back to its last record. One
   * append at a time.
   *
   * @param beforeAcknowledge runs alongside the commit's sync (the two overlap in the thread pool);
   *   when it throws, the commit fails and is cut back off the journal. The store checks there that
   *   its folder still exists.
   */
  begin(beforeAcknowledge?: () => Promise<void>): JournalAppend {
    return new JournalAppend(
      () => this.reopened(),
      async () => {
        await this.reopened();
        return this.synced;
      },
      this.file,
      this.length,
      (length) => (this.length += length),
      beforeAcknowledge,
    );
  }

  /**
   * Seals the journal: renames it to `sealedPath` and starts a new, empty one, then fsyncs the folder
   * so both names are durable before the next commit. Resolves true once the rename is done (the
   * records are then in `sealedPath`), false when the journal was not renamed. When the new journal
   * cannot be created here, the next append creates it (and fsyncs the folder) before committing.
   */
  async rotate(sealedPath: string): Promise<boolean> {
    await this.closeHandles();
    try {
      await this.fs.rename(this.path, sealedPath);
    } catch (error) {
      await this.reopened().catch(() => undefined);
      throw error;
    }
    // Ops committed into the journal now find their bytes in the sealed segment.
    this.file.path = sealedPath;
    this.file = { path: this.path };
    this.length = 0;
    this.created = false;
    await this.reopened().catch(() => undefined);
    return true;
  }

  /** Empties the journal once every record is checkpointed into the item files. */
  async reset(): Promise<void> {
    const handle = await this.reopened();
    await handle.truncate(0);
    await handle.sync();
    this.length = 0;
  }

  async close(): Promise<void> {
    await this.closeHandles();
  }

  private async closeHandles(): Promise<void> {
    const synced = this.synced;
    this.synced = undefined;
    await synced?.close().catch(() => undefined);
    await this.handle?.close();
    this.handle = undefined;
  }

  /**
   * A second handle on the journal whose writes are durable when they resolve, where the file system
   * has them (see `PersistenceFileSystem.openSyncedAppend`); `undefined` elsewhere, and when it
   * cannot be opened: the commit then writes and syncs.
   */
  private async openSynced(): Promise<PersistenceFile | undefined> {
    if (!this.fs.openSyncedAppend) return undefined;
    return this.fs.openSyncedAppend(this.path, this.fileMode).catch(() => undefined);
  }

  /**
   * The open journal. After a rotation whose new journal could not be created, creates it now and
   * fsyncs the folder, so a commit never goes into a file whose name is not durable.
   */
  private async reopened(): Promise<PersistenceFile> {
    if (this.handle) return this.handle;
    const handle = await this.fs.open(this.path, 'append', this.fileMode);
    try {
      if (!this.created) {
        await fsyncDirectory(this.fs, dirname(this.path));
        this.created = true;
      }
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    this.handle = handle;
    this.synced = await this.openSynced();
    return handle;
  }
}

/** Where a {@link JournalAppend} can return to (see `savepoint`). */
interface AppendState {
  ops: number;
  written: number;
  hash: Hash;
  /** Bytes staged then, the last of `written`. */
  staged: number;
  /** Writes started before then. */
  writes: number;
}

/**
 * One record being appended (see {@link Journal.begin}). Small pieces are gathered in a staging
 * buffer (two, alternating); at most one write is in flight while the caller prepares the next
 * piece, so serializing overlaps with writing and only a few files' bytes are alive at once.
 */
export class JournalAppend {
  private readonly ops: JournalOp[] = [];
  private hash = createHash('sha256');
  private handle?: PersistenceFile;
  private stages: [Buffer, Buffer] | undefined;
  private staged = 0;
  /** Payload bytes added so far (written or staged). */
  private written = 0;
  /** Highest payload byte count that may have reached the file. */
  private touched = 0;
  /** True once anything was written: an abort cuts the file back. */
  private dirty = false;
  private inFlight: Promise<void> = Promise.resolve();
  /** Writes started (see `rollback`). */
  private writes = 0;
  private saved?: AppendState;
  private done = false;

  constructor(
    private readonly open: () => Promise<PersistenceFile>,
    private readonly openSynced: () => Promise<PersistenceFile | undefined>,
    private readonly file: JournalFileRef,
    private readonly start: number,
    private readonly committed: (length: number) => void,
    private readonly beforeAcknowledge?: () => Promise<void>,
  ) {}

  /** Number of ops added. */
  get size(): number {
    return this.ops.length;
  }

  /** Adds an op; a file's bytes are written (or staged) now and the op keeps a `source` for them. */
  async add(op: JournalOp): Promise<void> {
    const data = op.data;
    this.ops.push(op);
    if (!data) return;
    op.source = { file: this.file, offset: this.payloadStart + this.written, length: data.length };
    op.data = undefined;
    await this.put(data);
  }

  /** Remembers the record as it is, for `rollback` (staged bytes stay staged: no write). */
  savepoint(): Promise<void> {
    this.saved = {
      ops: this.ops.length,
      written: this.written,
      hash: this.hash.copy(),
      staged: this.staged,
      writes: this.writes,
    };
    return Promise.resolve();
  }

  /** Drops what was added since the last `savepoint` (all of it without one). */
  async rollback(): Promise<void> {
    await this.settle();
    const saved = this.saved ?? {
      ops: 0,
      written: 0,
      hash: createHash('sha256'),
      staged: 0,
      writes: 0,
    };
    this.ops.length = saved.ops;
    this.written = saved.written;
    this.hash = saved.hash.copy();
    if (this.writes === saved.writes) {
      // Nothing was written since: the staging buffer still holds the bytes staged then.
      this.staged = saved.staged;
      return;
    }
    // A write since then wrote every byte up to the savepoint (a write takes the whole stage):
    // cut the file back to it.
    this.staged = 0;
    if (this.touched > saved.written) {
      await (await this.writer()).truncate(this.payloadStart + saved.written);
      this.touched = saved.written;
    }
  }

  /**
   * Writes the trailer and the prefix (with the staged payload, when it is all staged), then
   * fdatasyncs: the commit. Resolves the record's length.
   */
  async commit(): Promise<number> {
    if (this.ops.length === 0) {
      await this.abort();
      return 0;
    }
    try {
      await this.putTrailer();
      const handle = await this.writer();
      const prefix = recordPrefix(this.written, this.hash.digest());
      // Runs beside the write that makes the record durable; observed once that write settled.
      const alongside = (durable: Promise<void>): Promise<void> => {
        const checked = this.beforeAcknowledge?.();
        checked?.catch(() => undefined);
        return durable.then(() => checked);
      };
      if (!this.dirty && this.stages && this.staged === this.written) {
        // The whole record is staged: one write, prefix first (one trip to the thread pool fewer,
        // which is one turn of a busy event loop fewer). Its checksum makes a torn write a torn tail.
        const record = Buffer.allocUnsafe(RECORD_HEADER + this.staged);
        prefix.copy(record, 0);
        this.stages[0].copy(record, RECORD_HEADER, 0, this.staged);
        this.staged = 0;
        this.dirty = true;
        this.touched = this.written;
        const synced = await this.openSynced();
        if (synced) {
          // O_DSYNC: the write returns once the record and the journal's new size are on disk,
          // as write + fdatasync would leave them. Nothing else of this record was written, and
          // every record before it was made durable by its own commit: that one write is the
          // whole commit, one trip to the thread pool.
          await alongside(synced.write(record, this.start));
        } else {
          await handle.write(record, this.start);
          await alongside(datasync(handle));
        }
      } else {
        await this.flushStage();
        await this.inFlight;
        await handle.write(prefix, this.start);
        // A streamed record's payload went through the other handle: sync all of it.
        await alongside(datasync(handle));
      }
    } catch (error) {
      await this.abort();
      throw error;
    }
    this.done = true;
    this.committed(RECORD_HEADER + this.written);
    return RECORD_HEADER + this.written;
  }

  /** Gives up the record: cuts back whatever part of it reached the file. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.settle();
    if (this.dirty && this.handle) await this.handle.truncate(this.start).catch(() => undefined);
  }

  /**
   * Puts the trailer (the header JSON, then its length): the bytes of `trailerOf(ops)`, made and
   * put in pieces of about 64 KiB with a chance for the event loop between them when the slice is
   * used up (a full save of the large tier lists 25,000 ops).
   */
  private async putTrailer(): Promise<void> {
    const slicer = new TimeSlicer(TRAILER_SLICE_MS);
    let length = 0;
    const piece = (text: string): Promise<void> => {
      const bytes = Buffer.from(text, 'utf8');
      length += bytes.length;
      return this.put(bytes);
    };
    let text = '{"ops":[';
    for (let i = 0; i < this.ops.length; i++) {
      const op = this.ops[i];
      text += `${i > 0 ? ',' : ''}${JSON.stringify({ c: op.collection, f: op.fileName, n: opLength(op) })}`;
      if (text.length >= TRAILER_PIECE_CHARS) {
        await piece(text);
        text = '';
        const wait = slicer.yieldIfDue();
        if (wait) await wait;
      }
    }
    await piece(`${text}]}`);
    const tail = Buffer.allocUnsafe(4);
    tail.writeUInt32LE(length);
    await this.put(tail);
  }

  private get payloadStart(): number {
    return this.start + RECORD_HEADER;
  }

  private async put(data: Buffer): Promise<void> {
    if (this.done) throw new Error('This journal append is finished.');
    this.hash.update(data);
    this.stages ??= [Buffer.allocUnsafe(STAGE_BYTES), Buffer.allocUnsafe(STAGE_BYTES)];
    if (data.length >= STAGE_BYTES) {
      await this.flushStage();
      await this.write(data, this.written);
    } else {
      if (this.staged + data.length > STAGE_BYTES) await this.flushStage();
      data.copy(this.stages[0], this.staged);
      this.staged += data.length;
    }
    this.written += data.length;
  }

  private async flushStage(): Promise<void> {
    if (this.staged === 0 || !this.stages) return;
    const [full, next] = this.stages;
    const length = this.staged;
    this.staged = 0;
    // The other buffer's write is done once `write` has waited for the one in flight.
    await this.write(full.subarray(0, length), this.written - length);
    this.stages = [next, full];
  }

  /** Starts writing `data` at payload offset `at` once the previous write is done. */
  private async write(data: Buffer, at: number): Promise<void> {
    this.writes++;
    await this.inFlight;
    const handle = await this.writer();
    this.touched = Math.max(this.touched, at + data.length);
    this.dirty = true;
    this.inFlight = handle.write(data, this.payloadStart + at);
    this.inFlight.catch(() => undefined); // observed by the next write or the commit
  }

  /** Waits for the write in flight, whatever its outcome. */
  private async settle(): Promise<void> {
    await this.inFlight.catch(() => undefined);
    this.inFlight = Promise.resolve();
  }

  private async writer(): Promise<PersistenceFile> {
    this.handle ??= await this.open();
    return this.handle;
  }
}

/**
 * fdatasync where the file has it, else fsync. fdatasync is enough for the journal: it makes the
 * bytes and the new size durable, and nothing else about the journal (its mode is set when it is
 * created, its times are never read) changes at a commit.
 */
function datasync(handle: PersistenceFile): Promise<void> {
  return handle.datasync ? handle.datasync() : handle.sync();
}
