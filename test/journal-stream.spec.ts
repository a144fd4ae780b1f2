import { INestApplication } from '@nestjs/common';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  PersistenceAdapter,
  PersistenceErrorCode,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import {
  decodeRecords,
  encodeJournalHeader,
  encodeRecord,
  Journal,
  JOURNAL_HEADER_BYTES,
  JournalOp,
  JournalSourceReader,
} from '../lib/storage/journal';
import { NodeFileSystem } from '../lib/storage/node-file-system';
import { createApp } from './fixtures/app.factory';
import { CountingFileSystem } from './fixtures/counting-fs';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * A save streams its journal record (docs/on-disk-format.md, "The journal"): each item's bytes are
 * written as they are serialized, the op list follows them as a trailer (journal format 3), and
 * committed ops keep a reference into the journal instead of their bytes.
 */

const SALT = Buffer.from('0123456789abcdef', 'hex');
/** A journal file of generation SALT holding `records`. */
const journalOf = (...records: Buffer[]): Buffer =>
  Buffer.concat([encodeJournalHeader(SALT), ...records]);

const op = (id: string, body = `{"id":"${id}"}`): JournalOp => ({
  collection: 'sessions',
  fileName: `${id}.json`,
  data: Buffer.from(body),
});

const removal = (id: string): JournalOp => ({ collection: 'sessions', fileName: `${id}.json` });

/** What a decoded record holds: file name and body (null for a removal). */
const contents = (ops: JournalOp[]): Array<[string, string | null]> =>
  ops.map((o) => [o.fileName, o.data ? o.data.toString() : null]);

describe('journal format 3: a file header, records that carry their salt and sequence number', () => {
  const ops = [op('a'), removal('gone'), op('b', 'x'.repeat(3000))];

  it('a record starts with NPJ 0x03, carries the salt and its number, ends with its op list, and reads back', () => {
    const record = encodeRecord(ops, SALT, 1);
    expect([...record.subarray(0, 4)]).toEqual([0x4e, 0x50, 0x4a, 0x03]);
    expect(record.subarray(16, 24)).toEqual(SALT);
    expect(record.readUInt32LE(24)).toBe(1);
    expect(record.subarray(28, 28 + 11).toString()).toBe('{"id":"a"}x');
    const headerLength = record.readUInt32LE(record.length - 4);
    expect(JSON.parse(record.subarray(-4 - headerLength, -4).toString())).toEqual({
      ops: [
        { c: 'sessions', f: 'a.json', n: 10 },
        { c: 'sessions', f: 'gone.json', n: -1 },
        { c: 'sessions', f: 'b.json', n: 3000 },
      ],
    });
    const file = journalOf(record);
    expect([...file.subarray(0, 8)]).toEqual([0x4e, 0x50, 0x4a, 0x48, 3, 0, 0, 0]);
    expect(file.subarray(8, 16)).toEqual(SALT);
    const decoded = decodeRecords(file);
    expect(decoded.records.map(contents)).toEqual([contents(ops)]);
    expect(decoded).toMatchObject({ validLength: file.length, damaged: [], nextSequence: 2 });
    expect(decoded.salt).toEqual(SALT);
  });

  it('a record of another record version is not a record', () => {
    const record = encodeRecord([op('a')], SALT, 1);
    record[3] = 0x02;
    expect(decodeRecords(journalOf(record))).toMatchObject({
      records: [],
      validLength: JOURNAL_HEADER_BYTES,
    });
  });
});

