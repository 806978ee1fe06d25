// Endings and edges where the tunnel, the refusal relay, metrics and shutdown meet: close frames split, late or
// crossing, keepalive while one peer is held back, chunked refusals byte by byte, interim answers, long polls at
// shutdown, series across reloads. Real sockets on port 0, raw peers that send exact bytes.

import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { listenFor, type RawBackend, startRawBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { afterHead, closeCodeIn, frame, parseFrames } from '../helpers/frames.js';
import {
  type ConfigObject,
  expectNoLeaks,
  metricValue,
  routeConfig,
  startGateway,
  startGatewayFor,
  type TestGateway,
} from '../helpers/gateway.js';
import { acceptingBackendFor, receivedAfterHead, switchingProtocols } from '../helpers/hostile-backends.js';
import {
  headWithRequestId,
  openSocket,
  rawUpgrade,
  readUntilClose,
  upgradedClient,
  upgradeRequest,
} from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

const gateway = (backends: string[], route: ConfigObject = {}, extra: ConfigObject = {}) =>
  startGatewayFor(cleanups, routeConfig(backends, route, extra));

/** A raw backend that completes the handshake, records every byte and hands each socket to `after`. */
const acceptingBackend = (after?: (socket: Socket) => void): Promise<RawBackend> =>
  acceptingBackendFor(cleanups, after);

const rawClient = (port: number) => upgradedClient(port, cleanups);

const closeFrame = (code: number, masked = true) => {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(code);
  return frame(8, p, { masked });
};

describe('keepalive while the proxy holds one peer back', () => {
  it('a client that neither reads nor answers pings is closed for keepalive even though the backend is held behind it', async () => {
    // The backend streams to the client; the client died (reads nothing, answers nothing). The backend answers the
    // proxy's ping, but its pong waits behind the data the proxy no longer reads (the client is not draining).
    let backendSocket: Socket | undefined;
    const backend = await acceptingBackend((s) => {
      backendSocket = s;
    });
    const gw = await gateway([backend.url], { keepalive: { interval: '200ms', timeout: '600ms', peers: 'both' } });
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(101);
    const client = res.socket;
    client.on('error', () => {});
    client.pause(); // never reads again
    cleanups.push(() => client.destroy());
    await waitFor(() => backendSocket !== undefined);
    const bs = backendSocket as Socket;
    // At the first ping the backend gets, it floods the client (64 MiB in 1 MiB frames), then answers with its pong.
    const payload = Buffer.alloc(1024 * 1024, 0x61);
    const big = frame(2, payload, { masked: false });
    let flooded = false;
    bs.on('data', () => {
      if (flooded) return;
      const pings = parseFrames(receivedAfterHead(backend)).filter((f) => f.opcode === 9);
      if (pings.length === 0) return;
      flooded = true;
      for (let i = 0; i < 64; i++) bs.write(big);
      bs.write(frame(10, pings[0]!.payload, { masked: false }));
    });
    await waitFor(() => flooded, 3000, 'first ping at the backend');
    // docs/configuration.md keepalive.timeout: a peer that does not pong in time is closed, "not while wsgate itself holds *that*
    // peer back". The client is not held back by anyone: it must be closed within timeout + a few sweeps.
    const timedOut = await waitFor(
      async () => (metricValue(await gw.metrics(), 'wsgate_keepalive_timeouts_total', { peer: 'client' }) ?? 0) >= 1,
      3000,
      'client keepalive timeout',
    ).then(
      () => true,
      () => false,
    );
    // The state that decides it: the client was pinged and is not held back; only the backend is.
    const t = [...gw.gateway.tunnels][0]!;
    expect({
      clientPinged: t.c2b.pongs?.expected,
      clientHeld: t.c2b.readingHeld(),
      backendHeld: t.b2c.readingHeld(),
    }).toEqual({ clientPinged: true, clientHeld: false, backendHeld: true });
    expect(timedOut).toBe(true);
  });
});

describe('close frames', () => {
  it('a client close frame straddling two reads with data behind it: the backend gets the data and the close, byte-exact, nothing after', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], {}, { timeouts: { handshake: '2s', idle: '1500ms', drain: '1s' } });
    const c = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    const data = frame(1, 'before');
    const close = closeFrame(1000);
    c.socket.write(Buffer.concat([data, close.subarray(0, 3)]));
    await delay(50);
    c.socket.write(Buffer.concat([close.subarray(3), frame(1, 'after-1'), frame(2, Buffer.alloc(300, 7))]));
    await waitFor(() => receivedAfterHead(backend).length >= data.length + close.length, 2000, 'close at backend');
    await delay(100);
    expect(receivedAfterHead(backend).equals(Buffer.concat([data, close]))).toBe(true);
    // The backend answers; the tunnel ends and its close code is the client's.
    expect(closeCodeIn(c.received())).toBeUndefined();
    await expectNoLeaksAfterBackendAnswers(gw, backend, c);
  });

  it("both peers close at the same moment: each gets the other one's close frame, byte-exact, and the tunnel ends", async () => {
    let bsock: Socket | undefined;
    const backend = await acceptingBackend((s) => {
      bsock = s;
    });
    const gw = await gateway([backend.url]);
    const c = await rawClient(gw.port);
    await waitFor(() => bsock !== undefined && gw.gateway.tunnels.size === 1);
    const fromClient = closeFrame(4001);
    const fromBackend = closeFrame(4002, false);
    c.socket.write(fromClient);
    bsock!.write(fromBackend);
    const got = await Promise.race([c.closed, delay(3000).then(() => undefined)]);
    expect(got, 'client connection closed').toBeDefined();
    expect(got!.equals(fromBackend)).toBe(true);
    expect(receivedAfterHead(backend).equals(fromClient)).toBe(true);
    await expectNoLeaks(gw);
  });

  it('a close frame queued behind throttled messages: every message then the close reach the backend byte-exact', async () => {
    let bsock: Socket | undefined;
    const backend = await acceptingBackend((s) => {
      bsock = s;
    });
    const gw = await gateway([backend.url], {
      limits: { perConnection: { messagesPerSecond: 10, burstMessages: 1, onExceed: 'throttle' } },
    });
    const c = await rawClient(gw.port);
    await waitFor(() => bsock !== undefined);
    const msgs = [1, 2, 3, 4].map((i) => frame(1, `m${i}`));
    const close = closeFrame(1000);
    // The close frame's header straddles the write boundary, and data follows it (must be dropped).
    const all = Buffer.concat([...msgs, close]);
    c.socket.write(all.subarray(0, all.length - 3));
    await delay(20);
    c.socket.write(Buffer.concat([all.subarray(all.length - 3), frame(1, 'late')]));
    await waitFor(() => closeCodeIn(receivedAfterHead(backend)) === 1000, 3000, 'close at backend');
    await delay(100);
    expect(receivedAfterHead(backend).equals(all)).toBe(true);
    bsock!.write(closeFrame(1000, false));
    const ended = await Promise.race([c.closed.then(() => true), delay(3000).then(() => false)]);
    expect(ended).toBe(true);
    await expectNoLeaks(gw);
    expect(metricValue(await gw.metrics(), 'wsgate_limit_exceeded_total', { action: 'throttle' }) ?? 0).toBeGreaterThan(
      0,
    );
  });

  it('a keepalive pong being cut out, its rest arriving with the client close frame: the backend gets the close only', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], { keepalive: { interval: '100ms', timeout: '2s', peers: 'client' } });
    const c = await rawClient(gw.port);
    await waitFor(() => parseFrames(c.received()).some((f) => f.opcode === 9), 2000, 'ping at the client');
    const ping = parseFrames(c.received()).find((f) => f.opcode === 9)!;
    const pong = frame(10, ping.payload);
    const close = closeFrame(1000);
    c.socket.write(pong.subarray(0, 8));
    await delay(30);
    c.socket.write(Buffer.concat([pong.subarray(8), close]));
    await waitFor(() => receivedAfterHead(backend).length >= close.length, 2000, 'bytes at backend');
    await delay(50);
    expect(receivedAfterHead(backend).equals(close)).toBe(true);
  });

  it("the client sends its close while the proxy's own close (shutdown) waits for a backend frame in flight", async () => {
    let bsock: Socket | undefined;
    const backend = await acceptingBackend((s) => {
      bsock = s;
    });
    const gw = await gateway([backend.url]);
    const c = await rawClient(gw.port);
    await waitFor(() => bsock !== undefined);
    const big = frame(2, Buffer.alloc(1000, 5), { masked: false });
    bsock!.write(big.subarray(0, 500));
    await waitFor(() => c.received().length >= 500, 2000, 'half a frame at the client');
    const stopping = gw.gateway.stop(3000);
    await delay(100);
    c.socket.write(closeFrame(1000));
    await delay(100);
    bsock!.write(big.subarray(500));
    const got = await Promise.race([c.closed, delay(4000).then(() => undefined)]);
    await stopping;
    expect(got, 'client connection closed').toBeDefined();
    const frames = parseFrames(got!);
    expect(frames.map((f) => f.opcode)).toEqual([2, 8]);
    expect(got!.subarray(0, big.length).equals(big)).toBe(true);
    expect(frames[1]!.payload.readUInt16BE(0)).toBe(1001);
    // The backend hears exactly one close frame.
    expect(parseFrames(receivedAfterHead(backend)).filter((f) => f.opcode === 8)).toHaveLength(1);
  });
});

