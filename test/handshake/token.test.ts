import { describe, expect, it } from 'vitest';
import { isToken, TOKEN_CHAR } from '../../src/handshake/token.js';

// RFC 9110 §5.6.2, written out independently of the table.
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;

describe('token characters', () => {
  it('the table holds exactly the tchar bytes', () => {
    for (let b = 0; b < 256; b++)
      expect(TOKEN_CHAR[b] === 1, `byte 0x${b.toString(16)}`).toBe(TCHAR.test(String.fromCharCode(b)));
  });

  it('isToken takes non-empty tchar strings only', () => {
    expect(isToken('X-User-Id')).toBe(true);
    expect(isToken("a!#$%&'*+-.^_`|~9")).toBe(true);
    expect(isToken('')).toBe(false);
    expect(isToken('has space')).toBe(false);
    expect(isToken('colon:')).toBe(false);
    expect(isToken('caf\u00e9')).toBe(false);
    expect(isToken('\u0158')).toBe(false); // above 0xFF: not a byte at all
  });
});
