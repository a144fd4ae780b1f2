import { createHash, Hash, randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { atomicWrite } from './atomic-write';
import { errorCode, PersistenceFile, PersistenceFileSystem } from './file-system.interface';
import { fsyncDirectory } from './fs.util';
import { DAMAGED_COPY_INFIX, sealedSegmentNumber } from './on-disk.names';
import { TimeSlicer } from './event-loop.util';
import { readRegularFile } from './safe-read';
import {
  chainBytes,
  DamagedRegion,
  decodeSegment,
  DecodedSegment,
  encodeJournalHeader,
  JOURNAL_HEADER_BYTES,
  JournalFileRef,
  JournalOp,
  newSalt,
  opLength,
  RECORD_HEADER,
  recordPrefix,
} from './journal.codec';

export {
  decodeRecords,
  decodeSegment,
  encodeJournalHeader,
  encodeRecord,
  JOURNAL_FORMAT_VERSION,
  JOURNAL_HEADER_BYTES,
  writesFile,
} from './journal.codec';
export type {
  DamagedRegion,
  DecodedJournal,
  DecodedSegment,
  JournalFileRef,
  JournalOp,
  JournalSource,
} from './journal.codec';

/*
 * The journal's files and how they are written: `<path>/.journal` and its sealed segments (the
 * format, and the one rule by which every reader reads it, are in `journal.codec.ts`).
 */

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

/** Longest run of trailer-making before the event loop gets a turn. */
const TRAILER_SLICE_MS = 5;
/** The trailer is made in pieces of about this many characters, with yields between them. */
const TRAILER_PIECE_CHARS = 64 * 1024;

/** Size of the staging buffer small pieces are gathered in before one write. */
const STAGE_BYTES = 1024 * 1024;

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
  const { records, damaged, unsupportedVersion } = decodeSegment(bytes, true);
  if (unsupportedVersion !== undefined) return { records, tornTailBytes: 0, unsupportedVersion };
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
  /** Set when the file is in a journal format this code does not read: it was left untouched. */
  unsupportedVersion?: number;
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
  /** The active file's generation (its header's salt). */
  private salt: Buffer = newSalt();
  /** The sequence number of the next record. */
  private sequence = 1;

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
   * next append starts right after the last valid record. A new or empty journal (or one whose
   * creation was torn) gets a header with a new salt, durable before any record. A journal in a
   * format this code does not read is left as it is (`unsupportedVersion`): the caller refuses it.
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
    const decoded = decodeSegment(bytes, false);
    const { records, validLength, damaged, salt, unsupportedVersion } = decoded;
    if (unsupportedVersion !== undefined) {
      await this.closeHandles();
      return { records, tornTailBytes: 0, unsupportedVersion };
    }
    const damage =
      damaged.length > 0
        ? damageOf(damaged, await copyAside(this.fs, this.path, bytes, this.fileMode))
        : undefined;
    if (!salt) {
      // Nothing of a generation in it (the damaged bytes, if any, are in the copy): a new one.
      await this.startGeneration(this.handle);
    } else {
      this.salt = salt;
      this.sequence = decoded.nextSequence;
      this.length = Math.max(0, validLength - JOURNAL_HEADER_BYTES);
      if (damage && !bytes.subarray(0, JOURNAL_HEADER_BYTES).equals(encodeJournalHeader(salt))) {
        // The header was the damage; the chain after it gave its salt back (the copy keeps it).
        await this.handle.write(encodeJournalHeader(salt), 0);
      }
      if (validLength !== size) await this.handle.truncate(validLength);
      if (damage || validLength !== size) await this.handle.sync();
    }
    return { records, tornTailBytes: Math.max(0, size - validLength), damage };
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
      JOURNAL_HEADER_BYTES + this.length,
      { salt: this.salt, sequence: this.sequence },
      (length) => {
        this.length += length;
        this.sequence++;
      },
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
    // The new file's generation, chosen now: an append begun before the file exists uses it.
    this.salt = newSalt();
    this.sequence = 1;
    this.created = false;
    await this.reopened().catch(() => undefined);
    return true;
  }

  /**
   * Empties the journal once every record is checkpointed into the item files: a new generation
   * (salt), so no byte of the old one is ever replayed, whatever of this truncate reaches the disk.
   */
  async reset(): Promise<void> {
    await this.startGeneration(await this.reopened());
  }

  /** Empties the file and writes a header with a new salt, durable before any record follows it. */
  private async startGeneration(handle: PersistenceFile, salt = newSalt()): Promise<void> {
    await handle.truncate(0);
    await handle.write(encodeJournalHeader(salt), 0);
    await handle.sync();
    this.salt = salt;
    this.sequence = 1;
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
        // A new file after a rotation: no record was committed into it yet.
        await this.startGeneration(handle, this.salt);
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
  private hash: Hash;
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
    private readonly chain: { salt: Buffer; sequence: number },
    private readonly committed: (length: number) => void,
    private readonly beforeAcknowledge?: () => Promise<void>,
  ) {
    this.hash = this.newHash();
  }

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
      hash: this.newHash(),
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
      const { salt, sequence } = this.chain;
      const prefix = recordPrefix(this.written, this.hash.digest(), salt, sequence);
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

  /** The checksum of a record covers its salt and sequence number, then its payload. */
  private newHash(): Hash {
    return createHash('sha256').update(chainBytes(this.chain.salt, this.chain.sequence));
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