async function expectNoLeaksAfterBackendAnswers(
  gw: TestGateway,
  _backend: RawBackend,
  c: { closed: Promise<Buffer> },
): Promise<void> {
  // The raw backend never answers: the tunnel must still end (close reply timeout: min(5 s, idle)).
  const ended = await Promise.race([c.closed.then(() => true), delay(4000).then(() => false)]);
  expect(ended).toBe(true);
  await expectNoLeaks(gw);
}

/** A raw TCP backend whose answer to the upgrade is written by `write(socket)`. */
async function answeringBackend(write: (socket: Socket) => void): Promise<RawBackend> {
  const b = await startRawBackend((_request, socket) => {
    write(socket);
    return undefined;
  });
  cleanups.push(() => b.close());
  return b;
}

async function upgradeAndReadAll(port: number): Promise<Buffer> {
  const s = await openSocket(port);
  cleanups.push(() => s.destroy());
  s.write(upgradeRequest());
  return Promise.race([readUntilClose(s), delay(4000).then(() => Buffer.from('TIMEOUT'))]);
}

describe('backend answers other than a plain 101', () => {
  it('a chunked refusal with trailers written one byte at a time, then more bytes on a kept-alive connection', async () => {
    const head = 'HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n';
    const body = '5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n';
    const backend = await answeringBackend((s) => {
      s.write(head);
      let i = 0;
      const t = setInterval(() => {
        if (s.destroyed) return clearInterval(t);
        if (i < body.length) s.write(body[i++]!);
        else {
          clearInterval(t);
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'); // must not reach the client
        }
      }, 2);
    });
    const gw = await gateway([backend.url]);
    const got = (await upgradeAndReadAll(gw.port)).toString('latin1');
    expect(got).toBe(headWithRequestId(head, got) + body);
    await expectNoLeaks(gw);
  });

  it('clients that leave exactly as a refusal body ends never drive the admission count below 0', async () => {
    const head = 'HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\n';
    const backend = await answeringBackend((s) => {
      s.write(`${head}01234`);
      setTimeout(() => s.write('56789'), 5);
    });
    const gw = await gateway([backend.url]);
    let min = 0;
    const sampler = setInterval(() => {
      min = Math.min(min, gw.gateway.admission.active);
    }, 1);
    try {
      for (let n = 0; n < 20; n++) {
        const s = await openSocket(gw.port);
        s.on('error', () => {});
        let seen = '';
        const done = new Promise<void>((resolve) => {
          s.on('data', (c: Buffer) => {
            seen += c.toString('latin1');
            if (seen.endsWith('56789')) {
              s.destroy();
              resolve();
            }
          });
          s.on('close', () => resolve());
        });
        s.write(upgradeRequest());
        await done;
      }
      await expectNoLeaks(gw);
    } finally {
      clearInterval(sampler);
    }
    expect(min).toBe(0);
    expect(gw.gateway.admission.active).toBe(0);
  });

  it('a 101 after three interim answers, with a frame in the same write: the client gets every byte, then a working tunnel', async () => {
    const interim =
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>; rel=preload\r\n\r\n';
    const backend = await startRawBackend((request) => {
      return Buffer.concat([
        Buffer.from(interim + switchingProtocols(request), 'latin1'),
        frame(1, 'hello', { masked: false }),
      ]);
    });
    cleanups.push(() => backend.close());
    const gw = await gateway([backend.url]);
    const s = await openSocket(gw.port);
    cleanups.push(() => s.destroy());
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.write(upgradeRequest());
    await waitFor(() => Buffer.concat(chunks).includes('hello'), 2000, 'frame at client');
    const got = Buffer.concat(chunks);
    const headEnd = got.indexOf('\r\n\r\nHTTP/1.1 101');
    expect(headEnd).toBeGreaterThan(0);
    expect(got.toString('latin1').startsWith(interim)).toBe(true);
    expect(got.toString('latin1')).toContain('HTTP/1.1 101');
    // The tunnel works both ways.
    s.write(frame(1, 'from client'));
    await waitFor(() => parseFrames(afterHead(Buffer.concat(backend.received[0] ?? []))).length === 1, 2000);
    expect(parseFrames(afterHead(Buffer.concat(backend.received[0] ?? [])))[0]!.payload.toString()).toBe('from client');
    expect(gw.gateway.tunnels.size).toBe(1);
  });
});

