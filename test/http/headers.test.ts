// Header lists between undici and node:http (src/http/headers.ts): bytes kept exactly, a line added or set in the
// right place.

import { describe, expect, it } from 'vitest';
import { latin1Headers, withHeaderLine, withHeaderSet } from '../../src/http/headers.js';

describe('latin1Headers', () => {
  it('one char per byte, so obs-text (0xE9) and other high bytes go back out as the same bytes', () => {
    const raw = [Buffer.from('X-Name'), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0xff])];
    const out = latin1Headers(raw);
    expect(out).toEqual(['X-Name', 'caf\u00e9\u00ff']);
    expect(Buffer.from(out[1] as string, 'latin1')).toEqual(raw[1]);
  });

  it('strings pass through, names keep their case and order, repeats stay separate', () => {
    expect(latin1Headers(['Set-Cookie', 'a=1', Buffer.from('set-cookie'), Buffer.from('b=2')])).toEqual([
      'Set-Cookie',
      'a=1',
      'set-cookie',
      'b=2',
    ]);
  });
});

describe('withHeaderLine', () => {
  it('adds the line after the last header, before the blank line; everything else byte for byte', () => {
    const head = Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX: \u00e9\r\n\r\n', 'latin1');
    const out = withHeaderLine(head, 'Set-Cookie', 'S=v; Path=/');
    expect(out.toString('latin1')).toBe(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX: \u00e9\r\nSet-Cookie: S=v; Path=/\r\n\r\n',
    );
  });

  it('after interim answers, the line goes into the final head', () => {
    const head = Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nA: b\r\n\r\n');
    expect(withHeaderLine(head, 'C', 'd').toString()).toBe(
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nA: b\r\nC: d\r\n\r\n',
    );
  });
});

describe('withHeaderSet', () => {
  it("drops the final head's lines of that name in any case and adds one; every other byte kept", () => {
    const head = Buffer.from(
      'HTTP/1.1 101 X\r\nX-Request-Id: a\r\nB: \u00e9\r\nx-request-ID : b\r\nX-Request-Idx: c\r\n\r\n',
      'latin1',
    );
    expect(withHeaderSet(head, 'X-Request-Id', 'mine').toString('latin1')).toBe(
      'HTTP/1.1 101 X\r\nB: \u00e9\r\nX-Request-Idx: c\r\nX-Request-Id: mine\r\n\r\n',
    );
  });

  it('leaves interim answers as they are and works on a head without header lines', () => {
    const head = Buffer.from(
      'HTTP/1.1 103 Early Hints\r\nX-Request-Id: hint\r\n\r\nHTTP/1.1 101 X\r\nX-Request-Id: a\r\n\r\n',
    );
    expect(withHeaderSet(head, 'X-Request-Id', 'mine').toString()).toBe(
      'HTTP/1.1 103 Early Hints\r\nX-Request-Id: hint\r\n\r\nHTTP/1.1 101 X\r\nX-Request-Id: mine\r\n\r\n',
    );
    expect(withHeaderSet(Buffer.from('HTTP/1.1 101 X\r\n\r\n'), 'A', 'b').toString()).toBe(
      'HTTP/1.1 101 X\r\nA: b\r\n\r\n',
    );
  });
});
