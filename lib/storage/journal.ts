import { createHash, randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { atomicWrite } from './atomic-write';
import { TimeSlicer } from './event-loop.util';
import { errorCode, PersistenceFile, PersistenceFileSystem } from './file-system.interface';
import { fsyncDirectory } from './fs.util';
import { readRegularFile } from './safe-read';

/*
 * The write-ahead journal, `<path>/.journal`. A save appends one record and fsyncs the journal once:
 * that is the commit. When it grows past `checkpointBytes` it is sealed: renamed to `.journal.<n>`
 * (n = 1, 2, …; see {@link sealedSegmentPath}) and a new, empty `.journal` takes the next commits,
 * while the sealed segment is written into the item files in the background. Recovery replays the
 * sealed segments in ascending n, then the active one. Record layout (integers little-endian):
 *
 *   offset  size  field
 *   0       4     magic "NPJ" + version 0x01
 *   4       4     payload length P
 *   8       8     first 8 bytes of SHA-256(payload)
 *   16      P     payload: header length H (4) + header JSON (H bytes) + the files' bytes, in order
 *
 * Header JSON: { "ops": [ { "c": collection, "f": file name, "n": byte length, or -1 for a removal } ] }
 *
 * Reading (see {@link decodeRecords}) tells two kinds of bad bytes apart:
 *  - a torn tail: bad bytes with no valid record after them, as a crash during an append leaves
 *    (that save was never acknowledged); it is cut off;
 *  - damage in the middle: bad bytes followed by valid records. The records before and after it are
 *    all kept; only the damaged bytes are unreadable. The store copies such a journal aside and
 *    reports it (PERSISTENCE_JOURNAL_DAMAGED).
 */

const MAGIC = Buffer.from([0x4e, 0x50, 0x4a, 0x01]);
const RECORD_HEADER = 16;

/** One change: a file's new bytes, or its removal (`data` undefined). */
export interface JournalOp {
  collection: string;
  fileName: string;
  data?: Buffer;
}

const checksum = (payload: Uint8Array): Buffer =>
  createHash('sha256').update(payload).digest().subarray(0, 8);

/** Size of the staging buffer small pieces are gathered in before one write. */
const STAGE_BYTES = 1024 * 1024;

/** Longest stretch of hashing and copying between two yields to the event loop, in ms. */
const SLICE_MS = 5;

/** A record's payload as pieces (header, then each file's bytes), with its total length. */
function recordPieces(ops: readonly JournalOp[]): { pieces: Buffer[]; length: number } {
  const header = Buffer.from(
    JSON.stringify({
      ops: ops.map((op) => ({
        c: op.collection,
        f: op.fileName,
        n: op.data ? op.data.length : -1,
      })),
    }),
    'utf8',
  );
  const headerLength = Buffer.alloc(4);
  headerLength.writeUInt32LE(header.length);
  const pieces = [headerLength, header, ...ops.flatMap((op) => (op.data ? [op.data] : []))];
  return { pieces, length: pieces.reduce((sum, piece) => sum + piece.length, 0) };
}

/** The 16-byte record prefix: magic, payload length, first 8 bytes of the payload's SHA-256. */
function recordPrefix(length: number, digest: Buffer): Buffer {
  const prefix = Buffer.alloc(RECORD_HEADER);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(length, 4);
  digest.copy(prefix, 8, 0, 8);
  return prefix;
}

/** A whole record in one buffer (tests and tools; the journal itself streams it, see `append`). */
export function encodeRecord(ops: readonly JournalOp[]): Buffer {
  const { pieces, length } = recordPieces(ops);
  const hash = createHash('sha256');
  for (const piece of pieces) hash.update(piece);
  return Buffer.concat([recordPrefix(length, hash.digest()), ...pieces]);
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
      let found = this.data.indexOf(MAGIC, offset + 1);
      found !== -1;
      found = this.data.indexOf(MAGIC, found + 1)
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
    if (!data.subarray(offset, offset + 4).equals(MAGIC)) return undefined;
    const end = offset + RECORD_HEADER + data.readUInt32LE(offset + 4);
    if (end > data.length) return undefined;
    const payload = data.subarray(offset + RECORD_HEADER, end);
    if (!checksum(payload).equals(data.subarray(offset + 8, offset + 16))) return undefined;
    const ops = parsePayload(payload);
    return ops ? { ops, end } : undefined;
  }
}