describe('shutdown with plain HTTP requests in flight', () => {
  async function slowHttpBackend(answerAfterMs: number | undefined): Promise<{ url: string; seen: () => number }> {
    let seen = 0;
    const server: Server = createHttpServer((_req: IncomingMessage, res) => {
      seen++;
      if (answerAfterMs === undefined) return;
      setTimeout(() => {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('poll answer');
      }, answerAfterMs);
    });
    const port = await listenFor(cleanups, server);
    return { url: `ws://127.0.0.1:${port}`, seen: () => seen };
  }

  function get(port: number): Promise<{ status: number; body: string } | { error: string }> {
    return new Promise((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/poll', headers: { 'x-user-id': 'u1' } }, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (e) => resolve({ error: e.message }));
      });
      req.on('error', (e) => resolve({ error: e.message }));
      req.end();
    });
  }

  it('a long poll the backend answers within the drain window gets its answer', async () => {
    const be = await slowHttpBackend(600);
    const gw = await gateway([be.url], {}, { timeouts: { handshake: '2s', idle: '60s', drain: '3s' } });
    const answer = get(gw.port);
    await waitFor(() => be.seen() === 1, 2000, 'request at the backend');
    const started = performance.now();
    await gw.gateway.stop(3000);
    const stopMs = performance.now() - started;
    expect(await answer).toEqual({ status: 200, body: 'poll answer' });
    expect(stopMs).toBeGreaterThan(400);
  });

  it('a long poll the backend never answers gets an HTTP answer when the drain deadline passes, not a bare reset', async () => {
    const be = await slowHttpBackend(undefined);
    const gw = await gateway([be.url], {}, { timeouts: { handshake: '2s', idle: '60s', drain: '800ms' } });
    const answer = get(gw.port);
    await waitFor(() => be.seen() === 1, 2000, 'request at the backend');
    const started = performance.now();
    await gw.gateway.stop(800);
    const stopMs = performance.now() - started;
    const got = await Promise.race([answer, delay(3000).then(() => ({ error: 'no answer within 3 s' }))]);
    expect(stopMs).toBeGreaterThan(600);
    expect(got).toMatchObject({ status: expect.any(Number) });
    expect((got as { status: number }).status).toBeGreaterThanOrEqual(500);
  });
});

