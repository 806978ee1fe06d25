// Plain (non-upgrade) HTTP through the gateway on real sockets: what the backend receives (forwarding and
// hop-by-hop headers, the exact request target, bodies) and what the client gets (refusals, 502/504, responses).

import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { listenTracked, refusedPort } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { lenientGatewayFor, metricValue, type TestGateway } from '../helpers/gateway.js';
import { openSocket, readResponseHead, readUntilClose, sendRequest, upgradeRequest } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: IncomingMessage['headers'];
  body: Buffer;
  httpVersion: string;
}

interface HttpBackend {
  readonly url: string;
  readonly port: number;
  readonly seen: Seen[];
  readonly server: Server;
  /** Open TCP connections on the backend. */
  open(): number;
}

/** A plain HTTP backend that records each request and answers via `handler` (default: 200 "ok"). */
async function httpBackend(
  handler?: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void,
): Promise<HttpBackend> {
  const seen: Seen[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        headers: req.headers,
        body,
        httpVersion: req.httpVersion,
      });
      if (handler) handler(req, res, body);
      else {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('ok');
      }
    });
  });
  const listening = await listenTracked(server, cleanups);
  return { ...listening, seen, server };
}

const gatewayFor = (backends: string[], extra: Record<string, unknown> = {}) =>
  lenientGatewayFor(cleanups, backends, extra);

/** Reads one whole HTTP/1.1 response (Content-Length or chunked) from `socket`, starting with `initial`. */
function readFullResponse(
  socket: Socket,
  initial: Buffer = Buffer.alloc(0),
): Promise<{ status: number; headers: Record<string, string>; body: Buffer; rest: Buffer; raw: string }> {
  return new Promise((resolve, reject) => {
    let buf = initial;
    const tryParse = (): boolean => {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return false;
      const head = buf.subarray(0, end).toString('latin1');
      const [statusLine, ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        const k = l.slice(0, i).trim().toLowerCase();
        headers[k] = headers[k] === undefined ? l.slice(i + 1).trim() : `${headers[k]}, ${l.slice(i + 1).trim()}`;
      }
      const status = Number(statusLine?.split(' ')[1]);
      let at = end + 4;
      if (status === 100) {
        // informational: skip it and parse the next
        buf = buf.subarray(at);
        return tryParse();
      }
      if (headers['content-length'] !== undefined) {
        const len = Number(headers['content-length']);
        if (buf.length < at + len) return false;
        finish(status, headers, buf.subarray(at, at + len), buf.subarray(at + len), head);
        return true;
      }
      if (headers['transfer-encoding'] === 'chunked') {
        const parts: Buffer[] = [];
        for (;;) {
          const lineEnd = buf.indexOf('\r\n', at);
          if (lineEnd < 0) return false;
          const size = Number.parseInt(buf.subarray(at, lineEnd).toString('latin1'), 16);
          if (buf.length < lineEnd + 2 + size + 2) return false;
          if (size === 0) {
            finish(status, headers, Buffer.concat(parts), buf.subarray(lineEnd + 4), head);
            return true;
          }
          parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
          at = lineEnd + 2 + size + 2;
        }
      }
      return false;
    };
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      tryParse();
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`closed before a whole response: ${JSON.stringify(buf.toString('latin1'))}`));
    };
    const finish = (status: number, headers: Record<string, string>, body: Buffer, rest: Buffer, raw: string) => {
      cleanup();
      socket.pause();
      resolve({ status, headers, body, rest, raw });
    };
    const cleanup = () => {
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
    };
    socket.on('error', () => {});
    if (tryParse()) return;
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}

/** Every header line the backend saw with this (lower-case) name. */
function rawValues(s: Seen, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.rawHeaders.length; i += 2) {
    if ((s.rawHeaders[i] as string).toLowerCase() === name) out.push(s.rawHeaders[i + 1] as string);
  }
  return out;
}

/** An HTTP backend that also completes WebSocket upgrades (raw 101) and records the upgrade requests' headers. */
async function mixedBackend(): Promise<HttpBackend & { upgrades: IncomingMessage['headers'][] }> {
  const b = await httpBackend();
  const upgrades: IncomingMessage['headers'][] = [];
  b.server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    upgrades.push(req.headers);
    socket.on('error', () => {});
    const key = req.headers['sec-websocket-key'] ?? '';
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
  });
  return Object.assign(b, { upgrades });
}

