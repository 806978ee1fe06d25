// Hostile handshakes (issue 7), beyond test/integration/handshake.test.ts: smuggling through refused upgrades,
// bad 101s, foreign upgrade tokens, bodies, duplicated identity headers, control characters, prototype names,
// size limits at their exact boundaries, slowloris, origin tricks, path tricks, and parsers fed pathological
// input. Each refusal: exact status, socket closed, nothing reached a backend, the rejection counted.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDuration, parseSize } from '../../src/config/units.js';
import { hasToken, originAllowed } from '../../src/handshake/validate.js';
import { hashKeyOf, parseHashKeySpec } from '../../src/routing/hash-key.js';
import { isSuspiciousPath, Router } from '../../src/routing/router.js';
import { parseResponseHead } from '../../src/upstream/handshake.js';
import { type RawBackend, startRawBackend } from '../helpers/backends.js';
import { handshakeConfig, metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { receivedText, startAcceptingBackend, switchingProtocols } from '../helpers/hostile-backends.js';
import {
  closesWithin,
  openSocket,
  readUntilClose,
  SAMPLE_KEY,
  sendRequest,
  upgradeRequest,
} from '../helpers/raw-client.js';
import { timed } from '../helpers/wait.js';

const HANDSHAKE_TIMEOUT_MS = 1000;

let backend: RawBackend;
let gw: TestGateway;

beforeAll(async () => {
  backend = await startAcceptingBackend();
  gw = await startGateway(
    handshakeConfig(backend.url, { timeouts: { handshake: `${HANDSHAKE_TIMEOUT_MS}ms`, idle: '60s', drain: '1s' } }),
  );
});

afterAll(async () => {
  await gw.stop();
  await backend.close();
});

async function rejections(status: number, reason: string): Promise<number> {
  return metricValue(await gw.metrics(), 'wsgate_handshake_rejections_total', { status: String(status), reason }) ?? 0;
}

/** Sends `request`; expects exactly `status` with `X-Wsgate-Error: code`, a closed socket, no backend contact, +1. */
async function expectRefused(request: string | Buffer, status: number, code: string): Promise<void> {
  const reason = code.slice(4).toLowerCase();
  const before = await rejections(status, reason);
  const connectionsBefore = backend.connections;
  const res = await sendRequest(gw.port, request);
  expect(res.status).toBe(status);
  expect(res.headers['x-wsgate-error']).toBe(code);
  expect(res.headers.connection).toBe('close');
  expect(await closesWithin(res.socket, 5000)).toBe(true);
  expect(backend.connections).toBe(connectionsBefore);
  expect(await rejections(status, reason)).toBe(before + 1);
}

/** Sends `request`; expects a 101 from the backend, which saw exactly one connection. */
async function expectSwitched(request: string): Promise<string> {
  const connectionsBefore = backend.connections;
  const res = await sendRequest(gw.port, request);
  expect(res.status).toBe(101);
  res.socket.destroy();
  expect(backend.connections).toBe(connectionsBefore + 1);
  return receivedText(backend, connectionsBefore);
}

const base = upgradeRequest({ path: '/ws' });
const withHeaders = (lines: string) => base.replace('\r\n\r\n', `\r\n${lines}\r\n\r\n`);

describe('request smuggling through a backend that refuses the upgrade', () => {
  const answers: [string, string][] = [
    ['200 with a body', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'],
    ['500 with a body', 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops'],
    ['403 keep-alive', 'HTTP/1.1 403 Forbidden\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n'],
    ['200 chunked (length unknown)', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
    ['200 body split across writes', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello'],
  ];
  for (const [name, answer] of answers) {
    it(`${name}: the client's pipelined request never reaches any backend`, async () => {
      const raw = await startRawBackend((_req, socket) => {
        if (name.includes('split')) setTimeout(() => socket.write('world'), 50);
        return answer;
      });
      const own = await startGateway(simpleConfig([raw.url]));
      try {
        const status = Number(answer.slice(9, 12));
        const smuggled = 'GET /admin HTTP/1.1\r\nHost: internal\r\nContent-Length: 0\r\n\r\n';
        const res = await sendRequest(own.port, upgradeRequest(), false, smuggled);
        expect(res.status).toBe(status);
        const rest = await readUntilClose(res.socket, res.rest);
        if (name.includes('split')) expect(rest.toString()).toBe('helloworld');
        // One connection, one request head, no trace of the pipelined request.
        expect(raw.connections).toBe(1);
        const seen = receivedText(raw, 0);
        expect(seen).not.toContain('/admin');
        expect(seen.match(/HTTP\/1\.1\r\n/g)).toHaveLength(1);
        expect(rest.toString()).not.toContain('HTTP/1.1');
        const text = await own.metrics();
        expect(
          metricValue(text, 'wsgate_handshake_rejections_total', { status: String(status), reason: 'backend_refused' }),
        ).toBe(1);
        expect(metricValue(text, 'wsgate_connections_active')).toBe(0);
      } finally {
        await own.stop();
        await raw.close();
      }
    });
  }
});

describe('a backend 101 that does not prove it speaks WebSocket → 502, nothing tunnelled', () => {
  const bad: [string, (req: string) => string, string][] = [
    [
      'Upgrade: h2c',
      (r) => switchingProtocols(r).replace('Upgrade: websocket', 'Upgrade: h2c'),
      'WSG_UPSTREAM_BAD_RESPONSE',
    ],
    [
      'no Connection header',
      (r) => switchingProtocols(r).replace('Connection: Upgrade\r\n', ''),
      'WSG_UPSTREAM_BAD_RESPONSE',
    ],
    [
      'accept computed for another key',
      (r) => switchingProtocols(r.replace(SAMPLE_KEY, 'AAAAAAAAAAAAAAAAAAAAAA==')),
      'WSG_UPSTREAM_BAD_ACCEPT',
    ],
    ['garbage status line', () => 'HTTP/1.1 1O1 Switching\r\n\r\n', 'WSG_UPSTREAM_BAD_RESPONSE'],
    ['not HTTP at all', () => 'SSH-2.0-OpenSSH_9.6\r\n\r\n', 'WSG_UPSTREAM_BAD_RESPONSE'],
    [
      'a 20 KiB response head',
      (r) => switchingProtocols(r, `X-Pad: ${'p'.repeat(20 * 1024)}\r\n`),
      'WSG_UPSTREAM_BAD_RESPONSE',
    ],
    ['a header line without a colon', (r) => switchingProtocols(r, 'junk\r\n'), 'WSG_UPSTREAM_BAD_RESPONSE'],
  ];
  for (const [name, answer, code] of bad) {
    it(`${name} → 502 ${code}; early client frames are never forwarded`, async () => {
      const raw = await startRawBackend((req) => answer(req));
      const own = await startGateway(simpleConfig([raw.url]));
      try {
        const earlyFrame = Buffer.from('8185010203044967686f6f', 'hex'); // masked "Hello"-ish text frame
        const res = await sendRequest(own.port, upgradeRequest(), false, earlyFrame);
        expect(res.status).toBe(502);
        expect(res.headers['x-wsgate-error']).toBe(code);
        expect(await closesWithin(res.socket, 5000)).toBe(true);
        expect(Buffer.concat(raw.received[0] ?? []).indexOf(earlyFrame)).toBe(-1);
        const text = await own.metrics();
        expect(metricValue(text, 'wsgate_handshake_rejections_total', { status: '502' })).toBe(1);
        expect(metricValue(text, 'wsgate_connections_total')).toBe(0);
      } finally {
        await own.stop();
        await raw.close();
      }
    });
  }

  it('a backend that closes in the middle of its head → 502', async () => {
    const raw = await startRawBackend((_req, socket) => {
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgr');
      return undefined;
    });
    const own = await startGateway(simpleConfig([raw.url]));
    try {
      const res = await sendRequest(own.port, upgradeRequest());
      expect(res.status).toBe(502);
      expect(await closesWithin(res.socket, 5000)).toBe(true);
    } finally {
      await own.stop();
      await raw.close();
    }
  });
});

describe('upgrade tokens and bodies', () => {
  it('h2c with HTTP2-Settings → 400 WSG_BAD_UPGRADE', () =>
    expectRefused(
      upgradeRequest({
        path: '/ws',
        headers: { Upgrade: 'h2c', Connection: 'Upgrade, HTTP2-Settings', 'HTTP2-Settings': 'AAMAAABkAAQAAP__' },
      }),
      400,
      'WSG_BAD_UPGRADE',
    ));
  it('a versioned token (websocket/13) → 400', () =>
    expectRefused(upgradeRequest({ path: '/ws', headers: { Upgrade: 'websocket/13' } }), 400, 'WSG_BAD_UPGRADE'));
  it('TLS/1.0 (RFC 2817) → 400', () =>
    expectRefused(upgradeRequest({ path: '/ws', headers: { Upgrade: 'TLS/1.0' } }), 400, 'WSG_BAD_UPGRADE'));
  it('the token compares case-insensitively (Upgrade: WebSocket switches)', async () => {
    await expectSwitched(upgradeRequest({ path: '/ws', headers: { Upgrade: 'WebSocket' } }));
  });
  it('Content-Length: 0 is not a body, and is not forwarded', async () => {
    const seen = await expectSwitched(upgradeRequest({ path: '/ws', headers: { 'Content-Length': '0' } }));
    expect(seen.toLowerCase()).not.toContain('content-length');
  });
  it('Transfer-Encoding: identity → 400 WSG_BODY_ON_UPGRADE', () =>
    expectRefused(withHeaders('Transfer-Encoding: identity'), 400, 'WSG_BODY_ON_UPGRADE'));
  it('Content-Length with Transfer-Encoding → 400 from the parser', () =>
    expectRefused(withHeaders('Content-Length: 0\r\nTransfer-Encoding: chunked'), 400, 'WSG_BAD_REQUEST'));
  it('Content-Length twice → 400', () =>
    expectRefused(withHeaders('Content-Length: 0\r\nContent-Length: 0'), 400, 'WSG_BAD_REQUEST'));
  it('Content-Length: 0, 0 → 400', () => expectRefused(withHeaders('Content-Length: 0, 0'), 400, 'WSG_BAD_REQUEST'));
  it('Content-Length: -1 → 400', () => expectRefused(withHeaders('Content-Length: -1'), 400, 'WSG_BAD_REQUEST'));
  it('"Transfer-Encoding : chunked" (space before the colon) → 400', () =>
    expectRefused(withHeaders('Transfer-Encoding : chunked'), 400, 'WSG_BAD_REQUEST'));
});

describe('duplicated and conflicting identity headers', () => {
  it('Upgrade twice → 400', () => expectRefused(withHeaders('Upgrade: websocket'), 400, 'WSG_DUPLICATE_HEADER'));
  it('the same Sec-WebSocket-Key twice → 400', () =>
    expectRefused(withHeaders(`Sec-WebSocket-Key: ${SAMPLE_KEY}`), 400, 'WSG_DUPLICATE_HEADER'));
  it('Sec-WebSocket-Version twice → 400', () =>
    expectRefused(withHeaders('Sec-WebSocket-Version: 13'), 400, 'WSG_DUPLICATE_HEADER'));
  it('Origin twice → 400', () =>
    expectRefused(withHeaders('Origin: https://a.example\r\nOrigin: https://b.example'), 400, 'WSG_DUPLICATE_HEADER'));
  it('Host and HOST → 400 (names compare case-insensitively)', () =>
    expectRefused(withHeaders('HOST: localhost'), 400, 'WSG_DUPLICATE_HEADER'));
  it('"Host : x" (space before the colon) → 400', () =>
    expectRefused(base.replace('Host: localhost', 'Host : localhost'), 400, 'WSG_BAD_REQUEST'));
  it('an empty Host → 400', () => expectRefused(base.replace('Host: localhost', 'Host: '), 400, 'WSG_MISSING_HOST'));
  it('a plain request whose target is no URI form, with a request pipelined behind it → 400, nothing proxied', () =>
    expectRefused(
      'GET x?y=1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n',
      400,
      'WSG_BAD_REQUEST',
    ));
  it('an absolute-form target is routed by its own authority, never by Host (RFC 9112 §3.2.2) → 404 here', () =>
    // Host alone would match route "chat"; the target's authority, which takes its place, matches nothing.
    expectRefused(
      base.replace('GET /ws', 'GET http://internal.example/chat').replace('Host: localhost', 'Host: chat.example.com'),
      404,
      'WSG_NO_ROUTE',
    ));
  it('Sec-WebSocket-Version: 13, 8 → 426 with Sec-WebSocket-Version: 13', async () => {
    const res = await sendRequest(
      gw.port,
      upgradeRequest({ path: '/ws', headers: { 'Sec-WebSocket-Version': '13, 8' } }),
    );
    expect(res.status).toBe(426);
    expect(res.headers['sec-websocket-version']).toBe('13');
    res.socket.destroy();
  });
});

describe('methods and versions', () => {
  for (const method of ['HEAD', 'PUT', 'OPTIONS', 'DELETE']) {
    it(`${method} → 400 WSG_BAD_METHOD`, () => expectRefused(base.replace('GET', method), 400, 'WSG_BAD_METHOD'));
  }
  it('a lower-case method → 400 from the parser', () =>
    expectRefused(base.replace('GET', 'get'), 400, 'WSG_BAD_REQUEST'));
  it('HTTP/2.0 in an HTTP/1 request line → 400', () =>
    expectRefused(base.replace('HTTP/1.1', 'HTTP/2.0'), 400, 'WSG_BAD_HTTP_VERSION'));
  it('HTTP/0.9 ("GET /ws" with no version) → 400, never proxied as plain HTTP', () =>
    expectRefused('GET /ws\r\n\r\n', 400, 'WSG_BAD_HTTP_VERSION'));
  it('CONNECT is closed without an answer and reaches nothing', async () => {
    const before = backend.connections;
    const socket = await openSocket(gw.port);
    socket.write('CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n');
    const answer = await readUntilClose(socket);
    expect(answer.toString()).not.toContain('200');
    expect(backend.connections).toBe(before);
  });
});

describe('control characters in the head', () => {
  const cases: [string, string][] = [
    ['NUL in a header value', withHeaders('X-A: a\u0000b')],
    ['DEL in a header value', withHeaders('X-A: a\u007fb')],
    ['a bare LF inside a value (header injection)', withHeaders('X-A: a\nX-Injected: 1')],
    ['LF-only line endings', base.replaceAll('\r\n', '\n')],
    ['obs-fold continuation line', withHeaders('X-A: a\r\n folded')],
    ['a space inside a header name', withHeaders('X A: b')],
    ['junk after the version', base.replace('HTTP/1.1', 'HTTP/1.1x')],
  ];
  for (const [name, request] of cases) {
    it(`${name} → 400 WSG_BAD_REQUEST`, () => expectRefused(request, 400, 'WSG_BAD_REQUEST'));
  }
  it('CR LF injected into the request target → 400 (parsed as HTTP/0.9, refused)', () =>
    expectRefused('GET /ws\r\nX-Injected: 1 HTTP/1.1\r\nHost: localhost\r\n\r\n', 400, 'WSG_BAD_HTTP_VERSION'));
  it('tab and obs-text bytes in values are legal and reach the backend byte-exact', async () => {
    const obsText = Buffer.from([0x58, 0x2d, 0x42, 0x3a, 0x20, 0x63, 0x61, 0x66, 0xe9, 0x20, 0xc3, 0xa9]); // "X-B: caf\xe9 é"
    const request = Buffer.concat([
      Buffer.from(base.slice(0, -2)),
      Buffer.from('X-A: a\tb\r\n'),
      obsText,
      Buffer.from('\r\n\r\n'),
    ]);
    const before = backend.connections;
    const res = await sendRequest(gw.port, request);
    expect(res.status).toBe(101);
    res.socket.destroy();
    const seen = Buffer.concat(backend.received[before] ?? []);
    expect(seen.indexOf(Buffer.from('X-A: a\tb\r\n'))).toBeGreaterThan(0);
    expect(seen.indexOf(Buffer.concat([obsText, Buffer.from('\r\n')]))).toBeGreaterThan(0);
  });
});

describe('prototype-named headers', () => {
  it('__proto__, constructor, prototype, hasOwnProperty, toString as header names: 101, no pollution', async () => {
    const seen = await expectSwitched(
      withHeaders(
        '__proto__: {"polluted":1}\r\nconstructor: x\r\nprototype: y\r\nhasOwnProperty: z\r\ntoString: w\r\nvalueOf: v',
      ),
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.hasOwn(Object.prototype, 'polluted')).toBe(false);
    expect(typeof {}.toString).toBe('function');
    // Forwarded as ordinary headers.
    expect(seen).toContain('__proto__: {"polluted":1}\r\n');
    expect(seen).toContain('hasOwnProperty: z\r\n');
  });

  it('hash keys read from prototype-named headers, cookies and query parameters fall back or use the value', () => {
    const headers = Object.assign(Object.create(null) as Record<string, string>, { constructor: 'c1' });
    const fromHeader = hashKeyOf(
      { headers, url: '/', remoteAddress: '10.0.0.1' },
      { kind: 'header', name: 'constructor' },
    );
    expect(fromHeader).toEqual({ key: 'c1', fellBack: false });
    // An ordinary object (node's req.headers) without the header: inherited members must not become keys.
    for (const name of ['constructor', '__proto__', 'tostring', 'hasownproperty']) {
      expect(hashKeyOf({ headers: {}, url: '/', remoteAddress: '10.0.0.1' }, { kind: 'header', name })).toEqual({
        key: '10.0.0.1',
        fellBack: true,
      });
    }
    const cookie = hashKeyOf(
      { headers: { cookie: '__proto__=p; constructor=c' }, url: '/', remoteAddress: '10.0.0.1' },
      { kind: 'cookie', name: 'constructor' },
    );
    expect(cookie.key).toBe('c');
    const query = hashKeyOf(
      { headers: {}, url: '/?__proto__=q&constructor=c', remoteAddress: '10.0.0.1' },
      { kind: 'query', name: '__proto__' },
    );
    expect(query.key).toBe('q');
  });
});

describe('header size limits at their boundaries', () => {
  const lines = (n: number) =>
    upgradeRequest({ path: '/ws', headers: Object.fromEntries(Array.from({ length: n }, (_, i) => [`X-H${i}`, 'v'])) });
  it('100 header lines switch', () => expectSwitched(lines(95))); // 5 WebSocket headers + 95 = 100
  it('101 header lines → 431', () => expectRefused(lines(96), 431, 'WSG_HEADERS_TOO_LARGE'));
  it('a 15 KiB header switches', () =>
    expectSwitched(upgradeRequest({ path: '/ws', headers: { 'X-Big': 'a'.repeat(15 * 1024) } })));
  it('a 17 KiB header → 431', () =>
    expectRefused(
      upgradeRequest({ path: '/ws', headers: { 'X-Big': 'a'.repeat(17 * 1024) } }),
      431,
      'WSG_HEADERS_TOO_LARGE',
    ));
  it('a 20 KiB request target → 431', () =>
    expectRefused(upgradeRequest({ path: `/ws?q=${'a'.repeat(20_000)}` }), 431, 'WSG_HEADERS_TOO_LARGE'));
  it('1000 tiny headers in one write → 431 (node counts, we count)', () =>
    expectRefused(
      withHeaders(Array.from({ length: 1000 }, (_, i) => `a${i}:`).join('\r\n')),
      431,
      'WSG_HEADERS_TOO_LARGE',
    ));
});

describe('slowloris: heads that never finish are closed at the handshake timeout', () => {
  async function slowClient(drip: (write: (s: string) => void) => NodeJS.Timeout | undefined) {
    const before = await rejections(408, 'handshake_timeout');
    const socket = await openSocket(gw.port);
    const started = Date.now();
    const answer = readUntilClose(socket);
    const timer = drip((s) => {
      if (!socket.destroyed) socket.write(s);
    });
    const closed = await closesWithin(socket, HANDSHAKE_TIMEOUT_MS * 6);
    clearInterval(timer);
    const elapsed = Date.now() - started;
    expect(closed).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS * 0.9);
    expect(elapsed).toBeLessThan(HANDSHAKE_TIMEOUT_MS * 4);
    expect((await answer).toString()).toMatch(/^HTTP\/1\.1 408 /);
    expect(await rejections(408, 'handshake_timeout')).toBe(before + 1);
  }

  it('one byte per second', async () => {
    const request = base;
    let i = 0;
    const before = backend.connections;
    await slowClient((write) => {
      write(request[i++] as string);
      return setInterval(() => write(request[i++] ?? 'x'), 1000);
    });
    expect(backend.connections).toBe(before);
  });
  it('a header line every 200 ms, forever', () =>
    slowClient((write) => {
      write('GET /ws HTTP/1.1\r\n');
      return setInterval(() => write('X-Drip: 1\r\n'), 200);
    }));
  it('connects and sends nothing', () => slowClient(() => undefined));
  it('stops in the middle of the request line', () =>
    slowClient((write) => {
      write('GET /ws HTT');
      return undefined;
    }));
});

describe('cross-site WebSocket hijacking: Origin allowlist', () => {
  const chat = (origin: string) =>
    upgradeRequest({ path: '/chat', host: 'chat.example.com', headers: { Origin: origin } });
  it('the allowed origin switches, in any letter case', () => expectSwitched(chat('HTTPS://Chat.Example.COM')));
  for (const origin of [
    'https://chat.example.com.evil.example',
    'https://evil.example/https://chat.example.com',
    'http://chat.example.com',
    'https://chat.example.com:8443',
    'https://chat.example.com/',
    'null',
    '',
  ]) {
    it(`Origin ${JSON.stringify(origin)} → 403`, () =>
      expectRefused(
        origin === '' ? upgradeRequest({ path: '/chat', host: 'chat.example.com' }) : chat(origin),
        403,
        'WSG_ORIGIN_NOT_ALLOWED',
      ));
  }
});

describe('paths: dot segments and encodings never reach a backend; long queries route correctly', () => {
  for (const path of [
    '/ws/%2e%2e/admin',
    '/ws/%2E%2e/admin',
    '/ws%2Fadmin',
    '/ws/%5c..%5cadmin',
    '/ws\\..\\admin',
    '/ws/./x',
  ]) {
    it(`${path} → 400 WSG_BAD_PATH`, () => expectRefused(upgradeRequest({ path }), 400, 'WSG_BAD_PATH'));
  }
  it('"//internal.example/ws" is not a route → 404', () =>
    expectRefused(upgradeRequest({ path: '//internal.example/ws' }), 404, 'WSG_NO_ROUTE'));
  it('dots inside the query are data, not path', async () => {
    const seen = await expectSwitched(upgradeRequest({ path: '/ws?next=../../admin' }));
    expect(seen.startsWith('GET /ws?next=../../admin HTTP/1.1\r\n')).toBe(true);
  });
  it('an 8000-byte percent-encoded query routes to /ws and reaches the backend byte-exact', async () => {
    const query = `?q=${'%41%42'.repeat(1333)}`;
    const seen = await expectSwitched(upgradeRequest({ path: `/ws${query}` }));
    expect(seen.startsWith(`GET /ws${query} HTTP/1.1\r\n`)).toBe(true);
  });
});

describe('pathological inputs to every parser finish fast (linear time)', () => {
  // Bounds are generous (2 shared cores, CI); the inputs are 1 MiB, so a quadratic parser takes minutes.
  const BOUND_MS = 500;
  const MiB = 1 << 20;

  it('hash keys: cookie, query and header extraction', () => {
    const remoteAddress = '10.0.0.1';
    const cookies = [
      ';'.repeat(MiB),
      'a'.repeat(MiB),
      'ab=ab='.repeat(MiB / 6),
      ' ='.repeat(MiB / 2),
      'session'.repeat(MiB / 7),
    ];
    for (const cookie of cookies) {
      const { ms, result } = timed(() =>
        hashKeyOf({ headers: { cookie }, url: '/', remoteAddress }, { kind: 'cookie', name: 'sessionx' }),
      );
      expect(result.fellBack).toBe(true);
      expect(ms).toBeLessThan(BOUND_MS);
    }
    const manyCookies = Array.from({ length: 50_000 }, (_, i) => `c${i}=${i}`).join('; ');
    const last = timed(() =>
      hashKeyOf(
        { headers: { cookie: `${manyCookies}; sid=x` }, url: '/', remoteAddress },
        { kind: 'cookie', name: 'sid' },
      ),
    );
    expect(last.result.key).toBe('x');
    expect(last.ms).toBeLessThan(BOUND_MS);
    const queries = [
      `/?${'&'.repeat(MiB)}`,
      `/?${'room'.repeat(MiB / 4)}`,
      `/?room=${'%'.repeat(MiB)}`,
      `/?${'=&'.repeat(MiB / 2)}`,
    ];
    for (const url of queries) {
      const { ms } = timed(() => hashKeyOf({ headers: {}, url, remoteAddress }, { kind: 'query', name: 'room' }));
      expect(ms).toBeLessThan(BOUND_MS);
    }
    const badPercent = timed(() =>
      hashKeyOf(
        { headers: {}, url: `/?room=${'%E0%A4%A'.repeat(MiB / 8)}`, remoteAddress },
        { kind: 'query', name: 'room' },
      ),
    );
    expect(badPercent.result.fellBack).toBe(false);
    expect(badPercent.ms).toBeLessThan(BOUND_MS);
    const path = timed(() =>
      hashKeyOf({ headers: {}, url: `/${'a/'.repeat(MiB / 2)}?#`, remoteAddress }, { kind: 'path' }),
    );
    expect(path.ms).toBeLessThan(BOUND_MS);
    for (const spec of [
      'header:'.padEnd(MiB, 'x'),
      `query:${'&'.repeat(MiB)}`,
      `cookie:${' '.repeat(MiB)}`,
      ':'.repeat(MiB),
    ]) {
      const { ms } = timed(() => parseHashKeySpec(spec));
      expect(ms).toBeLessThan(BOUND_MS);
    }
  });

  it('durations and sizes in config', () => {
    const inputs = [
      '1'.repeat(MiB),
      `${'1'.repeat(60)}s`,
      `${' '.repeat(30)}5${' '.repeat(30)}`,
      `1.${'1'.repeat(61)}x`,
      `${'1.'.repeat(MiB / 2)}`,
      `5${'s'.repeat(MiB)}`,
      `${'9'.repeat(63)}`,
    ];
    for (const input of inputs) {
      for (const parse of [parseDuration, parseSize]) {
        const { ms, result } = timed(() => parse(input));
        expect(ms).toBeLessThan(BOUND_MS);
        if (typeof result === 'number')
          expect(Number.isFinite(result) || result === Number.POSITIVE_INFINITY).toBe(true);
      }
    }
    expect(parseDuration('1'.repeat(MiB))).toEqual({ error: expect.any(String) });
    expect(parseSize('1.5MiB')).toBe(1_572_864);
  });

  it('token lists, origins, paths, routes and backend response heads', () => {
    for (const list of [
      'upgrade'.repeat(MiB / 7),
      'u'.repeat(MiB),
      ', '.repeat(MiB / 2),
      'xupgrade,'.repeat(MiB / 9),
    ]) {
      const { ms, result } = timed(() => hasToken(list, 'upgrade'));
      expect(result).toBe(false);
      expect(ms).toBeLessThan(BOUND_MS);
    }
    const origins = Array.from({ length: 1000 }, (_, i) => `https://o${i}.example`);
    expect(timed(() => originAllowed('https://x'.padEnd(MiB, 'x'), origins)).ms).toBeLessThan(BOUND_MS);
    for (const target of [
      `/${'./'.repeat(MiB / 2)}`,
      `/${'%2'.repeat(MiB / 3)}`,
      `/${'a'.repeat(MiB)}`,
      `/${'/'.repeat(MiB)}`,
    ]) {
      expect(timed(() => isSuspiciousPath(target)).ms).toBeLessThan(BOUND_MS);
    }
    const router = new Router([
      { name: 'a', pathPrefix: '/chat', host: '*.example.com' },
      { name: 'b', pathPrefix: '/' },
    ]);
    const routed = timed(() =>
      router.match(`${'a.'.repeat(MiB / 2)}example.com:${'9'.repeat(1000)}`, `/chat${'x'.repeat(MiB)}`),
    );
    expect(routed.ms).toBeLessThan(BOUND_MS);
    const head = Buffer.from(`HTTP/1.1 101 X\r\n${'a:b\r\n'.repeat(MiB / 5)}\r\n`);
    const parsed = timed(() => parseResponseHead(head));
    expect(parsed.result?.status).toBe(101);
    expect(parsed.ms).toBeLessThan(BOUND_MS * 4);
  });
});