/** The operations of a payload, or undefined unless it is exactly a header and the files it lists. */
function parsePayload(payload: Buffer): JournalOp[] | undefined {
  try {
    const headerLength = payload.readUInt32LE(0);
    if (4 + headerLength > payload.length) return undefined;
    const header = JSON.parse(payload.subarray(4, 4 + headerLength).toString('utf8')) as {
      ops?: unknown;
    };
    if (!Array.isArray(header.ops)) return undefined;
    let position = 4 + headerLength;
    const ops: JournalOp[] = [];
    for (const op of header.ops as Array<{ c?: unknown; f?: unknown; n?: unknown }>) {
      if (typeof op?.c !== 'string' || typeof op.f !== 'string') return undefined;
      if (!Number.isSafeInteger(op.n) || (op.n as number) < -1) return undefined;
      const length = op.n as number;
      if (length < 0) {
        ops.push({ collection: op.c, fileName: op.f });
        continue;
      }
      if (position + length > payload.length) return undefined;
      ops.push({
        collection: op.c,
        fileName: op.f,
        data: Buffer.from(payload.subarray(position, position + length)),
      });
      position += length;
    }
    return position === payload.length ? ops : undefined;
  } catch {
    return undefined;
  }
}

/** The path of the sealed segment number `n` of the journal at `activePath`: `<activePath>.<n>`. */
export function sealedSegmentPath(activePath: string, n: number): string {
  return `${activePath}.${n}`;
}