const rejections = async (gw: TestGateway, labels: Record<string, string>) =>
  metricValue(await gw.metrics(), 'wsgate_handshake_rejections_total', labels) ?? 0;
const upstreamErrors = async (gw: TestGateway, reason: string) =>
  metricValue(await gw.metrics(), 'wsgate_upstream_errors_total', { reason }) ?? 0;

describe('forwarding headers: the same as on the upgrade path (src/upstream/request.ts)', () => {
  it('client-supplied X-Forwarded-Proto / X-Forwarded-Host are replaced, not trusted', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write(
      'GET /poll HTTP/1.1\r\nHost: real.example\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\r\n',
    );
    const res = await readFullResponse(socket);
    expect(res.status).toBe(200);
    socket.destroy();
    const seen = b.seen[0] as Seen;
    expect(rawValues(seen, 'x-forwarded-proto')).toEqual(['http']);
    expect(rawValues(seen, 'x-forwarded-host')).toEqual(['real.example']);
  });

  it('RFC 7239 Forwarded is added for this hop', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\nHost: real.example\r\n\r\n');
    res.socket.destroy();
    expect(res.status).toBe(200);
    expect(rawValues(b.seen[0] as Seen, 'forwarded')).toEqual(['for=127.0.0.1;proto=http;host=real.example']);
  });

  it("the client's X-Forwarded-For and Forwarded are appended to, in one line each", async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const res = await sendRequest(
      gw.port,
      'GET /poll HTTP/1.1\r\nHost: real.example\r\nX-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\n' +
        'X-Forwarded-For: 198.51.100.1\r\n\r\n',
    );
    res.socket.destroy();
    expect(res.status).toBe(200);
    const seen = b.seen[0] as Seen;
    expect(rawValues(seen, 'x-forwarded-for')).toEqual(['203.0.113.9, 198.51.100.1, 127.0.0.1']);
    expect(rawValues(seen, 'forwarded')).toEqual(['for=203.0.113.9, for=127.0.0.1;proto=http;host=real.example']);
  });

  it('a plain request and an upgrade with the same headers carry the same four forwarding headers', async () => {
    const b = await mixedBackend();
    const gw = await gatewayFor([b.url]);
    const client = {
      Host: 'real.example:8080',
      'X-Forwarded-For': '203.0.113.9',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Host': 'evil.example',
      Forwarded: 'for=203.0.113.9;proto=https',
    };
    const up = await sendRequest(gw.port, upgradeRequest({ path: '/ws', headers: client }));
    up.socket.destroy();
    expect(up.status).toBe(101);
    let plain = 'GET /poll HTTP/1.1\r\n';
    for (const [k, v] of Object.entries(client)) plain += `${k}: ${v}\r\n`;
    const res = await sendRequest(gw.port, `${plain}\r\n`);
    res.socket.destroy();
    expect(res.status).toBe(200);
    const names = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded'] as const;
    const upgradeSaw = names.map((n) => b.upgrades[0]?.[n]);
    expect(upgradeSaw).toEqual([
      '203.0.113.9, 127.0.0.1',
      'http',
      'real.example:8080',
      'for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host="real.example:8080"',
    ]);
    expect(names.map((n) => (b.seen[0] as Seen).headers[n])).toEqual(upgradeSaw);
  });

  it('X-Forwarded-Proto and Forwarded proto are https for plain HTTP over TLS', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url], {
      listeners: [
        { name: 'public', address: '127.0.0.1', port: 0 },
        { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
      ],
    });
    const socket = await openSocket(gw.tlsPort, true);
    socket.write('GET /poll HTTP/1.1\r\nHost: real.example\r\n\r\n');
    const res = await readFullResponse(socket);
    expect(res.status).toBe(200);
    socket.destroy();
    const seen = b.seen[0] as Seen;
    expect(rawValues(seen, 'x-forwarded-proto')).toEqual(['https']);
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers.forwarded).toBe('for=127.0.0.1;proto=https;host=real.example');
  });
});

