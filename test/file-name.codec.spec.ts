import { decodeStem, encodeId } from '../lib/storage/file-name.codec';
import { PersistenceErrorCode } from 'nestjs-persistence';

describe('item ids to file names', () => {
  it('keeps safe ids readable', () => {
    for (const id of ['sess-1', 'a', 'A_b-c.d', '0f8fad5b-d9cb-469f-a165-70867728950e']) {
      expect(encodeId(id)).toBe(id);
    }
  });

  it('encodes every other id reversibly, with no path separator and no leading dot', () => {
    const hostile = [
      '../../etc/passwd',
      'a/b',
      'a\\b',
      '.',
      '..',
      '.hidden',
      'trailing.',
      'nul\0byte',
      'CON',
      'com1.json',
      'with space',
      'émoji 🎉',
      '~tilde',
      'x'.repeat(129),
    ];
    const stems = new Set<string>();
    for (const id of hostile) {
      const stem = encodeId(id);
      expect(stem).not.toMatch(/[/\\\0]/);
      expect(stem.startsWith('.')).toBe(false);
      expect(stem.startsWith('~')).toBe(true);
      expect(decodeStem(stem)).toBe(id);
      stems.add(stem);
    }
    expect(stems.size).toBe(hostile.length);
  });

  it('hashes ids too long for a file name; the id is kept inside the file', () => {
    const long = 'x'.repeat(10_000);
    const stem = encodeId(long);
    expect(stem).toMatch(/^~~[0-9a-f]{64}$/);
    expect(decodeStem(stem)).toBeUndefined();
    expect(encodeId(`${long}y`)).not.toBe(stem);
  });

  it('rejects empty and non-string ids with InvalidId', () => {
    expect(() => encodeId('')).toThrow(
      expect.objectContaining({ code: PersistenceErrorCode.InvalidId }),
    );
    expect(() => encodeId(42 as never)).toThrow(
      expect.objectContaining({ code: PersistenceErrorCode.InvalidId }),
    );
  });
});
