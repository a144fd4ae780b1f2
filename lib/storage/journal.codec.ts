import { createHash, randomBytes } from 'node:crypto';

/*
 * The write-ahead journal, `<path>/.journal`. A save appends one record and fsyncs the journal once:
 * that is the commit. When it grows past `checkpointBytes` it is sealed: renamed to `.journal.<n>`
 * (n = 1, 2, …; see {@link sealedSegmentPath}) and a new `.journal` takes the next commits, while
 * the sealed segment is written into the item files in the background. Recovery replays the sealed
 * segments in ascending n, then the active one. Layout (integers little-endian):
 *
 * File header, at offset 0 of every journal file, fsynced before any record is written:
 *   0       4     magic "NPJH"
 *   4       4     format version (3)
 *   8       8     salt: random, chosen anew whenever the file is created or emptied (its generation)
 *   16      8     first 8 bytes of SHA-256(bytes 0..16)
 *
 * Record:
 *   0       4     magic "NPJ" + 0x03
 *   4       4     payload length P
 *   8       8     first 8 bytes of SHA-256(salt, sequence, payload)
 *   16      8     salt of the generation it was written in
 *   24      4     sequence number in that generation (the first record is 1)
 *   28      P     payload: the files' bytes, in order, then the header JSON (H bytes), then H (4)
 *
 * Header JSON: { "ops": [ { "c": collection, "f": file name, "n": byte length, or -1 for a removal } ] }
 *
 * The header JSON is a trailer so that a save can stream each file's bytes into the journal as it
 * serializes them (see {@link Journal.begin}) and list them once it knows them all.
 *
 * Reading (see {@link decodeRecords}) follows one rule: replay the chain of the header's salt, records
 * 1, 2, 3, … in file order. A record of another salt is bytes of an earlier generation (a truncate
 * that did not reach the disk, stale blocks a file system exposes after a crash, a reused file): it
 * is never replayed, wherever it sits. Where the chain breaks, the next record of the same salt with
 * a higher sequence number, if there is one, resumes it: the bytes between (or the sequence numbers
 * skipped) are damage, reported (PERSISTENCE_JOURNAL_DAMAGED), the records after replayed. With no
 * such record, the rest is a torn tail, as a crash during an append leaves (that save was never
 * acknowledged): it is cut off. A sealed segment has no torn tail (see {@link decodeSegment}).
 */

/** "NPJH": the first four bytes of every journal file. */
const FILE_MAGIC = Buffer.from([0x4e, 0x50, 0x4a, 0x48]);
/** The journal format this code writes and reads; earlier ones are refused (see `unsupportedVersion`). */
export const JOURNAL_FORMAT_VERSION = 3;
/** The record magic: "NPJ" then the record version. */
const RECORD_MAGIC = Buffer.from([0x4e, 0x50, 0x4a, 0x03]);
/** The first three bytes of a record of any format (formats 1 and 2 had no file header). */
const RECORD_MAGIC_PREFIX = RECORD_MAGIC.subarray(0, 3);
const SALT_BYTES = 8;
/** Size of the file header. */
export const JOURNAL_HEADER_BYTES = 24;
/** Size of a record's prefix (magic, length, checksum, salt, sequence number). */
export const RECORD_HEADER = 28;

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
export const opLength = (op: JournalOp): number => op.data?.length ?? op.source?.length ?? -1;

/** The first 8 bytes of SHA-256 over the pieces. */
const checksum = (...pieces: Uint8Array[]): Buffer => {
  const hash = createHash('sha256');
  for (const piece of pieces) hash.update(piece);
  return hash.digest().subarray(0, 8);
};

/** A new generation's salt (see the file header). */
export const newSalt = (): Buffer => randomBytes(SALT_BYTES);

/** The salt and sequence number as the checksum covers them, before the payload. */
export function chainBytes(salt: Buffer, sequence: number): Buffer {
  const bytes = Buffer.alloc(SALT_BYTES + 4);
  salt.copy(bytes, 0, 0, SALT_BYTES);
  bytes.writeUInt32LE(sequence, SALT_BYTES);
  return bytes;
}

/** The file header of a journal file of generation `salt`. */
export function encodeJournalHeader(salt: Buffer): Buffer {
  const header = Buffer.alloc(JOURNAL_HEADER_BYTES);
  FILE_MAGIC.copy(header, 0);
  header.writeUInt32LE(JOURNAL_FORMAT_VERSION, 4);
  salt.copy(header, 8, 0, SALT_BYTES);
  checksum(header.subarray(0, 16)).copy(header, 16);
  return header;
}