describe('hop-by-hop headers (RFC 9110 §7.6.1)', () => {
  it('Keep-Alive, TE, Proxy-Authorization, Proxy-Connection and Connection-nominated headers do not reach the backend', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write(
      'GET /poll HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret-hop\r\n' +
        'Keep-Alive: timeout=99\r\nTE: trailers\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n' +
        'X-End: end-to-end\r\n\r\n',
    );
    const res = await readFullResponse(socket);
    expect(res.status).toBe(200);
    socket.destroy();
    const seen = b.seen[0] as Seen;
    expect(seen.headers['x-end']).toBe('end-to-end');
    const leaked = ['x-hop', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection'].filter(
      (h) => seen.headers[h] !== undefined,
    );
    expect(leaked).toEqual([]);
    // The gateway's own connection to the backend: node's agent says keep-alive, nothing of the client's.
    expect(seen.headers.connection).toBe('keep-alive');
  });

  it('a header that Connection names alone (no list) does not reach the backend either', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const res = await sendRequest(
      gw.port,
      'GET /poll HTTP/1.1\r\nHost: localhost\r\nConnection: X-Solo\r\nX-Solo: hop\r\n\r\n',
    );
    res.socket.destroy();
    expect(res.status).toBe(200);
    expect((b.seen[0] as Seen).headers['x-solo']).toBeUndefined();
  });

  it("the backend's hop-by-hop response headers do not reach the client", async () => {
    const b = await httpBackend((_req, res) => {
      res.writeHead(200, {
        'Content-Type': 'text/plain',
        'Content-Length': '2',
        Connection: 'keep-alive, X-Backend-Hop',
        'X-Backend-Hop': 'internal',
        'Keep-Alive': 'timeout=600',
        'Proxy-Connection': 'keep-alive',
        'X-End': 'end-to-end',
      });
      res.end('ok');
    });
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write('GET /poll HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Client-Hop\r\n\r\n');
    const res = await readFullResponse(socket);
    socket.destroy();
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('ok');
    expect(res.headers['x-end']).toBe('end-to-end');
    expect(res.headers['x-backend-hop']).toBeUndefined();
    expect(res.headers['proxy-connection']).toBeUndefined();
    // The gateway closes idle client connections after 5 s: the backend's 600 s must not be advertised, and the
    // client's own Connection tokens are not echoed back.
    expect(res.headers['keep-alive']).toBe('timeout=5');
    expect(res.headers.connection).toBe('keep-alive');
  });

  it('a client that sends Connection: close gets Connection: close and the connection ends (RFC 9112 §9.6)', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write('GET /poll HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    const res = await readFullResponse(socket);
    expect(res.status).toBe(200);
    expect(res.headers.connection).toBe('close');
    await readUntilClose(socket, res.rest);
    expect(socket.readableEnded || socket.destroyed).toBe(true);
  });
});

describe('the request target reaches the backend byte-exact (RFC 9110 §7.7, as on the upgrade path)', () => {
  const targets = [
    ['a quote in the query (RFC 3986 sub-delim)', "/poll?q='x'"],
    ['an empty query', '/poll?'],
    ['Socket.IO polling with odd but legal bytes', '/socket.io/?EIO=4&transport=polling&t=P~x|y^`{}&sid=a%2Bb'],
    ['a double slash and a percent-encoded space and UTF-8', '//p%20th/%C3%A9?a=%7e%41'],
  ] as const;
  for (const [name, target] of targets) {
    it(name, async () => {
      const b = await httpBackend();
      const gw = await gatewayFor([b.url]);
      const socket = await openSocket(gw.port);
      socket.write(Buffer.from(`GET ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`, 'latin1'));
      const res = await readFullResponse(socket);
      socket.destroy();
      expect(res.status).toBe(200);
      expect((b.seen[0] as Seen).url).toBe(target);
    });
  }

  it('also with Expect: 100-continue', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write("POST /poll?q='x'& HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    const cont = await readResponseHead(socket);
    expect(cont.status).toBe(100);
    socket.write('hi');
    const res = await readFullResponse(socket, cont.rest);
    socket.destroy();
    expect(res.status).toBe(200);
    expect((b.seen[0] as Seen).url).toBe("/poll?q='x'&");
  });
});

