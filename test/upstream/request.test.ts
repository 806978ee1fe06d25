// The request head a backend receives (upgrade and plain HTTP), the headers of a plain answer, and the parser for
// an upgrade answer.

import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseResponseHead } from '../../src/upstream/handshake.js';
import { endToEndHeaders, forwardedHeaders, upstreamRequestHead } from '../../src/upstream/request.js';

function request(url: string, headers: [string, string][]): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.url = url;
  req.rawHeaders = headers.flat();
  const map: Record<string, string> = {};
  for (const [k, v] of headers) map[k.toLowerCase()] ??= v;
  req.headers = map;
  return req;
}

describe('upstreamRequestHead', () => {
  it('keeps end-to-end headers in order, drops hop-by-hop ones, and adds forwarding headers', () => {
    const head = upstreamRequestHead(
      request('/chat?room=1', [
        ['Host', 'chat.example.com'],
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade, X-Hop'],
        ['X-Hop', 'drop me'],
        ['Keep-Alive', 'timeout=5'],
        ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
        ['Sec-WebSocket-Version', '13'],
        ['Sec-WebSocket-Protocol', 'chat'],
        ['X-Forwarded-For', '203.0.113.7'],
        ['X-Forwarded-Proto', 'spoofed'],
        ['Cookie', 'sid=abc'],
      ]),
      { clientAddress: '2001:db8::1', secure: true },
    );
    expect(head).toBe(
      'GET /chat?room=1 HTTP/1.1\r\n' +
        'Host: chat.example.com\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
        'Sec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Protocol: chat\r\n' +
        'Cookie: sid=abc\r\n' +
        'X-Forwarded-For: 203.0.113.7, 2001:db8::1\r\n' +
        'X-Forwarded-Proto: https\r\n' +
        'X-Forwarded-Host: chat.example.com\r\n' +
        'Forwarded: for="[2001:db8::1]";proto=https;host=chat.example.com\r\n' +
        'Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
  });
});

describe('forwardedHeaders (plain HTTP)', () => {
  it('keeps Content-Length, drops Transfer-Encoding (the sender frames the body) and hop-by-hop ones, a lone nominated one included', () => {
    const headers = forwardedHeaders(
      request('/poll', [
        ['Host', 'a.example'],
        ['Connection', 'X-Solo'],
        ['X-Solo', 'drop me'],
        ['TE', 'trailers'],
        ['Transfer-Encoding', 'chunked'],
        ['Content-Length', '5'],
        ['Expect', '100-continue'],
        ['Content-Type', 'text/plain'],
      ]),
      { clientAddress: '192.0.2.1', secure: false },
    );
    expect(headers).toEqual([
      'Host',
      'a.example',
      'Content-Length',
      '5',
      'Content-Type',
      'text/plain',
      'X-Forwarded-For',
      '192.0.2.1',
      'X-Forwarded-Proto',
      'http',
      'X-Forwarded-Host',
      'a.example',
      'Forwarded',
      'for=192.0.2.1;proto=http;host=a.example',
    ]);
  });

  it('never drops the body framing or Host because Connection names them (an unframed body would be smuggled)', () => {
    const headers = forwardedHeaders(
      request('/poll', [
        ['Host', 'a.example'],
        ['Connection', 'content-length, transfer-encoding, host, x-hop'],
        ['Content-Length', '30'],
        ['X-Hop', 'drop me'],
      ]),
      { clientAddress: '192.0.2.1', secure: false },
    );
    expect(headers.slice(0, 4)).toEqual(['Host', 'a.example', 'Content-Length', '30']);
    expect(headers).not.toContain('X-Hop');
  });
});

describe('forwardedHeaders: the sticky cookie of the pool', () => {
  it('is taken out of every Cookie line; other cookies stay, a line left empty goes', () => {
    const headers = forwardedHeaders(
      request('/poll', [
        ['Host', 'a.example'],
        ['Cookie', 'a=1; SRV=x; b=2'],
        ['Cookie', 'SRV=y'],
      ]),
      { clientAddress: '192.0.2.1', secure: false, stickyCookie: 'SRV' },
    );
    expect(headers.slice(0, 4)).toEqual(['Host', 'a.example', 'Cookie', 'a=1; b=2']);
    expect(headers.filter((h) => h.includes('SRV'))).toEqual([]);
  });
});

describe('endToEndHeaders (a plain answer)', () => {
  it('drops hop-by-hop headers, Transfer-Encoding and what Connection names; keeps repeats in order', () => {
    const raw = [
      'Set-Cookie',
      'a=1',
      'Connection',
      'keep-alive, X-Backend-Hop',
      'Keep-Alive',
      'timeout=600',
      'X-Backend-Hop',
      'internal',
      'Transfer-Encoding',
      'chunked',
      'Set-Cookie',
      'b=2',
    ];
    expect(endToEndHeaders(raw, 'keep-alive, X-Backend-Hop')).toEqual(['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
  });
});

describe('parseResponseHead', () => {
  it('parses the status and lower-cased headers, a repeated one joined as a list (RFC 9110 §5.3)', () => {
    const raw = Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX-A: 1\r\nx-a: 2\r\n\r\n');
    const head = parseResponseHead(raw);
    expect(head?.status).toBe(101);
    expect(head?.headers.get('upgrade')).toBe('websocket');
    expect(head?.headers.get('x-a')).toBe('1, 2');
    expect(head?.raw).toBe(raw);
  });

  it.each(['HTTP/2 101 x\r\n\r\n', 'garbage\r\n\r\n', 'HTTP/1.1 101 OK\r\nno colon line\r\n\r\n'])(
    'refuses %j',
    (text) => {
      expect(parseResponseHead(Buffer.from(text))).toBeUndefined();
    },
  );
});
