// RFC 6455 §4.2.1 request checks and the small parsers behind them, without sockets.

import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Errors } from '../../src/errors.js';
import { acceptFor } from '../../src/handshake/accept.js';
import { hasToken, isValidHost, originAllowed, validateUpgrade } from '../../src/handshake/validate.js';

function request(method: string, version: string, headers: [string, string][]): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.method = method;
  const [major, minor] = version.split('.').map(Number);
  req.httpVersionMajor = major ?? 1;
  req.httpVersionMinor = minor ?? 1;
  req.rawHeaders = headers.flat();
  const map: Record<string, string> = {};
  for (const [k, v] of headers) map[k.toLowerCase()] ??= v;
  req.headers = map;
  return req;
}

const GOOD: [string, string][] = [
  ['Host', 'example.com'],
  ['Upgrade', 'websocket'],
  ['Connection', 'keep-alive, Upgrade'],
  ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
  ['Sec-WebSocket-Version', '13'],
];

function without(name: string): [string, string][] {
  return GOOD.filter(([k]) => k !== name);
}

describe('validateUpgrade (RFC 6455 §4.2.1)', () => {
  it('accepts the §1.3 sample request', () => {
    expect(validateUpgrade(request('GET', '1.1', GOOD))).toEqual({ ok: true, key: 'dGhlIHNhbXBsZSBub25jZQ==' });
  });

  it.each([
    ['POST', '1.1', GOOD, Errors.BAD_METHOD],
    ['GET', '1.0', GOOD, Errors.BAD_HTTP_VERSION],
    ['GET', '1.1', without('Host'), Errors.MISSING_HOST],
    ['GET', '1.1', [...without('Upgrade'), ['Upgrade', 'h2c']], Errors.BAD_UPGRADE],
    ['GET', '1.1', [...without('Connection'), ['Connection', 'close']], Errors.BAD_CONNECTION],
    [
      'GET',
      '1.1',
      [...without('Sec-WebSocket-Key'), ['Sec-WebSocket-Key', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAA']],
      Errors.BAD_KEY,
    ],
    ['GET', '1.1', [...without('Sec-WebSocket-Version'), ['Sec-WebSocket-Version', '8']], Errors.BAD_VERSION],
    ['GET', '1.1', [...GOOD, ['Content-Length', '3']], Errors.BODY_ON_UPGRADE],
    ['GET', '1.1', [...GOOD, ['Transfer-Encoding', 'chunked']], Errors.BODY_ON_UPGRADE],
    ['GET', '1.1', [...GOOD, ['host', 'other.example']], Errors.DUPLICATE_HEADER],
  ] as const)('%s HTTP/%s → %o', (method, version, headers, error) => {
    expect(validateUpgrade(request(method, version, [...headers] as [string, string][]))).toEqual({ ok: false, error });
  });

  it('refuses more than 100 header lines with 431', () => {
    const many: [string, string][] = Array.from({ length: 120 }, (_, i) => [`X-${i}`, 'v']);
    expect(validateUpgrade(request('GET', '1.1', [...GOOD, ...many]))).toEqual({
      ok: false,
      error: Errors.HEADERS_TOO_LARGE,
    });
  });
});

describe('helpers', () => {
  it('computes Sec-WebSocket-Accept (RFC 6455 §1.3 vector)', () => {
    expect(acceptFor('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('matches Connection tokens case-insensitively and whole', () => {
    expect(hasToken('keep-alive, Upgrade', 'upgrade')).toBe(true);
    expect(hasToken('UPGRADE', 'upgrade')).toBe(true);
    expect(hasToken('upgraded', 'upgrade')).toBe(false);
    expect(hasToken('x-upgrade', 'upgrade')).toBe(false);
    expect(hasToken(undefined, 'upgrade')).toBe(false);
  });

  it('checks origins against an allowlist case-insensitively', () => {
    expect(originAllowed('https://Chat.Example.com', ['https://chat.example.com'])).toBe(true);
    expect(originAllowed('https://evil.example', ['https://chat.example.com'])).toBe(false);
    expect(originAllowed(undefined, ['https://chat.example.com'])).toBe(false);
    expect(originAllowed(undefined, undefined)).toBe(true);
  });
});

describe('isValidHost (RFC 9112 §3.2: uri-host [":" port])', () => {
  it.each([
    'example.com',
    'example.com:',
    'Example.COM:8080',
    '127.0.0.1:80',
    '[::1]',
    '[::1]:8080',
    'a_b.example',
    'xn--bcher-kva.example',
  ])('%s is a Host', (host) => expect(isValidHost(host)).toBe(true));
  it.each(['[::1]evil', 'a.example:80:x', 'a.example:http', 'a example', 'a.example/x', '[::1', ':80', 'a@b.example'])(
    '%s is not',
    (host) => expect(isValidHost(host)).toBe(false),
  );
});