describe('Host (RFC 9112 §3.2): refused like on the upgrade path', () => {
  it('two Host lines → 400 WSG_DUPLICATE_HEADER, counted, and nothing is proxied', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n');
    res.socket.destroy();
    expect(res.status).toBe(400);
    expect(res.headers['x-wsgate-error']).toBe('WSG_DUPLICATE_HEADER');
    expect(await rejections(gw, { status: '400', reason: 'duplicate_header' })).toBe(1);
    await delay(100);
    expect(b.seen).toHaveLength(0);
  });

  it('no Host → 400 WSG_MISSING_HOST (not node:http’s bare 400), counted, and nothing is proxied', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\n\r\n');
    res.socket.destroy();
    expect(res.status).toBe(400);
    expect(res.headers['x-wsgate-error']).toBe('WSG_MISSING_HOST');
    expect(await rejections(gw, { status: '400', reason: 'missing_host' })).toBe(1);
    await delay(100);
    expect(b.seen).toHaveLength(0);
  });

  it('an empty Host → 400 WSG_MISSING_HOST', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\nHost: \r\n\r\n');
    res.socket.destroy();
    expect(res.status).toBe(400);
    expect(res.headers['x-wsgate-error']).toBe('WSG_MISSING_HOST');
    expect(b.seen).toHaveLength(0);
  });

  it('an upgrade without Host, read by node:http after a plain request, is still refused with WSG_MISSING_HOST', async () => {
    const b = await mixedBackend();
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write('GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const first = await readFullResponse(socket);
    expect(first.status).toBe(200);
    socket.write(upgradeRequest({ path: '/ws', host: '' }));
    const answer = readResponseHead(socket);
    socket.resume(); // readFullResponse paused it
    const res = await answer;
    socket.destroy();
    expect(res.status).toBe(400);
    expect(res.headers['x-wsgate-error']).toBe('WSG_MISSING_HOST');
    expect(b.upgrades).toHaveLength(0);
  });
});

