// A plain request's body that breaks or stalls is the client's doing: answered at once (400) or after
// timeouts.body (408) with a catalogue code, not after timeouts.idle as a backend timeout; its admission slot and
// backend connection come back, and nothing is counted against the backend. Also routes[].http: refuse.

import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { listenTracked } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, simpleConfig, startGatewayFor, type TestGateway } from '../helpers/gateway.js';
import { openSocket, rawUpgrade, readResponseHead, readUntilClose } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

/** A backend that reads each body to its end before answering with what it got. */
async function readingBackend() {
  const bodies: string[] = [];
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (c: string) => (body += c));
    req.on('error', () => {});
    req.on('end', () => {
      bodies.push(body);
      res.end(`got ${body.length}`);
    });
  });
  server.on('upgrade', (_req, socket) => socket.destroy());
  const listening = await listenTracked(server, cleanups);
  return { ...listening, bodies };
}

const gatewayFor = (backend: string, timeouts: Record<string, string> = {}, extra: Record<string, unknown> = {}) =>
  startGatewayFor(
    cleanups,
    simpleConfig([backend], {
      limits: { maxConnections: 100, maxConnectionsPerIp: 100 },
      timeouts: { handshake: '2s', idle: '30s', drain: '1s', ...timeouts },
      ...extra,
    }),
  );

async function counts(gw: TestGateway) {
  const text = await gw.metrics();
  return {
    upstreamErrors: metricValue(text, 'wsgate_upstream_errors_total') ?? 0,
    ejections: metricValue(text, 'wsgate_backend_ejections_total') ?? 0,
    malformed: metricValue(text, 'wsgate_request_body_errors_total', { reason: 'malformed' }) ?? 0,
    timeout: metricValue(text, 'wsgate_request_body_errors_total', { reason: 'timeout' }) ?? 0,
  };
}

describe('a malformed chunked body (RFC 9112 §7.1) is answered 400 at once', () => {
  const cases = [
    ['a chunk-size line ending in a bare LF after an extension', '3;ext=1\nabc\r\n0\r\n\r\n'],
    ['a chunk size that is not hex', 'zz\r\nabc\r\n0\r\n\r\n'],
    ['chunk data longer than its size', '3\r\nabcdef\r\n0\r\n\r\n'],
  ] as const;
  for (const [name, body] of cases) {
    it(`${name}: WSG_BAD_BODY, backend not blamed, slot and backend connection back`, async () => {
      const b = await readingBackend();
      // idle 30 s: an answer that waited for it would time the test out.
      const gw = await gatewayFor(b.url);
      const socket = await openSocket(gw.port);
      cleanups.push(() => socket.destroy());
      const started = Date.now();
      socket.write('POST /poll HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n');
      await waitFor(() => b.open() === 1, 2000, 'the request at the backend');
      socket.write(body);
      const answer = await readResponseHead(socket);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(answer.status).toBe(400);
      expect(answer.headers['x-wsgate-error']).toBe('WSG_BAD_BODY');
      await readUntilClose(socket, answer.rest);
      await waitFor(() => gw.gateway.admission.active === 0, 2000, 'admission slot back');
      await waitFor(() => b.open() === 0, 2000, 'backend connection closed');
      expect(b.bodies).toEqual([]);
      expect(await counts(gw)).toEqual({ upstreamErrors: 0, ejections: 0, malformed: 1, timeout: 0 });
      const text = await gw.metrics();
      expect(metricValue(text, 'wsgate_handshake_rejections_total', { status: '400', reason: 'bad_body' })).toBe(1);
    });
  }
});

describe('timeouts.body: a request body that stalls', () => {
  it('is cut after timeouts.body with 408 WSG_BODY_TIMEOUT, not after timeouts.idle, and not blamed on the backend', async () => {
    const b = await readingBackend();
    const gw = await gatewayFor(b.url, { body: '400ms' });
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    const started = Date.now();
    socket.write('POST /poll HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc');
    const answer = await readResponseHead(socket);
    const waited = Date.now() - started;
    expect(answer.status).toBe(408);
    expect(answer.headers['x-wsgate-error']).toBe('WSG_BODY_TIMEOUT');
    expect(waited).toBeGreaterThanOrEqual(350);
    expect(waited).toBeLessThan(10_000);
    await readUntilClose(socket, answer.rest);
    await waitFor(() => gw.gateway.admission.active === 0, 2000, 'admission slot back');
    await waitFor(() => b.open() === 0, 2000, 'backend connection closed');
    expect(await counts(gw)).toEqual({ upstreamErrors: 0, ejections: 0, malformed: 0, timeout: 1 });
  });

  it('a body that keeps coming, a byte at a time, with pauses shorter than timeouts.body, goes through', async () => {
    const b = await readingBackend();
    const gw = await gatewayFor(b.url, { body: '400ms' });
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    socket.write('POST /poll HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\nConnection: close\r\n\r\n');
    for (const c of 'abcdefgh') {
      await delay(150);
      socket.write(c);
    }
    const all = (await readUntilClose(socket)).toString('latin1');
    expect(all).toMatch(/^HTTP\/1\.1 200 /);
    expect(all.endsWith('got 8')).toBe(true);
    expect(b.bodies).toEqual(['abcdefgh']);
  });

  it('a GET without a body waits for its long poll as long as timeouts.idle allows, whatever timeouts.body says', async () => {
    const server = createHttpServer((_req, res) => setTimeout(() => res.end('late'), 700));
    const b = await listenTracked(server, cleanups);
    const gw = await gatewayFor(b.url, { body: '200ms' });
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    socket.write('GET /poll HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    const all = (await readUntilClose(socket)).toString('latin1');
    expect(all).toMatch(/^HTTP\/1\.1 200 /);
    expect(all.endsWith('late')).toBe(true);
  });
});

describe('routes[].http', () => {
  it('refuse: plain requests get 404 WSG_WEBSOCKET_ONLY and reach no backend; upgrades on the route still work', async () => {
    const b = await readingBackend();
    const gw = await gatewayFor(
      b.url,
      {},
      { routes: [{ name: 'main', match: { path: '/' }, pool: 'main', http: 'refuse' }] },
    );
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    socket.write('GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const answer = await readResponseHead(socket);
    expect(answer.status).toBe(404);
    expect(answer.headers['x-wsgate-error']).toBe('WSG_WEBSOCKET_ONLY');
    const text = await gw.metrics();
    expect(
      metricValue(text, 'wsgate_handshake_rejections_total', {
        route: 'main',
        status: '404',
        reason: 'websocket_only',
      }),
    ).toBe(1);
    expect(b.bodies).toEqual([]);
    // The backend above destroys upgrades: reaching it at all is what shows the route still proxies them.
    const up = await rawUpgrade(gw.port, { path: '/ws' }).catch(() => undefined);
    up?.socket.destroy();
    await waitFor(
      async () => (metricValue(await gw.metrics(), 'wsgate_upstream_errors_total') ?? 0) >= 1,
      3000,
      'the upgrade reached the backend',
    );
  });
});
