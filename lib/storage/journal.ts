import { createHash } from 'node:crypto';
import { yieldToEventLoop } from './event-loop.util';
import { PersistenceFile, PersistenceFileSystem } from './file-system.interface';

/*
 * The write-ahead journal, `<path>/.journal`. A save appends one record and fsyncs the journal once:
 * that is the commit. Record layout (integers little-endian):
 *
 *   offset  size  field
 *   0       4     magic "NPJ" + version 0x01
 *   4       4     payload length P
 *   8       8     first 8 bytes of SHA-256(payload)
 *   16      P     payload: header length H (4) + header JSON (H bytes) + the files' bytes, in order
 *
 * Header JSON: { "ops": [ { "c": collection, "f": file name, "n": byte length, or -1 for a removal } ] }
 *
 * Reading stops at the first record that is incomplete or whose checksum does not match (a torn
 * tail from a crash during an append); everything after it is discarded.
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

/** Bytes hashed or copied between two yields to the event loop. */
const CHUNK = 1024 * 1024;

/**
 * A record as a few chunks of about 1 MiB (never one buffer the size of the whole save) and its
 * 16-byte prefix. Hashing yields to the event loop between chunks, so a large first save does not
 * stall the application.
 */
export async function encodeRecord(
  ops: readonly JournalOp[],
): Promise<{ prefix: Buffer; chunks: Buffer[]; length: number }> {
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
  const chunks: Buffer[] = [];
  let group: Buffer[] = [];
  let groupBytes = 0;
  for (const piece of pieces) {
    group.push(piece);
    groupBytes += piece.length;
    if (groupBytes >= CHUNK) {
      chunks.push(Buffer.concat(group));
      group = [];
      groupBytes = 0;
    }
  }
  if (group.length > 0) chunks.push(Buffer.concat(group));
  const hash = createHash('sha256');
  let length = 0;
  for (const chunk of chunks) {
    hash.update(chunk);
    length += chunk.length;
    if (chunk.length >= CHUNK) await yieldToEventLoop();
  }
  const prefix = Buffer.alloc(RECORD_HEADER);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(length, 4);
  hash.digest().subarray(0, 8).copy(prefix, 8);
  return { prefix, chunks, length: RECORD_HEADER + length };
}

/** The complete records at the start of `data`, and the length they cover. */
export function decodeRecords(data: Buffer): { records: JournalOp[][]; validLength: number } {
  const records: JournalOp[][] = [];
  let offset = 0;
  while (offset + RECORD_HEADER <= data.length) {
    if (!data.subarray(offset, offset + 4).equals(MAGIC)) break;
    const length = data.readUInt32LE(offset + 4);
    const end = offset + RECORD_HEADER + length;
    if (end > data.length) break;
    const payload = data.subarray(offset + RECORD_HEADER, end);
    if (!checksum(payload).equals(data.subarray(offset + 8, offset + 16))) break;
    const ops = parsePayload(payload);
    if (!ops) break;
    records.push(ops);
    offset = end;
  }
  return { records, validLength: offset };
}

function parsePayload(payload: Buffer): JournalOp[] | undefined {
  try {
    const headerLength = payload.readUInt32LE(0);
    const header = JSON.parse(payload.subarray(4, 4 + headerLength).toString('utf8')) as {
      ops: Array<{ c: string; f: string; n: number }>;
    };
    let position = 4 + headerLength;
    return header.ops.map((op) => {
      if (op.n < 0) return { collection: op.c, fileName: op.f };
      const data = Buffer.from(payload.subarray(position, position + op.n));
      position += op.n;
      return { collection: op.c, fileName: op.f, data };
    });
  } catch {
    return undefined;
  }
}

/** The journal file, kept open while the store is. */
export class Journal {
  private handle?: PersistenceFile;
  private length = 0;

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
   * Opens (creating if needed) the journal and returns its complete records. A torn tail is cut off,
   * so the next append starts right after the last complete record.
   */
  async open(): Promise<JournalOp[][]> {
    this.handle = await this.fs.open(this.path, 'append', this.fileMode);
    const { size } = await this.handle.stat();
    const data = Buffer.alloc(size);
    let offset = 0;
    while (offset < size) {
      const read = await this.handle.read(data, offset, size - offset, offset);
      if (read === 0) break;
      offset += read;
    }
    const { records, validLength } = decodeRecords(data.subarray(0, offset));
    if (validLength !== size) {
      await this.handle.truncate(validLength);
      await this.handle.sync();
    }
    this.length = validLength;
    return records;
  }

  /**
   * Appends one record and fsyncs: when this resolves, the record is committed. The payload is written
   * first and the prefix (magic, length, checksum) last, so until then the record does not exist for
   * a reader.
   */
  async append(ops: readonly JournalOp[]): Promise<number> {
    const record = await encodeRecord(ops);
    const handle = this.opened();
    try {
      let position = this.length + record.prefix.length;
      for (const chunk of record.chunks) {
        await handle.write(chunk, position);
        position += chunk.length;
      }
      await handle.write(record.prefix, this.length);
      await handle.sync();
    } catch (error) {
      // Cut back whatever part of the record reached the file; reading would ignore it anyway.
      await handle.truncate(this.length).catch(() => undefined);
      throw error;
    }
    this.length += record.length;
    return record.length;
  }

  /** Empties the journal once every record is checkpointed into the item files. */
  async reset(): Promise<void> {
    const handle = this.opened();
    await handle.truncate(0);
    await handle.sync();
    this.length = 0;
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }

  private opened(): PersistenceFile {
    if (!this.handle) throw new Error('the journal is not open');
    return this.handle;
  }
}