describe('backend failures', () => {
  it('backend down → 502 WSG_UPSTREAM_CONNECT_FAILED, counted as an upstream connect error', async () => {
    const port = await refusedPort();
    const gw = await gatewayFor([`ws://127.0.0.1:${port}`]);
    const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n');
    res.socket.destroy();
    expect(res.status).toBe(502);
    expect(res.headers['x-wsgate-error']).toBe('WSG_UPSTREAM_CONNECT_FAILED');
    expect(await upstreamErrors(gw, 'connect')).toBe(1);
  });

  it('connect failures count toward passive ejection, as on the upgrade path', async () => {
    const port = await refusedPort();
    const gw = await gatewayFor([`ws://127.0.0.1:${port}`], {
      pools: {
        main: {
          hashKey: 'header:x-user-id',
          backends: [`ws://127.0.0.1:${port}`],
          outlier: { consecutiveFailures: 2 },
        },
      },
    });
    for (let i = 0; i < 2; i++) {
      const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n');
      res.socket.destroy();
      expect(res.status).toBe(502);
    }
    expect(metricValue(await gw.metrics(), 'wsgate_backend_ejections_total', { pool: 'main' })).toBe(1);
  });

  it('a backend silent for timeouts.idle → 504 WSG_UPSTREAM_TIMEOUT, counted as a timeout', async () => {
    const b = await httpBackend(() => {
      /* never answers */
    });
    const gw = await gatewayFor([b.url], { timeouts: { handshake: '1s', idle: '300ms', drain: '1s' } });
    const started = Date.now();
    const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n');
    res.socket.destroy();
    expect(res.status).toBe(504);
    expect(res.headers['x-wsgate-error']).toBe('WSG_UPSTREAM_TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(await upstreamErrors(gw, 'timeout')).toBe(1);
    expect(await upstreamErrors(gw, 'connect')).toBe(0);
    await waitFor(() => b.open() === 0, 2000, 'the timed-out backend connection closed');
  });

  it('a kept-alive backend socket reset as it is reused: a GET is sent again on a fresh connection, not 502', async () => {
    const served = new WeakMap<Socket, number>();
    const b = await httpBackend((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      // The second request on a kept-alive connection meets a backend that has just given up on it.
      if (n > 1) req.socket.resetAndDestroy();
      else res.end('ok');
    });
    const gw = await gatewayFor([b.url]);
    for (let i = 0; i < 2; i++) {
      const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n');
      res.socket.destroy();
      expect(res.status).toBe(200);
    }
    expect(b.seen.map((r) => r.url)).toEqual(['/poll', '/poll', '/poll']);
    expect(await upstreamErrors(gw, 'reset')).toBe(0);
  });

  it('a backend that resets after reading the request → 502, counted as a reset', async () => {
    const b = await httpBackend((req) => req.socket.resetAndDestroy());
    const gw = await gatewayFor([b.url]);
    const res = await sendRequest(gw.port, 'GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n');
    res.socket.destroy();
    expect(res.status).toBe(502);
    expect(await upstreamErrors(gw, 'reset')).toBe(1);
    expect(await upstreamErrors(gw, 'connect')).toBe(0);
  });
});

describe('bodies', () => {
  it('a 4 MiB chunked upload and a 4 MiB response stream through byte-identical', async () => {
    const b = await httpBackend((_req, res, body) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.end(Buffer.concat([body, body]).subarray(0, 4 * 1024 * 1024));
    });
    const gw = await gatewayFor([b.url]);
    const payload = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 9)) & 0xff;
    const socket = await openSocket(gw.port);
    socket.write('POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n');
    for (let off = 0; off < payload.length; off += 65536) {
      const part = payload.subarray(off, off + 65536);
      socket.write(`${part.length.toString(16)}\r\n`);
      socket.write(part);
      socket.write('\r\n');
    }
    socket.write('0\r\n\r\n');
    const res = await readFullResponse(socket);
    socket.destroy();
    expect(res.status).toBe(200);
    const seen = b.seen[0] as Seen;
    const digest = (x: Buffer) => createHash('sha256').update(x).digest('hex');
    expect(digest(seen.body)).toBe(digest(payload));
    expect(digest(res.body)).toBe(digest(payload));
  });

  it('Expect: 100-continue: one 100, then the body reaches the backend and the answer comes back', async () => {
    const b = await httpBackend((_req, res, body) => {
      res.writeHead(200, { 'Content-Length': String(body.length) });
      res.end(body);
    });
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write('POST /poll HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    const cont = await readResponseHead(socket);
    expect(cont.status).toBe(100);
    socket.write('hello');
    const res = await readFullResponse(socket, cont.rest);
    socket.destroy();
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('hello');
    expect(res.rest.length).toBe(0);
  });

  it('a chunked DELETE keeps its body framed: the backend sees one request with that body, nothing smuggled', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    const inner = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    socket.write(
      `DELETE /poll HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`,
    );
    const res = await readFullResponse(socket);
    socket.destroy();
    expect(res.status).toBe(200);
    await delay(100);
    expect(b.seen.map((s) => s.url)).toEqual(['/poll']);
    expect((b.seen[0] as Seen).body.toString()).toBe(inner);
  });

  it('a client that resets mid-body leaves no connection open on the backend', async () => {
    const b = await httpBackend();
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write('POST /poll HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n');
    socket.write(Buffer.alloc(10000, 1));
    await waitFor(() => b.open() === 1, 2000, 'backend connection');
    socket.resetAndDestroy();
    await waitFor(() => b.open() === 0, 2000, 'backend connection closed');
    expect(b.seen).toHaveLength(0);
  });

  it('a client that goes away while the backend holds its long poll closes that backend connection', async () => {
    const b = await httpBackend(() => {
      /* a long poll, answered later */
    });
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write('GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await waitFor(() => b.seen.length === 1, 2000, 'request at the backend');
    socket.destroy();
    await waitFor(() => b.open() === 0, 2000, 'backend connection closed');
    expect(await upstreamErrors(gw, 'reset')).toBe(0);
  });
});

describe('long-polling concurrency', () => {
  it('257 requests held open by one backend (Socket.IO-style long polls) do not block a 258th request', async () => {
    const b = await httpBackend((req, res) => {
      if (req.url === '/hold') return; // a long poll: answered much later (never, here)
      res.writeHead(200, { 'Content-Length': '4' });
      res.end('fast');
    });
    const gw = await gatewayFor([b.url]);
    const held = await Promise.all(Array.from({ length: 257 }, () => openSocket(gw.port)));
    for (const s of held) {
      s.on('error', () => {});
      s.write('GET /hold HTTP/1.1\r\nHost: localhost\r\n\r\n');
    }
    cleanups.push(() => {
      for (const s of held) s.destroy();
    });
    await waitFor(() => b.open() >= 257, 5000, '257 backend connections');
    const socket = await openSocket(gw.port);
    socket.write('GET /fast HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const answered = await Promise.race([
      readFullResponse(socket).then((r) => r.status),
      delay(1500).then(() => 'still waiting after 1.5 s'),
    ]);
    socket.destroy();
    expect(answered).toBe(200);
  });
});
