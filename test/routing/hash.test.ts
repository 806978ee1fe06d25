import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashBytes, hashString, hashVirtualNode } from '../../src/routing/hash.js';

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'));

// Published MurmurHash3 x86_32 vectors (SMHasher's verification set as collected by several ports).
const BYTE_VECTORS: ReadonlyArray<[bytes: string, seed: number, expected: number]> = [
  ['', 0, 0],
  ['', 1, 0x514e28b7],
  ['', 0xffffffff, 0x81f16f39],
  ['ffffffff', 0, 0x76293b50],
  ['21436587', 0, 0xf55b516b],
  ['21436587', 0x5082edee, 0x2362f9de],
  ['214365', 0, 0x7e4a8634],
  ['2143', 0, 0xa0f7b07a],
  ['21', 0, 0x72661cf4],
  ['00000000', 0, 0x2362f9de],
  ['000000', 0, 0x85f0b427],
  ['0000', 0, 0x30f4c306],
  ['00', 0, 0x514e28b7],
];

const STRING_VECTORS: ReadonlyArray<[text: string, seed: number, expected: number]> = [
  ['Hello, world!', 0, 3224780355],
  ['Hello, world!', 1234, 0xfaf6cdb3],
  ['Hello, world!', 4321, 0xbf505788],
  ['Hello world', 0, 2911983372],
  ['hello, world', 0, 345750399],
  ['hello, world1', 0, 3714214180],
  ['hello, world12', 0, 83041023],
  ['hello, world123', 0, 209220029],
];

describe('hashBytes (MurmurHash3 x86_32)', () => {
  it.each(BYTE_VECTORS)('bytes %j seed %d', (bytes, seed, expected) => {
    expect(hashBytes(hex(bytes), seed)).toBe(expected);
  });
  it.each(STRING_VECTORS)('ascii %j seed %d', (text, seed, expected) => {
    expect(hashBytes(Buffer.from(text), seed)).toBe(expected);
  });
});

describe('hashString', () => {
  it.each(STRING_VECTORS)('%j seed %d matches the published vector', (text, seed, expected) => {
    expect(hashString(text, seed)).toBe(expected);
  });

  it('hashes the UTF-8 bytes of non-ASCII text, at every block alignment', () => {
    for (const text of ['π', 'aπ', 'aaπ', 'aaaπ', '日本語', 'x😀y', 'é😀日a', '\u0080\u07ff\u0800\uffff']) {
      expect(hashString(text)).toBe(hashBytes(Buffer.from(text, 'utf8')));
    }
  });

  it('hashes lone surrogates as U+FFFD, like Buffer.from', () => {
    for (const text of ['\ud800', 'a\udc00b', '\ud83d', '\ud83dx', 'abc\udfff']) {
      expect(hashString(text)).toBe(hashBytes(Buffer.from(text, 'utf8')));
      expect(hashString(text)).toBe(hashString(text.replace(/[\ud800-\udfff]/g, '\ufffd')));
    }
  });

  it('equals hashBytes over Buffer.from(text) for arbitrary strings and seeds', () => {
    // Raw UTF-16 code units, so lone and reversed surrogates show up too.
    const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code));
    const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: codeUnit, maxLength: 40 }));
    fc.assert(
      fc.property(text, fc.integer({ min: 0, max: 0xffffffff }), (input, seed) => {
        return hashString(input, seed) === hashBytes(Buffer.from(input, 'utf8'), seed);
      }),
      { numRuns: 2000 },
    );
  });

  it('handles long keys without a size cap', () => {
    const text = `${'k'.repeat(1_000_003)}é`;
    expect(hashString(text)).toBe(hashBytes(Buffer.from(text, 'utf8')));
  });

  it('returns unsigned 32-bit integers', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        const h = hashString(text);
        expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
      }),
    );
  });
});

describe('hashVirtualNode', () => {
  it('is the string hash of "id#index"', () => {
    expect(hashVirtualNode('ws://127.0.0.1:3001', 7)).toBe(hashString('ws://127.0.0.1:3001#7'));
  });
});
