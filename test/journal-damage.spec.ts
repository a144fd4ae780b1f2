import { INestApplication, Injectable } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { cp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceEvents,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import {
  decodeRecords,
  encodeJournalHeader,
  encodeRecord,
  JOURNAL_HEADER_BYTES,
  JournalOp,
} from '../lib/storage/journal';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Damage to the journal must never silently drop acknowledged saves (docs/on-disk-format.md, "The
 * journal"). A torn tail (a crash during an append) is cut; damage in the middle is copied aside,
 * every valid record before and after it is replayed, and PERSISTENCE_JOURNAL_DAMAGED is reported.
 */

const SALT = Buffer.from('00112233aabbccdd', 'hex');
/** A record of generation `salt` (SALT when not given), numbered `sequence`. */
const encode = (ops: JournalOp[], sequence: number, salt = SALT): Buffer =>
  encodeRecord(ops, salt, sequence);
const RECORD_HEADER = 28;

const item = (id: string, body = `{"id":"${id}"}`): JournalOp => ({
  collection: 'sessions',
  fileName: `${id}.json`,
  data: Buffer.from(body),
});

/** Each record's start and length, walking the lengths of an undamaged journal (after its header). */
function frames(journal: Buffer): Array<{ start: number; length: number }> {
  const result: Array<{ start: number; length: number }> = [];
  for (let start = JOURNAL_HEADER_BYTES; start < journal.length;) {
    const length = RECORD_HEADER + journal.readUInt32LE(start + 4);
    result.push({ start, length });
    start += length;
  }
  return result;
}

/** The ids each decoded record writes. */
const idsOf = (records: JournalOp[][]): string[][] =>
  records.map((ops) => ops.map((op) => op.fileName.replace(/\.json$/, '')));

describe('decodeRecords: reading past damage', () => {
  let records: Buffer[];
  let journal: Buffer;
  let at: Array<{ start: number; length: number }>;
  const ids = ['r1', 'r2', 'r3', 'r4', 'r5'];

  beforeAll(() => {
    records = ids.map((id, i) => encode([item(id)], i + 1));
    journal = Buffer.concat([encodeJournalHeader(SALT), ...records]);
    at = frames(journal);
  });

  const damaged = (change: (bytes: Buffer) => void): Buffer => {
    const bytes = Buffer.from(journal);
    change(bytes);
    return bytes;
  };

  it('reads an undamaged journal whole', () => {
    const decoded = decodeRecords(journal);
    expect(idsOf(decoded.records)).toEqual(ids.map((id) => [id]));
    expect(decoded).toMatchObject({ validLength: journal.length, damaged: [] });
  });

  it.each([
    ['a byte of its payload', (b: Buffer) => (b[at[2].start + 20] ^= 0xff)],
    ['its checksum', (b: Buffer) => (b[at[2].start + 9] ^= 0x01)],
    ['its magic', (b: Buffer) => (b[at[2].start] = 0x00)],
    ['its length, made too large to fit', (b: Buffer) => b.writeUInt32LE(1 << 30, at[2].start + 4)],
    ['its length, made shorter', (b: Buffer) => b.writeUInt32LE(3, at[2].start + 4)],
  ])('damage to %s in the middle record: the records after it are kept', (_, change) => {
    const decoded = decodeRecords(damaged(change));
    expect(idsOf(decoded.records)).toEqual([['r1'], ['r2'], ['r4'], ['r5']]);
    expect(decoded.damaged).toEqual([{ offset: at[2].start, length: at[2].length }]);
    expect(decoded.validLength).toBe(journal.length);
  });

  it('damage in the first record: every later record is kept', () => {
    const decoded = decodeRecords(damaged((b) => (b[at[0].start + 20] ^= 0xff)));
    expect(idsOf(decoded.records)).toEqual([['r2'], ['r3'], ['r4'], ['r5']]);
    expect(decoded.damaged).toEqual([{ offset: at[0].start, length: at[0].length }]);
  });

  it('two damaged records apart: the valid record between them is kept', () => {
    const decoded = decodeRecords(
      damaged((b) => {
        b.writeUInt32LE(1 << 30, at[1].start + 4); // r2: its length
        b[at[3].start + 20] ^= 0xff; // r4: its payload
      }),
    );
    expect(idsOf(decoded.records)).toEqual([['r1'], ['r3'], ['r5']]);
    expect(decoded.damaged).toEqual([
      { offset: at[1].start, length: at[1].length },
      { offset: at[3].start, length: at[3].length },
    ]);
  });

  it('two adjacent damaged records form one unreadable region', () => {
    const decoded = decodeRecords(
      damaged((b) => {
        b[at[1].start + 1] = 0x00; // r2: its magic
        b.writeUInt32LE(7, at[2].start + 4); // r3: its length
      }),
    );
    expect(idsOf(decoded.records)).toEqual([['r1'], ['r4'], ['r5']]);
    expect(decoded.damaged).toEqual([{ offset: at[1].start, length: at[1].length + at[2].length }]);
  });

  it('damage in the last record is a torn tail: no damaged region, validLength before it', () => {
    for (const bytes of [
      damaged((b) => (b[at[4].start + 20] ^= 0xff)),
      journal.subarray(0, at[4].start + 10), // an append cut short
      Buffer.concat([
        journal.subarray(0, at[4].start),
        Buffer.alloc(RECORD_HEADER),
        records[4].subarray(RECORD_HEADER),
      ]),
    ]) {
      const decoded = decodeRecords(bytes);
      expect(idsOf(decoded.records)).toEqual([['r1'], ['r2'], ['r3'], ['r4']]);
      expect(decoded).toMatchObject({ validLength: at[4].start, damaged: [] });
    }
  });

  it('a torn tail after damage in the middle: both are told apart', () => {
    const bytes = damaged((b) => (b[at[1].start + 20] ^= 0xff)).subarray(0, at[4].start + 30);
    const decoded = decodeRecords(bytes);
    expect(idsOf(decoded.records)).toEqual([['r1'], ['r3'], ['r4']]);
    expect(decoded.damaged).toEqual([{ offset: at[1].start, length: at[1].length }]);
    expect(decoded.validLength).toBe(at[4].start);
  });

  it('is not fooled by a whole record stored inside a damaged payload', () => {
    // An item whose bytes hold a valid journal record (of another journal: its own salt), then more
    // bytes (a custom binary serializer could write this).
    const fake = encode([item('planted')], 2, Buffer.from('feedfacefeedface', 'hex'));
    const blob = Buffer.concat([fake, Buffer.from('{"more":"bytes after the planted record"}')]);
    const carrier = encode([{ collection: 'blobs', fileName: 'blob.bin', data: blob }], 2);
    const r3 = encode([item('r3')], 3);
    const bytes = Buffer.concat([encodeJournalHeader(SALT), records[0], carrier, r3]);
    const carrierStart = JOURNAL_HEADER_BYTES + records[0].length;
    expect(idsOf(decodeRecords(bytes).records)).toEqual([['r1'], ['blob.bin'], ['r3']]);

    for (const change of [
      (b: Buffer) => b.writeUInt32LE(1 << 30, carrierStart + 4), // the carrier's length
      (b: Buffer) => b.writeUInt32LE(5, carrierStart + 4),
      (b: Buffer) => (b[carrierStart] = 0x00), // its magic
      (b: Buffer) => (b[carrierStart + 12] ^= 0x01), // its checksum
    ]) {
      const copy = Buffer.from(bytes);
      change(copy);
      const decoded = decodeRecords(copy);
      expect(idsOf(decoded.records)).toEqual([['r1'], ['r3']]);
      expect(decoded.damaged).toEqual([{ offset: carrierStart, length: carrier.length }]);
    }
  });
});

describe('decodeRecords: only the chain of the current generation is replayed', () => {
  const OLD = Buffer.from('99887766554433ff', 'hex');
  const ids = (bytes: Buffer): string[][] => idsOf(decodeRecords(bytes).records);
  const header = encodeJournalHeader(SALT);
  const r1 = encode([item('r1')], 1);
  const r2 = encode([item('r2')], 2);
  const r3 = encode([item('r3')], 3);

  it('records of an earlier generation after the chain (a truncate that did not reach the disk) are a torn tail: never replayed', () => {
    // The journal emptied (new salt) and one save committed into it; the blocks past it still hold
    // the earlier generation's records 2 and 3, whole and valid.
    const old = [encode([item('o1')], 1, OLD), encode([item('o2')], 2, OLD)];
    const older = encode([item('o3')], 3, OLD);
    const oldFile = Buffer.concat([encodeJournalHeader(OLD), ...old, older]);
    const bytes = Buffer.concat([header, r1, oldFile.subarray(header.length + r1.length)]);
    expect(bytes.includes(older)).toBe(true); // the precondition: a whole old record is there
    const decoded = decodeRecords(bytes);
    expect(idsOf(decoded.records)).toEqual([['r1']]);
    expect(decoded).toMatchObject({ damaged: [], nextSequence: 2 });
    expect(decoded.validLength).toBe(header.length + r1.length);
    // Right after the header, too (the emptied journal's first save not yet written).
    expect(ids(Buffer.concat([header, old[0], old[1]]))).toEqual([]);
  });

  it('a record of another generation, wherever it sits, is never replayed; the chain after it is', () => {
    const stale = encode([item('stale')], 2, OLD);
    const decoded = decodeRecords(Buffer.concat([header, r1, stale, r2, r3]));
    expect(idsOf(decoded.records)).toEqual([['r1'], ['r2'], ['r3']]);
    expect(decoded.damaged).toEqual([{ offset: header.length + r1.length, length: stale.length }]);
    // Even one numbered as the chain's next.
    const next = encode([item('stale')], 2, OLD);
    expect(ids(Buffer.concat([header, r1, next]))).toEqual([['r1']]);
  });

  it('a record already replayed, found again later, is not replayed twice', () => {
    const decoded = decodeRecords(Buffer.concat([header, r1, r2, r1, r3]));
    expect(idsOf(decoded.records)).toEqual([['r1'], ['r2'], ['r3']]);
    expect(decoded.damaged).toHaveLength(1);
  });

  it('a gap in the sequence numbers is a lost record: reported as damage, the chain after it kept', () => {
    const decoded = decodeRecords(Buffer.concat([header, r1, r3]));
    expect(idsOf(decoded.records)).toEqual([['r1'], ['r3']]);
    expect(decoded.damaged).toEqual([{ offset: header.length + r1.length, length: 0 }]);
    expect(decoded.nextSequence).toBe(4);
  });

  it('a damaged header: the first record gives the salt back, the header is reported as damage', () => {
    const bytes = Buffer.concat([header, r1, r2]);
    bytes[10] ^= 0xff;
    const decoded = decodeRecords(bytes);
    expect(idsOf(decoded.records)).toEqual([['r1'], ['r2']]);
    expect(decoded.damaged).toEqual([{ offset: 0, length: JOURNAL_HEADER_BYTES }]);
    expect(decoded.salt).toEqual(SALT);
  });

  it('a torn header (its creation interrupted) is a torn tail; a damaged one with no first record is damage', () => {
    expect(decodeRecords(header.subarray(0, 10))).toMatchObject({ records: [], validLength: 0 });
    const bytes = Buffer.concat([header, r1, r2]);
    bytes[10] ^= 0xff;
    bytes[header.length + 40] ^= 0xff; // r1 too
    expect(decodeRecords(bytes)).toMatchObject({
      records: [],
      validLength: bytes.length,
      damaged: [{ offset: 0, length: bytes.length }],
    });
  });

  it('a journal of format 1 or 2 (no header, records "NPJ" 0x01/0x02) is refused, not read', () => {
    for (const version of [0x01, 0x02]) {
      const bytes = Buffer.concat([Buffer.from([0x4e, 0x50, 0x4a, version]), Buffer.alloc(40)]);
      expect(decodeRecords(bytes)).toMatchObject({ records: [], unsupportedVersion: version });
    }
  });
});

@Injectable()
class ErrorLog {
  readonly errors: PersistenceErrorEvent[] = [];

  @OnEvent(PersistenceEvents.Error)
  onError(event: PersistenceErrorEvent): void {
    this.errors.push(event);
  }
}

describe('a store whose journal is damaged (real folder, real Nest app)', () => {
  let root: string;
  let template: string;
  let journal: Buffer;
  let at: Array<{ start: number; length: number }>;
  const apps: INestApplication[] = [];
  let count = 0;

  /*
   * A store holding one checkpointed item ("base", v0) and five acknowledged saves still in the
   * journal: save i creates "s<i>" and sets base to v<i>. Copied while the application runs, as a
   * crash would leave it (a clean close would checkpoint and empty the journal).
   */
  beforeAll(async () => {
    root = await makeTempDir();
    const source = join(root, 'source');
    template = join(root, 'template');
    const app = await createApp({
      path: source,
      checkpointBytes: Number.MAX_SAFE_INTEGER,
      saveOnShutdown: false,
    });
    const sessions = app.get(SessionManager);
    const store = app.get(PersistenceStore);
    sessions.create({ id: 'base', metadata: { v: 0 } });
    await store.saveAll();
    await store.checkpoint();
    for (let i = 1; i <= 5; i++) {
      sessions.create({ id: `s${i}` });
      sessions.update('base', { metadata: { v: i } });
      await store.saveAll();
    }
    await cp(source, template, { recursive: true, filter: (path) => !path.endsWith('.lock') });
    await app.close();
    journal = await readFile(join(template, '.journal'));
    at = frames(journal);
  });

  afterEach(async () => {
    while (apps.length > 0) await apps.pop()?.close();
  });

  afterAll(async () => {
    await removeDir(root);
  });

  /** A copy of the template store whose journal is changed by `damage`; returns its path and bytes. */
  async function damagedStore(damage: (bytes: Buffer) => Buffer | void): Promise<{
    dir: string;
    bytes: Buffer;
  }> {
    const dir = join(root, `case-${++count}`);
    await cp(template, dir, { recursive: true });
    const copy = Buffer.from(journal);
    const bytes = damage(copy) ?? copy;
    await writeFile(join(dir, '.journal'), bytes);
    return { dir, bytes };
  }

  async function start(
    dir: string,
    readOnly = false,
  ): Promise<{ app: INestApplication; errors: PersistenceErrorEvent[]; logger: RecordingLogger }> {
    const logger = new RecordingLogger();
    const app = await createApp(
      { path: dir, readOnly, checkpointBytes: Number.MAX_SAFE_INTEGER },
      { providers: [ErrorLog], logger },
    );
    apps.push(app);
    return { app, errors: app.get(ErrorLog).errors, logger };
  }

  const loaded = (app: INestApplication): { ids: string[]; base: unknown } => {
    const sessions = app.get(SessionManager);
    return {
      ids: sessions
        .list()
        .map((s) => s.id)
        .sort(),
      base: sessions.get('base')?.metadata,
    };
  };

  const asideCopies = async (dir: string): Promise<string[]> =>
    (await readdir(dir)).filter((name) => name.startsWith('.journal.damaged-'));

  it('the template holds five records in its journal (precondition)', () => {
    expect(at).toHaveLength(5);
    expect(decodeRecords(journal).nextSequence).toBe(6);
    expect(at.at(-1)!.start + at.at(-1)!.length).toBe(journal.length);
  });

  it.each([
    ['a byte of its payload', (b: Buffer) => void (b[at[2].start + 24] ^= 0xff)],
    ['its checksum', (b: Buffer) => void (b[at[2].start + 8] ^= 0x01)],
    ['its length', (b: Buffer) => void b.writeUInt32LE(0xffffff, at[2].start + 4)],
    ['its magic', (b: Buffer) => void (b[at[2].start + 2] = 0x58)],
  ])(
    'damage to %s in the middle record: copied aside, every other save replayed, reported',
    async (_, change) => {
      const { dir, bytes } = await damagedStore(change);
      const { app, errors, logger } = await start(dir);

      // Only save 3's own changes are lost: s3, and base stays at v5 from save 5.
      expect(loaded(app)).toEqual({ ids: ['base', 's1', 's2', 's4', 's5'], base: { v: 5 } });

      const copies = await asideCopies(dir);
      expect(copies).toHaveLength(1);
      const copyPath = join(dir, copies[0]);
      expect((await readFile(copyPath)).equals(bytes)).toBe(true);
      expect((await stat(copyPath)).mode & 0o777).toBe(0o600);

      expect(errors).toHaveLength(1);
      const { error, operation, path } = errors[0];
      expect(operation).toBe('init');
      expect(path).toBe(copyPath);
      expect(error).toMatchObject({ code: PersistenceErrorCode.JournalDamaged });
      expect(error.message).toContain(`${at[2].length} byte(s) in 1 place(s)`);
      expect(error.message).toContain('4 committed save(s)');
      expect(error.message).toContain(copyPath);
      expect(logger.lines).toContainEqual(`error ${error.message}`);

      // The recovered saves were written into the item files: a second start, with no journal
      // left, loads the same state and reports nothing.
      await app.close();
      apps.length = 0;
      expect((await stat(join(dir, '.journal'))).size).toBe(JOURNAL_HEADER_BYTES);
      const again = await start(dir);
      expect(loaded(again.app)).toEqual({ ids: ['base', 's1', 's2', 's4', 's5'], base: { v: 5 } });
      expect(again.errors).toEqual([]);
      expect(await asideCopies(dir)).toEqual(copies);
    },
  );

  it('a damaged file header: the first record gives its salt back, every save is replayed, reported, the header rewritten', async () => {
    const { dir, bytes } = await damagedStore((b) => void (b[12] ^= 0xff)); // in the salt
    const { app, errors } = await start(dir);
    expect(loaded(app)).toEqual({ ids: ['base', 's1', 's2', 's3', 's4', 's5'], base: { v: 5 } });
    const copies = await asideCopies(dir);
    expect(copies).toHaveLength(1);
    expect((await readFile(join(dir, copies[0]))).equals(bytes)).toBe(true);
    expect(errors.map((e) => e.error.code)).toEqual([PersistenceErrorCode.JournalDamaged]);
    expect(errors[0].error.message).toContain(`${JOURNAL_HEADER_BYTES} byte(s) in 1 place(s)`);
    expect(errors[0].error.message).toContain('5 committed save(s)');
    // The journal kept its records under a repaired header: the next save goes on its chain.
    app.get(SessionManager).create({ id: 's6' });
    await app.get(PersistenceStore).saveAll();
    const decoded = decodeRecords(await readFile(join(dir, '.journal')));
    expect(decoded).toMatchObject({ damaged: [] });
    expect(decoded.records.length).toBeGreaterThan(0);
  });

  it('several damaged records: every valid save between and after them is kept', async () => {
    const { dir, bytes } = await damagedStore((b) => {
      b[at[1].start + 30] ^= 0xff; // save 2: payload
      b.writeUInt32LE(0xffffff, at[3].start + 4); // save 4: length
    });
    const { app, errors } = await start(dir);
    expect(loaded(app)).toEqual({ ids: ['base', 's1', 's3', 's5'], base: { v: 5 } });
    const copies = await asideCopies(dir);
    expect(copies).toHaveLength(1);
    expect((await readFile(join(dir, copies[0]))).equals(bytes)).toBe(true);
    expect(errors.map((e) => e.error.code)).toEqual([PersistenceErrorCode.JournalDamaged]);
    expect(errors[0].error.message).toContain(
      `${at[1].length + at[3].length} byte(s) in 2 place(s)`,
    );
    expect(errors[0].error.message).toContain('3 committed save(s)');
  });

  it.each([
    ['a damaged byte in the last record', (b: Buffer) => void (b[at[4].start + 24] ^= 0xff)],
    ['an append cut short', (b: Buffer) => b.subarray(0, at[4].start + 40)],
  ])('a torn tail (%s) is cut with a warning: no copy, no error event', async (_, change) => {
    const { dir, bytes } = await damagedStore(change);
    const { app, errors, logger } = await start(dir);
    expect(loaded(app)).toEqual({ ids: ['base', 's1', 's2', 's3', 's4'], base: { v: 4 } });
    expect(await asideCopies(dir)).toEqual([]);
    expect(errors).toEqual([]);
    const torn = bytes.length - at[4].start;
    const warnings = logger.lines.filter((line) => line.includes('not a complete record'));
    expect(warnings).toEqual([
      `warn Recovery: the journal ${join(dir, '.journal')}: the last ${torn} byte(s) are not a ` +
        'complete record: a save interrupted by a crash; it was never acknowledged. They were cut off.',
    ]);
    expect(logger.lines.filter((line) => line.startsWith('error '))).toEqual([]);
  });

  it('read-only: a torn tail is logged in the same words, and left as it is', async () => {
    const { dir, bytes } = await damagedStore((b) => void (b[at[4].start + 24] ^= 0xff));
    const { app, errors, logger } = await start(dir, true);
    expect(loaded(app)).toEqual({ ids: ['base', 's1', 's2', 's3', 's4'], base: { v: 4 } });
    expect(errors).toEqual([]);
    const torn = bytes.length - at[4].start;
    expect(logger.lines).toContainEqual(
      `warn The journal ${join(dir, '.journal')}: the last ${torn} byte(s) are not a complete ` +
        'record: a save interrupted by a crash; it was never acknowledged. The store is read-only, ' +
        'so they were left as they are; the next start without readOnly cuts them off.',
    );
    expect((await readFile(join(dir, '.journal'))).equals(bytes)).toBe(true);
  });

  it('read-only: sees the saves after the damage and reports it, writing nothing', async () => {
    const { dir, bytes } = await damagedStore((b) => void (b[at[2].start + 24] ^= 0xff));
    const before = (await readdir(dir, { recursive: true })).sort();
    const { app, errors } = await start(dir, true);
    expect(loaded(app)).toEqual({ ids: ['base', 's1', 's2', 's4', 's5'], base: { v: 5 } });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      operation: 'load',
      path: join(dir, '.journal'),
      error: { code: PersistenceErrorCode.JournalDamaged },
    });
    expect(errors[0].error.message).toContain('read-only');
    expect((await readdir(dir, { recursive: true })).sort()).toEqual(before);
    expect((await readFile(join(dir, '.journal'))).equals(bytes)).toBe(true);
  });
});