/** What the first bytes of a journal file say: its salt, or the format it is in when not ours. */
type FileHeader = { salt: Buffer } | { unsupportedVersion: number } | undefined;

function readJournalHeader(data: Buffer): FileHeader {
  // Formats 1 and 2 had no file header: the file starts with a record, "NPJ" and its version.
  if (data.length >= 4 && data.subarray(0, 3).equals(RECORD_MAGIC_PREFIX)) {
    if (data[3] === 0x01 || data[3] === 0x02) return { unsupportedVersion: data[3] };
  }
  if (data.length < JOURNAL_HEADER_BYTES || !data.subarray(0, 4).equals(FILE_MAGIC))
    return undefined;
  if (!checksum(data.subarray(0, 16)).equals(data.subarray(16, JOURNAL_HEADER_BYTES))) {
    return undefined;
  }
  const version = data.readUInt32LE(4);
  if (version !== JOURNAL_FORMAT_VERSION) return { unsupportedVersion: version };
  return { salt: Buffer.from(data.subarray(8, 16)) };
}

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

/** The record prefix: magic, payload length, checksum, salt, sequence number. */
export function recordPrefix(
  length: number,
  digest: Buffer,
  salt: Buffer,
  sequence: number,
): Buffer {
  const prefix = Buffer.alloc(RECORD_HEADER);
  RECORD_MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(length, 4);
  digest.copy(prefix, 8, 0, 8);
  chainBytes(salt, sequence).copy(prefix, 16);
  return prefix;
}

/**
 * A whole record in one buffer (tests and tools; the journal itself streams it, see `begin`): record
 * `sequence` of generation `salt`. The ops must carry their `data`.
 */
export function encodeRecord(ops: readonly JournalOp[], salt: Buffer, sequence: number): Buffer {
  const files = ops.flatMap((op) => (op.data ? [op.data] : []));
  const payload = Buffer.concat([...files, trailerOf(ops)]);
  const digest = checksum(chainBytes(salt, sequence), payload);
  return Buffer.concat([recordPrefix(payload.length, digest, salt, sequence), payload]);
}

/** A byte range of the journal that could not be read, between valid records. */
export interface DamagedRegion {
  offset: number;
  length: number;
}

/** What a journal file holds, read past any damage. */
export interface DecodedJournal {
  /** The chain's records, in order: those before a damaged region and those after it. */
  records: JournalOp[][];
  /** End of the chain's last record (of the header when it has none); the bytes after are a torn tail. */
  validLength: number;
  /**
   * Unreadable ranges (or skipped sequence numbers: a region of length 0) with records of the chain
   * after them, in file order.
   */
  damaged: DamagedRegion[];
  /** The file's generation; undefined when it has no usable header (empty, torn or damaged). */
  salt?: Buffer;
  /** The sequence number the next record of this generation gets. */
  nextSequence: number;
  /** Set when the file is in a journal format this code does not read (nothing else is then set). */
  unsupportedVersion?: number;
}

interface DecodedRecord {
  ops: JournalOp[];
  end: number;
  salt: Buffer;
  sequence: number;
}

/**
 * Reads a journal file (its header, then its records) by the rule in this file's opening comment.
 * The resync after a break needs no guess: it looks for the record magic with the header's salt and
 * a sequence number past the last one replayed. A file whose header is unreadable keeps its records
 * only when a first record (sequence 1) follows where the header ends: that record gives the salt,
 * and the header counts as damage. Without one, a file no longer than a header is torn (its creation
 * was interrupted, before any record could be committed); a longer one is damage as a whole.
 */