describe('per-backend series across reloads', () => {
  it('a backend removed, scraped, re-added: the gauge counts its new tunnel, and /api totals never go back', async () => {
    const a = await acceptingBackend();
    const b = await acceptingBackend();
    const base = routeConfig([a.url]);
    const gw = await startGateway(base);
    cleanups.push(() => gw.stop());
    const { parseConfig } = await import('../../src/config/load.js');
    const { stringify } = await import('yaml');
    const reloadTo = async (backends: string[]) => {
      const cfg = { ...base, pools: { main: { hashKey: 'header:x-user-id', backends } } };
      await gw.gateway.reload(parseConfig(stringify(cfg), '/virtual/review.yaml'));
    };
    const c1 = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    const line = (await gw.metrics()).split('\n').find((l) => l.startsWith('wsgate_connections_active{'))!;
    const idA = /backend="([^"]*)"/.exec(line)![1]!;
    expect(metricValue(await gw.metrics(), 'wsgate_connections_active', { backend: idA })).toBe(1);
    // A leaves while its tunnel is open: the series stays while the tunnel lives.
    await reloadTo([b.url]);
    const live = gw.gateway.tunnels.size;
    const text1 = await gw.metrics();
    expect(metricValue(text1, 'wsgate_connections_active', { backend: idA }) ?? 0).toBe(live);
    c1.socket.destroy();
    await waitFor(() => gw.gateway.tunnels.size === 0, 3000);
    await gw.metrics(); // withdraws A's series
    expect(metricValue(await gw.metrics(), 'wsgate_connections_active', { backend: idA })).toBeUndefined();
    // A comes back: a new tunnel to it is counted in a fresh series, and leaves it at 0.
    await reloadTo([a.url]);
    const c2 = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    const text2 = await gw.metrics();
    expect(metricValue(text2, 'wsgate_connections_active', { backend: idA })).toBe(1);
    expect(metricValue(text2, 'wsgate_connections_total', { backend: idA })).toBe(1);
    c2.socket.destroy();
    await expectNoLeaks(gw);
    expect(metricValue(await gw.metrics(), 'wsgate_connections_active', { backend: idA })).toBe(0);
    const stats = [...gw.gateway.metrics.allRouteStats()].reduce((n, s) => n + s.opened, 0);
    expect(stats).toBe(2);
  });
});