describe('Journal.begin(): a record streamed piece by piece', () => {
  const fs = new NodeFileSystem();
  let dir: string;
  let journal: Journal;
  const path = (): string => join(dir, '.journal');

  beforeEach(async () => {
    dir = await makeTempDir();
    journal = new Journal(fs, path(), 0o600);
    await journal.open();
  });
  afterEach(async () => {
    await journal.close();
    await removeDir(dir);
  });

  const readBack = async (ops: JournalOp[]): Promise<string[]> => {
    const reader = new JournalSourceReader(fs);
    try {
      return await Promise.all(ops.map(async (o) => (await reader.read(o))!.toString()));
    } finally {
      await reader.close();
    }
  };

  it('commits what was added, in order; the ops keep a source into the journal, not their bytes', async () => {
    const big = 'y'.repeat(3 * 1024 * 1024); // larger than the staging buffer
    const ops = [op('a'), op('big', big), removal('gone'), op('b')];
    const expected = contents(ops);
    const session = journal.begin();
    for (const o of ops) await session.add(o);
    const length = await session.commit();
    const bytes = await readFile(path());
    expect(bytes.length).toBe(JOURNAL_HEADER_BYTES + length);
    expect(journal.size).toBe(length);
    expect(decodeRecords(bytes).records.map(contents)).toEqual([expected]);
    expect(ops.map((o) => o.data)).toEqual([undefined, undefined, undefined, undefined]);
    expect(ops[2].source).toBeUndefined();
    const written = [ops[0], ops[1], ops[3]];
    expect(await readBack(written)).toEqual(['{"id":"a"}', big, '{"id":"b"}']);
  });

  it('each emptying (a checkpoint) and each new file starts a new generation: a new salt, records from 1', async () => {
    const saltOf = async (): Promise<Buffer> => (await readFile(path())).subarray(8, 16);
    const first = await saltOf();
    await journal.append([op('a')]);
    await journal.append([op('b')]);
    expect(decodeRecords(await readFile(path()))).toMatchObject({ nextSequence: 3 });
    await journal.reset();
    const second = await saltOf();
    expect(second.equals(first)).toBe(false);
    expect((await readFile(path())).equals(encodeJournalHeader(second))).toBe(true);
    await journal.append([op('c')]);
    const decoded = decodeRecords(await readFile(path()));
    expect(decoded.records.map(contents)).toEqual([contents([op('c')])]);
    expect(decoded).toMatchObject({ nextSequence: 2 });
    expect(decoded.salt).toEqual(second);
    // Sealed: the segment keeps its salt; the new journal gets another.
    await journal.rotate(`${path()}.1`);
    await journal.append([op('d')]);
    expect((await readFile(`${path()}.1`)).subarray(8, 16)).toEqual(second);
    const third = await saltOf();
    expect(third.equals(second)).toBe(false);
    expect(decodeRecords(await readFile(path())).records.map(contents)).toEqual([
      contents([op('d')]),
    ]);
  });

  it('writes the very bytes encodeRecord() gives, a trailer of thousands of ops (made in pieces) included', async () => {
    const make = (): JournalOp[] =>
      Array.from({ length: 5000 }, (_, i) =>
        i % 7 === 3 ? removal(`gone-é-${i}`) : op(`item-"${i}"`, `{"n":${i}}`),
      );
    const salt = (await readFile(path())).subarray(8, 16); // the header written by open()
    const expected = Buffer.concat([encodeJournalHeader(salt), encodeRecord(make(), salt, 1)]);
    await journal.append(make());
    expect((await readFile(path())).equals(expected)).toBe(true);
  });

  it('rollback() drops what was added since the savepoint, and the file holds exactly the record', async () => {
    const session = journal.begin();
    await session.add(op('a'));
    await session.savepoint();
    await session.add(op('dropped', 'z'.repeat(2 * 1024 * 1024)));
    await session.add(op('dropped-too'));
    await session.rollback();
    await session.add(op('c'));
    await session.commit();
    const bytes = await readFile(path());
    expect(decodeRecords(bytes)).toMatchObject({ validLength: bytes.length, damaged: [] });
    expect(decodeRecords(bytes).records.map(contents)).toEqual([contents([op('a'), op('c')])]);
  });

  it('rollback() of staged bytes only (nothing written since the savepoint) keeps what was staged before it', async () => {
    await journal.append([op('first')]);
    const before = await readFile(path());
    const session = journal.begin();
    await session.add(op('a'));
    await session.savepoint();
    await session.add(op('dropped'));
    expect(await readFile(path())).toEqual(before); // a small record is written at the commit only
    await session.rollback();
    await session.savepoint();
    await session.add(op('dropped-too'));
    await session.rollback();
    await session.add(op('c'));
    await session.commit();
    const bytes = await readFile(path());
    expect(decodeRecords(bytes)).toMatchObject({ validLength: bytes.length, damaged: [] });
    expect(decodeRecords(bytes).records.map(contents)).toEqual([
      contents([op('first')]),
      contents([op('a'), op('c')]),
    ]);
  });

  it('rollback() after a large item forced the staged bytes out keeps the bytes staged before the savepoint', async () => {
    const session = journal.begin();
    await session.add(op('a'));
    await session.add(op('b'));
    await session.savepoint(); // a and b are staged, not written
    await session.add(op('big', 'w'.repeat(2 * 1024 * 1024))); // writes a, b, then big
    await session.rollback();
    await session.add(op('c'));
    await session.commit();
    const bytes = await readFile(path());
    expect(decodeRecords(bytes)).toMatchObject({ validLength: bytes.length, damaged: [] });
    expect(decodeRecords(bytes).records.map(contents)).toEqual([
      contents([op('a'), op('b'), op('c')]),
    ]);
    expect(bytes.length).toBeLessThan(1024);
  });

  it('a record rolled back to nothing commits nothing: the journal is as before', async () => {
    await journal.append([op('first')]);
    const before = await readFile(path());
    const session = journal.begin();
    await session.add(op('a', 'r'.repeat(2 * 1024 * 1024)));
    await session.rollback();
    expect(await session.commit()).toBe(0);
    expect(await readFile(path())).toEqual(before);
  });

  it('abort() after bytes were written leaves the journal as it was: only committed records', async () => {
    await journal.append([op('first')]);
    const before = await readFile(path());
    const session = journal.begin();
    await session.add(op('a', 'q'.repeat(2 * 1024 * 1024)));
    // A large item's write is started, not awaited; the next large one waits for it, so once
    // `b` is added, `a`'s bytes are in the file.
    await session.add(op('b', 'r'.repeat(2 * 1024 * 1024)));
    expect((await stat(path())).size).toBeGreaterThan(before.length + 2 * 1024 * 1024);
    await session.abort();
    expect(await readFile(path())).toEqual(before);
    expect(journal.size).toBe(before.length - JOURNAL_HEADER_BYTES);
    await expect(session.add(op('late'))).rejects.toThrow(/finished/);
  });

  it('after the journal is sealed, its committed ops read their bytes from the sealed segment', async () => {
    const ops = [op('a'), op('b', 'w'.repeat(5000))];
    await journal.append(ops);
    await journal.rotate(join(dir, '.journal.1'));
    expect(ops.map((o) => o.source?.file.path)).toEqual([
      join(dir, '.journal.1'),
      join(dir, '.journal.1'),
    ]);
    const next = [op('c')];
    await journal.append(next);
    expect(next[0].source?.file.path).toBe(path());
    expect(await readBack([...ops, ...next])).toEqual([
      '{"id":"a"}',
      'w'.repeat(5000),
      '{"id":"c"}',
    ]);
  });
});

