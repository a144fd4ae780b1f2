import { PersistenceErrorCode } from 'nestjs-persistence';
import { decodeStem, encodeId, MAX_ID_LENGTH } from '../lib/storage/file-name.codec';

/** Ids from the issue: every one must round-trip and map to a safe, distinct file name. */
export const HOSTILE_IDS = [
  '../../etc/passwd',
  '..\\..\\windows\\system32',
  'a/b',
  'a\\b',
  '/absolute',
  '.',
  '..',
  '...',
  '.hidden',
  'nul\0byte',
  '\0',
  'CON',
  'con',
  'nul',
  'Nul.txt',
  'COM1',
  'com1.json',
  'lpt9',
  'trailing.',
  'trailing ',
  ' leading',
  'Sess-1',
  'sess-1',
  'SESS-1',
  'émoji 🎉',
  'caf\u00e9', // NFC
  'cafe\u0301', // NFD
  '~tilde',
  '~~double',
  'x'.repeat(128),
  'x'.repeat(129),
  'y'.repeat(10_000),
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  'line\nbreak',
  'tab\tchar',
  'colon:name',
  'star*?<>|"',
  '\u202e\u0645\u0631\u062d\u0628\u0627', // right-to-left override
];

/** What a case-insensitive, normalising file system would treat as one name. */
const folded = (name: string): string => name.normalize('NFC').toLowerCase();

describe('item ids to file names', () => {
  it('keeps safe lower-case ids readable', () => {
    for (const id of ['sess-1', 'a', 'a_b-c.d', '0f8fad5b-d9cb-469f-a165-70867728950e']) {
      expect(encodeId(id)).toBe(id);
    }
  });

  it('maps every hostile id to a stem that is safe on any file system and decodes back', () => {
    const stems = new Map<string, string>();
    for (const id of HOSTILE_IDS) {
      const stem = encodeId(id);
      expect(stem).toMatch(/^(~~[0-9a-f]{64}|~[a-z2-7]+|[a-z0-9_-][a-z0-9._-]*)$/);
      expect(stem.length).toBeLessThanOrEqual(200);
      const decoded = decodeStem(stem);
      if (stem.startsWith('~~')) {
        expect(decoded).toBeUndefined(); // hashed: the id is inside the file
      } else {
        expect(decoded).toBe(id);
      }
      const key = folded(stem);
      expect({ id, clashesWith: stems.get(key) }).toEqual({ id, clashesWith: undefined });
      stems.set(key, id);
    }
  });

  it('hashes ids too long for a file name; different ids give different hashes', () => {
    const long = 'x'.repeat(10_000);
    expect(encodeId(long)).toMatch(/^~~[0-9a-f]{64}$/);
    expect(encodeId(`${long}y`)).not.toBe(encodeId(long));
  });

  it('rejects empty, non-string and over-long ids with InvalidId', () => {
    for (const bad of ['', 42, null, 'z'.repeat(MAX_ID_LENGTH + 1), '\ud83d', 'a\udc00b']) {
      expect(() => encodeId(bad as string)).toThrow(
        expect.objectContaining({ code: PersistenceErrorCode.InvalidId }),
      );
    }
    expect(() => encodeId('')).toThrow('Item id "" cannot be stored: it is empty.');
  });
});