export function decodeRecords(data: Buffer): DecodedJournal {
  const empty = { records: [], damaged: [], nextSequence: 1 };
  if (data.length === 0) return { ...empty, validLength: 0 };
  const header = readJournalHeader(data);
  if (header && 'unsupportedVersion' in header) {
    return { ...empty, validLength: data.length, unsupportedVersion: header.unsupportedVersion };
  }
  const records: JournalOp[][] = [];
  const damaged: DamagedRegion[] = [];
  let salt = header?.salt;
  if (!salt) {
    const first = decodeRecordAt(data, JOURNAL_HEADER_BYTES);
    if (first?.sequence !== 1) {
      if (data.length <= JOURNAL_HEADER_BYTES) return { ...empty, validLength: 0 };
      return { ...empty, validLength: data.length, damaged: [{ offset: 0, length: data.length }] };
    }
    salt = first.salt;
    damaged.push({ offset: 0, length: JOURNAL_HEADER_BYTES });
  }
  let offset = JOURNAL_HEADER_BYTES;
  let expected = 1;
  for (;;) {
    for (
      let record = decodeRecordAt(data, offset, salt, expected, expected);
      record;
      record = decodeRecordAt(data, offset, salt, expected, expected)
    ) {
      records.push(record.ops);
      offset = record.end;
      expected++;
    }
    if (offset >= data.length) break;
    const next = nextOfChain(data, offset, salt, expected);
    if (!next) break;
    damaged.push({ offset, length: next.offset - offset });
    offset = next.offset;
    expected = next.sequence;
  }
  return { records, validLength: offset, damaged, salt, nextSequence: expected };
}

/** The first record at or after `from` of generation `salt` numbered `expected` or higher. */
function nextOfChain(
  data: Buffer,
  from: number,
  salt: Buffer,
  expected: number,
): { offset: number; sequence: number } | undefined {
  for (
    let found = data.indexOf(RECORD_MAGIC, from);
    found !== -1;
    found = data.indexOf(RECORD_MAGIC, found + 1)
  ) {
    const record = decodeRecordAt(data, found, salt, expected);
    if (record) return { offset: found, sequence: record.sequence };
  }
  return undefined;
}

/**
 * The valid record at `offset`: magic, a length that fits, its checksum, its payload; of generation
 * `salt` (any, when not given) numbered from `lowest` to `highest` (any, when not given).
 */
function decodeRecordAt(
  data: Buffer,
  offset: number,
  salt?: Buffer,
  lowest = 1,
  highest = Number.MAX_SAFE_INTEGER,
): DecodedRecord | undefined {
  if (offset + RECORD_HEADER > data.length) return undefined;
  if (!data.subarray(offset, offset + 4).equals(RECORD_MAGIC)) return undefined;
  const recordSalt = data.subarray(offset + 16, offset + 24);
  if (salt && !recordSalt.equals(salt)) return undefined;
  const sequence = data.readUInt32LE(offset + 24);
  if (sequence < lowest || sequence > highest) return undefined;
  const end = offset + RECORD_HEADER + data.readUInt32LE(offset + 4);
  if (end > data.length) return undefined;
  const payload = data.subarray(offset + RECORD_HEADER, end);
  const digest = checksum(data.subarray(offset + 16, offset + RECORD_HEADER), payload);
  if (!digest.equals(data.subarray(offset + 8, offset + 16))) return undefined;
  const ops = parsePayload(payload);
  return ops ? { ops, end, salt: Buffer.from(recordSalt), sequence } : undefined;
}

/** The operations of a payload, or undefined unless it is exactly the files and their header. */
function parsePayload(payload: Buffer): JournalOp[] | undefined {
  try {
    if (payload.length < 4) return undefined;
    const headerLength = payload.readUInt32LE(payload.length - 4);
    if (4 + headerLength > payload.length) return undefined;
    const headerStart = payload.length - 4 - headerLength;
    const header = JSON.parse(
      payload.subarray(headerStart, headerStart + headerLength).toString('utf8'),
    ) as { ops?: unknown };
    if (!Array.isArray(header.ops)) return undefined;
    let position = 0;
    const ops: JournalOp[] = [];
    for (const op of header.ops as Array<{ c?: unknown; f?: unknown; n?: unknown }>) {
      if (typeof op?.c !== 'string' || typeof op.f !== 'string') return undefined;
      if (!Number.isSafeInteger(op.n) || (op.n as number) < -1) return undefined;
      const length = op.n as number;
      if (length < 0) {
        ops.push({ collection: op.c, fileName: op.f });
        continue;
      }
      if (position + length > headerStart) return undefined;
      ops.push({
        collection: op.c,
        fileName: op.f,
        data: Buffer.from(payload.subarray(position, position + length)),
      });
      position += length;
    }
    return position === headerStart ? ops : undefined;
  } catch {
    return undefined;
  }
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
    ...decoded,
    validLength: bytes.length,
    damaged: [...decoded.damaged, { offset: decoded.validLength, length: tail }],
    tornTailBytes: 0,
  };
}