describe('a store streaming its saves (real folder, real Nest app)', () => {
  let dir: string;
  let app: INestApplication | undefined;

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    await removeDir(dir);
  });

  /** An adapter whose snapshot yields `count` large items, then throws or repeats an id. */
  const faulty = (name: string, count: number, end: 'throw' | 'duplicate'): PersistenceAdapter => ({
    name,
    snapshot: () =>
      ({
        size: count + 1,
        *entries() {
          for (let i = 0; i < count; i++) yield [`i${i}`, { body: 'p'.repeat(400_000) }];
          if (end === 'throw') throw new Error('snapshot broke halfway');
          yield ['i0', {}];
        },
      }) as unknown as ReadonlyMap<string, unknown>,
    restore: () => undefined,
  });

  it('a load while the checkpoint fails reads the committed bytes back from the journal', async () => {
    const counting = new CountingFileSystem(new NodeFileSystem());
    app = await createApp({ path: dir }, { fileSystem: counting.fs });
    const sessions = app.get(SessionManager);
    sessions.create({ id: 's', metadata: { text: 'saved' } });
    await app.get(PersistenceStore).saveAll();
    sessions.update('s', { status: 'paused' }); // not saved: the load must drop it
    counting.failWrites = /sessions/; // the item files cannot be written: the checkpoint fails
    await app.get(PersistenceStore).loadAll();
    expect(await readdir(join(dir, 'sessions'))).toEqual([]);
    expect(sessions.get('s')).toMatchObject({ status: 'active', metadata: { text: 'saved' } });
    counting.failWrites = undefined;
  });

  it('a save whose snapshot fails halfway commits nothing: the journal is as before', async () => {
    app = await createApp({ path: dir, adapters: [faulty('broken', 6, 'throw')] });
    app.get(SessionManager).create({ id: 's' });
    const journal = join(dir, '.journal');
    const before = await readFile(journal);
    await expect(app.get(PersistenceStore).saveAll()).rejects.toBeDefined();
    expect(await readFile(journal)).toEqual(before);
    await app.get(PersistenceStore).checkpoint();
    // Nothing of the save was committed: neither the session nor the items streamed before the throw.
    expect(await readdir(join(dir, 'sessions'))).toEqual([]);
    expect(await readdir(join(dir, 'broken'))).toEqual([]);
  });

  it('an adapter refused halfway (duplicate id) is cut out of the streamed record; the rest commits', async () => {
    app = await createApp({ path: dir, adapters: [faulty('dup', 6, 'duplicate')] });
    app.get(SessionManager).create({ id: 's' });
    await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.SaveIncomplete,
    });
    const bytes = await readFile(join(dir, '.journal'));
    const decoded = decodeRecords(bytes);
    expect(decoded).toMatchObject({ validLength: bytes.length, damaged: [] });
    expect(decoded.records.map((ops) => ops.map((o) => `${o.collection}/${o.fileName}`))).toEqual([
      ['sessions/s.json'],
    ]);
    await app.get(PersistenceStore).checkpoint();
    expect(
      JSON.stringify(JSON.parse(await readFile(join(dir, 'sessions', 's.json'), 'utf8'))),
    ).toContain('"id":"s"');
  });
});