/** The number of a sealed segment's file name, or undefined when `name` is not one. */
export function sealedSegmentNumber(activePath: string, name: string): number | undefined {
  const prefix = `${basename(activePath)}.`;
  if (!name.startsWith(prefix)) return undefined;
  const digits = name.slice(prefix.length);
  if (!/^[1-9][0-9]{0,14}$/.test(digits)) return undefined;
  return Number(digits);
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

/**
 * Reads a sealed segment (never changed: it is removed whole once checkpointed). A torn tail is
 * ignored; damage in the middle is copied aside as for the active journal.
 */
export async function readSealedSegment(
  fs: PersistenceFileSystem,
  path: string,
  fileMode: number,
): Promise<JournalContents> {
  const bytes = await readRegularFile(fs, path, Number.MAX_SAFE_INTEGER);
  const { records, validLength, damaged } = decodeRecords(bytes);
  let damage: JournalDamage | undefined;
  if (damaged.length > 0) {
    damage = {
      copyPath: await copyAside(fs, path, bytes, fileMode),
      regions: damaged,
      unreadableBytes: damaged.reduce((sum, region) => sum + region.length, 0),
    };
  }
  return { records, tornTailBytes: bytes.length - validLength, damage };
}

/**
 * Every complete record of the sealed segments (in order) then of the active journal, read without
 * changing anything (read-only stores, the CLI). `bytes`: valid bytes; `tornBytes`: torn tails.
 */
export async function readAllSegments(
  fs: PersistenceFileSystem,
  activePath: string,
): Promise<{ records: JournalOp[][]; bytes: number; tornBytes: number; damaged: DamagedRegion[] }> {
  const paths = [...(await listSealedSegments(fs, activePath)).map((s) => s.path), activePath];
  const all = {
    records: [] as JournalOp[][],
    bytes: 0,
    tornBytes: 0,
    damaged: [] as DamagedRegion[],
  };
  for (const path of paths) {
    let data: Buffer;
    try {
      data = await readRegularFile(fs, path, Number.MAX_SAFE_INTEGER);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      throw error;
    }
    const { records, validLength, damaged } = decodeRecords(data);
    all.records.push(...records);
    all.bytes += validLength;
    all.tornBytes += data.length - validLength;
    all.damaged.push(...damaged);
  }
  return all;
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

/** Between the journal's name and the time in the name of a damaged journal's copy. */
export const DAMAGED_COPY_INFIX = '.damaged-';

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
  /** False after a rotation until the new journal's name is fsynced into the folder. */
  private created = true;

  constructor(
    private readonly fs: PersistenceFileSystem,
    readonly path: string,
    private readonly fileMode: number,
  ) {}

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
    this.handle = await this.fs.open(this.path, 'append', this.fileMode);
    const { size } = await this.handle.stat();
    const data = Buffer.alloc(size);
    let offset = 0;
    while (offset < size) {
      const read = await this.handle.read(data, offset, size - offset, offset);
      if (read === 0) break;
      offset += read;
    }
    const bytes = data.subarray(0, offset);
    const { records, validLength, damaged } = decodeRecords(bytes);
    let damage: JournalDamage | undefined;
    if (damaged.length > 0) {
      damage = {
        copyPath: await copyAside(this.fs, this.path, bytes, this.fileMode),
        regions: damaged,
        unreadableBytes: damaged.reduce((sum, region) => sum + region.length, 0),
      };
    }
    if (validLength !== size) {
      await this.handle.truncate(validLength);
      await this.handle.sync();
    }
    this.length = validLength;
    return { records, tornTailBytes: size - validLength, damage };
  }

  /**
   * Appends one record and fsyncs: when this resolves, the record is committed. The payload is written
   * first and the prefix (magic, length, checksum) last, so until then the record does not exist for
   * a reader.
   */
  async append(ops: readonly JournalOp[]): Promise<number> {
    const { pieces, length } = recordPieces(ops);
    const handle = await this.reopened();
    const hash = createHash('sha256');
    const slicer = new TimeSlicer(SLICE_MS);
    // Small pieces are gathered in one staging buffer, reused once its write is done; large ones
    // are written as they are. The record is never copied whole: memory stays flat whatever its size.
    const stage = Buffer.allocUnsafe(Math.min(STAGE_BYTES, length));
    let staged = 0;
    let position = this.length + RECORD_HEADER;
    const flush = async (): Promise<void> => {
      if (staged === 0) return;
      await handle.write(stage.subarray(0, staged), position);
      position += staged;
      staged = 0;
    };
    try {
      for (const piece of pieces) {
        hash.update(piece);
        if (piece.length >= stage.length) {
          await flush();
          await handle.write(piece, position);
          position += piece.length;
        } else {
          if (staged + piece.length > stage.length) await flush();
          piece.copy(stage, staged);
          staged += piece.length;
        }
        const wait = slicer.yieldIfDue();
        if (wait) await wait;
      }
      await flush();
      await handle.write(recordPrefix(length, hash.digest()), this.length);
      await handle.sync();
    } catch (error) {
      // Cut back whatever part of the record reached the file; reading would ignore it anyway.
      await handle.truncate(this.length).catch(() => undefined);
      throw error;
    }
    this.length += RECORD_HEADER + length;
    return RECORD_HEADER + length;
  }

  /**
   * Seals the journal: renames it to `sealedPath` and starts a new, empty one, then fsyncs the folder
   * so both names are durable before the next commit. Resolves true once the rename is done (the
   * records are then in `sealedPath`), false when the journal was not renamed. When the new journal
   * cannot be created here, the next append creates it (and fsyncs the folder) before committing.
   */
  async rotate(sealedPath: string): Promise<boolean> {
    await this.handle?.close();
    this.handle = undefined;
    try {
      await this.fs.rename(this.path, sealedPath);
    } catch (error) {
      await this.reopened().catch(() => undefined);
      throw error;
    }
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
    await this.handle?.close();
    this.handle = undefined;
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
    return handle;
  }
}
