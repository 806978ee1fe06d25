import { describe, expect, it } from 'vitest';
import { bodyFraming } from '../../src/proxy/refusal-relay.js';
import { parseResponseHead } from '../../src/upstream/handshake.js';

function framingOf(head: string) {
  const parsed = parseResponseHead(Buffer.from(`${head}\r\n\r\n`, 'latin1'));
  if (!parsed) throw new Error('unparseable head');
  return bodyFraming(parsed);
}

describe('bodyFraming (RFC 9112 §6.3)', () => {
  it('no body for 1xx, 204 and 304, whatever the headers say', () => {
    expect(framingOf('HTTP/1.1 204 No Content\r\nContent-Length: 10')).toEqual({ kind: 'none' });
    expect(framingOf('HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked')).toEqual({ kind: 'none' });
  });

  it('Transfer-Encoding wins over Content-Length; chunked only when it is the last coding', () => {
    expect(framingOf('HTTP/1.1 401 No\r\nContent-Length: 3\r\nTransfer-Encoding: chunked')).toEqual({
      kind: 'chunked',
    });
    expect(framingOf('HTTP/1.1 401 No\r\nTransfer-Encoding: gzip, CHUNKED')).toEqual({ kind: 'chunked' });
    expect(framingOf('HTTP/1.1 401 No\r\nTransfer-Encoding: chunked, gzip')).toEqual({ kind: 'close' });
  });

  it('Content-Length: one valid value (repeated lines of the same value count once), else invalid', () => {
    expect(framingOf('HTTP/1.1 403 No\r\nContent-Length: 4')).toEqual({ kind: 'length', bytes: 4 });
    expect(framingOf('HTTP/1.1 403 No\r\nContent-Length: 4\r\nContent-Length: 4')).toEqual({
      kind: 'length',
      bytes: 4,
    });
    expect(framingOf('HTTP/1.1 403 No\r\nContent-Length: 4\r\nContent-Length: 5')).toEqual({ kind: 'invalid' });
    expect(framingOf('HTTP/1.1 403 No\r\nContent-Length: -1')).toEqual({ kind: 'invalid' });
    expect(framingOf('HTTP/1.1 403 No\r\nContent-Length: 0x10')).toEqual({ kind: 'invalid' });
  });

  it('neither: the body ends when the backend closes', () => {
    expect(framingOf('HTTP/1.1 500 Oops')).toEqual({ kind: 'close' });
  });
});
