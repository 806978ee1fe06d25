// Edges of the plain-HTTP proxy (src/proxy/plain-http.ts), pipelining (src/listen/listener.ts inTurn) and the
// first-head reader's per-IP waiting count (src/listen/first-request.ts), on real sockets.

import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { listenTracked } from '../helpers/backends.js';
import { spawnGateway } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { listenersOf, simpleConfig, startGatewayFor, type TestGateway } from '../helpers/gateway.js';
import { openSocket, readUntilClose } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

const LIMITS = { maxConnections: 1000, maxConnectionsPerIp: 1000 };

interface HttpBackend {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  readonly urls: string[];
  open(): number;
}

async function httpBackend(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<HttpBackend> {
  const urls: string[] = [];
  const server = createHttpServer((req, res) => {
    urls.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  const listening = await listenTracked(server, cleanups);
  return { ...listening, server, urls };
}

/** A raw TCP backend: `onRequest(head, socket)` for each request head seen on a connection (keep-alive aware). */
async function rawBackend(
  onRequest: (head: string, socket: Socket, n: number) => void,
): Promise<{ url: string; open(): number; heads: string[] }> {
  const sockets = new Set<Socket>();
  const heads: string[] = [];
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    let n = 0;
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        heads.push(head);
        onRequest(head, socket, n++);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { url: `ws://127.0.0.1:${port}`, open: () => sockets.size, heads };
}

const gatewayFor = (backends: string[], extra: Record<string, unknown> = {}) =>
  startGatewayFor(
    cleanups,
    simpleConfig(backends, {
      limits: LIMITS,
      timeouts: { handshake: '1s', idle: '60s', drain: '1s' },
      ...extra,
    }),
  );

/** The first-head reader of the gateway's first plain listener (private; read for the test only). */
function readerOf(gw: TestGateway): { waitingCount: number; waitingFrom: Map<string, number> } {
  const listener = listenersOf(gw.gateway).find((l) => !l.secure) as unknown as { firstRequest: unknown } | undefined;
  return listener?.firstRequest as { waitingCount: number; waitingFrom: Map<string, number> };
}

/** Sends raw bytes on a new connection and returns everything until the gateway closes it (or `ms` passes). */
async function exchange(port: number, bytes: string | Buffer, ms = 3000): Promise<string> {
  const socket = await openSocket(port);
  cleanups.push(() => socket.destroy());
  socket.write(bytes);
  const timer = setTimeout(() => socket.destroy(), ms);
  const all = await readUntilClose(socket);
  clearTimeout(timer);
  return all.toString('latin1');
}

/** The gateway's kept-alive backend sockets: undici's pools hold them (private; read for the test only). */
function backendSockets(gw: TestGateway): Socket[] {
  const pools = (gw.gateway as unknown as { plainHttp: { upstream: { pools: Map<unknown, { pool: object }> } } })
    .plainHttp.upstream.pools;
  const field = (o: object, name: string) => {
    const key = Object.getOwnPropertySymbols(o).find((k) => k.description === name);
    return key === undefined ? undefined : (o as Record<symbol, unknown>)[key];
  };
  const sockets: Socket[] = [];
  for (const { pool } of pools.values()) {
    for (const client of (field(pool, 'clients') ?? []) as object[]) {
      const socket = field(client, 'socket') as Socket | null | undefined;
      if (socket) sockets.push(socket);
    }
  }
  return sockets;
}

async function expectSlotsBack(gw: TestGateway): Promise<void> {
  await waitFor(() => gw.gateway.admission.active === 0, 3000, 'admission slots back at 0');
}

describe('plain HTTP: what a backend answers cannot take the gateway down', () => {
  for (const [name, statusLine] of [
    ['a status code below 100', 'HTTP/1.1 099 Odd'],
    ['a control character in the reason phrase', 'HTTP/1.1 200 O\x01K'],
  ] as const) {
    it(`${name}: the client gets a 502 and the gateway process lives on`, async () => {
      const b = await rawBackend((_head, socket) => socket.write(`${statusLine}\r\nContent-Length: 2\r\n\r\nok`));
      const child = await spawnGateway(
        simpleConfig([b.url], { limits: LIMITS, timeouts: { handshake: '1s', idle: '5s', drain: '1s' } }),
        { logLevel: 'silent' },
      );
      cleanups.push(() => child.stop());
      const answer = await exchange(child.port, 'GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n', 2000);
      await delay(200);
      expect(child.alive, `gateway died: ${child.stderr.slice(0, 6).join('\n')}`).toBe(true);
      expect(answer).toMatch(/^HTTP\/1\.1 502 /);
    });
  }
});

describe('plain HTTP: admission slots and backend sockets come back', () => {
  it('HEAD, 204, 304, chunked with trailers, 100-continue, early answer, NO_HEALTHY: every slot back, no waiting socket left', async () => {
    const b = await httpBackend((req, res) => {
      req.resume();
      const u = req.url ?? '';
      if (u === '/204') {
        res.writeHead(204);
        res.end();
      } else if (u === '/304') {
        res.writeHead(304, { ETag: '"x"', 'Content-Length': '100' });
        res.end();
      } else if (u === '/trailers') {
        res.writeHead(200, { Trailer: 'X-Sum' });
        res.write('abc');
        res.addTrailers({ 'X-Sum': '1' });
        res.end('def');
      } else if (u === '/early') {
        // answers before the body is complete
        res.writeHead(413, { 'Content-Length': '3' });
        res.end('big');
      } else {
        res.writeHead(200, { 'Content-Length': '2' });
        res.end('ok');
      }
    });
    const gw = await gatewayFor([b.url]);
    const requests = [
      'HEAD /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      'GET /204 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      'GET /304 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      'GET /trailers HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      'POST /x HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc',
      'POST /early HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\nConnection: close\r\n\r\nabc',
    ];
    const answers = await Promise.all(requests.map((r) => exchange(gw.port, r, 2000)));
    expect(answers.map((a) => a.split('\r\n')[0])).toEqual([
      'HTTP/1.1 200 OK',
      'HTTP/1.1 204 No Content',
      'HTTP/1.1 304 Not Modified',
      'HTTP/1.1 200 OK',
      'HTTP/1.1 100 Continue',
      'HTTP/1.1 413 Payload Too Large',
    ]);
    await expectSlotsBack(gw);
    expect(readerOf(gw).waitingCount).toBe(0);
    expect(readerOf(gw).waitingFrom.size).toBe(0);
  });

  it('a client that resets mid-body, mid-answer, or while the backend is silent: slots back to 0', async () => {
    const b = await httpBackend((req, res) => {
      if (req.url === '/slow-answer') {
        res.writeHead(200, { 'Content-Length': '10' });
        res.write('abc');
        return; // never finishes
      }
      if (req.url === '/silent') return;
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const gw = await gatewayFor([b.url]);
    const clients: Socket[] = [];
    for (const r of [
      'POST /body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nabc',
      'GET /slow-answer HTTP/1.1\r\nHost: localhost\r\n\r\n',
      'GET /silent HTTP/1.1\r\nHost: localhost\r\n\r\n',
    ]) {
      const s = await openSocket(gw.port);
      s.on('error', () => {});
      s.write(r);
      clients.push(s);
    }
    await waitFor(() => gw.gateway.admission.active === 3, 2000, 'three slots taken');
    await waitFor(() => b.urls.length >= 2, 2000, 'requests at the backend');
    await delay(100);
    for (const s of clients) s.resetAndDestroy();
    await expectSlotsBack(gw);
    await waitFor(() => b.open() === 0, 2000, 'backend connections closed');
  });
});

describe('first-head reader: the per-IP waiting count', () => {
  it('connections that sent part of a plain head and closed no longer count against their address', async () => {
    const b = await httpBackend((_req, res) => res.end('ok'));
    // handshake 4s: the reader sweeps its set every 1 s.
    const gw = await gatewayFor([b.url], {
      limits: { maxConnections: 1000, maxConnectionsPerIp: 3 },
      timeouts: { handshake: '4s', idle: '60s', drain: '1s' },
    });
    for (let i = 0; i < 3; i++) {
      const s = await openSocket(gw.port);
      s.on('error', () => {});
      s.write('GET /poll HTTP/1.1\r\nHost: loc');
      await delay(30);
      s.resume();
      s.end();
      await new Promise((r) => s.once('close', r));
    }
    await delay(50);
    const waiting = readerOf(gw).waitingFrom.get('127.0.0.1') ?? 0;
    // The same client, its earlier connections all closed, asks again.
    const answer = await exchange(gw.port, 'GET /poll HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 2000);
    expect({ waiting, status: answer.split('\r\n')[0] }).toEqual({ waiting: 0, status: 'HTTP/1.1 200 OK' });
  });
});

describe('plain HTTP: the retry of a reset kept-alive backend socket', () => {
  it('a POST on a reused socket that is reset is not sent again: one 502, slot back', async () => {
    let n = 0;
    const b = await rawBackend((head, socket, i) => {
      n++;
      if (i > 0) socket.resetAndDestroy();
      else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      void head;
    });
    const gw = await gatewayFor([b.url]);
    const first = await exchange(gw.port, 'GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 2000);
    expect(first).toMatch(/^HTTP\/1\.1 200 /);
    const second = await exchange(
      gw.port,
      'POST /b HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc',
      2000,
    );
    expect(second.match(/HTTP\/1\.1 /g)?.length).toBe(1);
    expect(second).toMatch(/^HTTP\/1\.1 502 /);
    expect(n).toBe(2);
    await expectSlotsBack(gw);
  });

  it('a GET whose retry on a fresh connection is reset too: exactly one 502, sent twice at most', async () => {
    let served = 0;
    const b = await rawBackend((_head, socket) => {
      served++;
      if (served > 1) socket.resetAndDestroy();
      else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const gw = await gatewayFor([b.url]);
    await exchange(gw.port, 'GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 2000);
    const answer = await exchange(gw.port, 'GET /b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 2000);
    expect(answer.match(/HTTP\/1\.1 /g)?.length).toBe(1);
    expect(answer).toMatch(/^HTTP\/1\.1 502 /);
    expect(served).toBe(3);
    await expectSlotsBack(gw);
  });
});

describe('pipelining: HEAD and 100-continue in a pipeline', () => {
  it('GET, HEAD, POST with Expect: 100-continue, GET in one write: four answers in order, no body after the HEAD', async () => {
    const b = await httpBackend((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = `${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`;
        setTimeout(
          () => {
            res.writeHead(200, { 'Content-Length': String(body.length) });
            res.end(body);
          },
          req.url === '/1' ? 150 : 0,
        );
      });
    });
    const gw = await gatewayFor([b.url]);
    const all = await exchange(
      gw.port,
      'GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n' +
        'HEAD /2 HTTP/1.1\r\nHost: localhost\r\n\r\n' +
        'POST /3 HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc' +
        'GET /4 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      3000,
    );
    const statuses = [...all.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    expect(statuses).toEqual(['200', '200', '100', '200', '200']);
    expect(all).toContain('\r\n\r\nGET /1 ');
    expect(all).not.toContain('HEAD /2');
    expect(all).toContain('\r\n\r\nPOST /3 abc');
    expect(all.endsWith('GET /4 ')).toBe(true);
    expect(b.urls).toEqual(['GET /1', 'HEAD /2', 'POST /3', 'GET /4']);
    await expectSlotsBack(gw);
  });
});

describe('plain HTTP: many requests', () => {
  it('300 keep-alive requests over 3 client connections: backend sockets stay ≤ 3, listeners do not pile up, slots back', async () => {
    const b = await httpBackend((req, res) => {
      req.resume();
      res.writeHead(200, { 'Content-Length': '2' });
      res.end('ok');
    });
    const gw = await gatewayFor([b.url]);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    cleanups.push(() => process.off('warning', onWarning));
    const clients = await Promise.all([0, 1, 2].map(() => openSocket(gw.port)));
    for (const c of clients) cleanups.push(() => c.destroy());
    await Promise.all(
      clients.map(async (c) => {
        let buf = '';
        c.on('data', (d: Buffer) => (buf += d.toString('latin1')));
        for (let i = 0; i < 100; i++) {
          const want = i + 1;
          c.write(`GET /r${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
          await waitFor(() => (buf.match(/\r\n\r\nok/g)?.length ?? 0) >= want, 2000, `answer ${i}`, 1);
        }
      }),
    );
    expect(b.urls.length).toBe(300);
    expect(b.open()).toBeLessThanOrEqual(3);
    const sockets = backendSockets(gw);
    expect(sockets.length).toBeGreaterThan(0);
    for (const s of sockets) {
      for (const ev of ['timeout', 'error', 'close', 'end', 'connect', 'data', 'readable', 'drain']) {
        expect(s.listenerCount(ev), ev).toBeLessThan(5);
      }
    }
    expect(warnings.map((w) => w.message)).toEqual([]);
    await expectSlotsBack(gw);
  });
});

describe('plain HTTP: limits.maxConnections bounds backend connections', () => {
  it('uploads that continue after an early answer (401 before the body) hold no backend connection past the answer', async () => {
    const b = await httpBackend((_req, res) => {
      // An auth check that answers before reading the body (node then discards the rest of it as it comes).
      res.writeHead(401, { 'Content-Length': '4' });
      res.end('auth');
    });
    const gw = await gatewayFor([b.url], { limits: { maxConnections: 2, maxConnectionsPerIp: 2 } });
    const statuses: string[] = [];
    for (let i = 0; i < 5; i++) {
      const s = await openSocket(gw.port);
      cleanups.push(() => s.destroy());
      s.on('error', () => {});
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.write(`POST /upload${i} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n`);
      // the client keeps uploading, slowly
      const trickle = setInterval(() => s.write('x'.repeat(100)), 50);
      cleanups.push(() => clearInterval(trickle));
      await waitFor(() => got.includes('\r\n\r\n'), 2000, `answer ${i}`);
      statuses.push(got.split('\r\n')[0] ?? '');
    }
    await delay(200);
    // docs/configuration.md limits.maxConnections: "cap on what holds a backend connection: ... plain HTTP requests being proxied".
    // Each request gave its slot back with its answer, so its backend connection is gone too; the uploads still
    // trickling are read and dropped.
    expect({ backendConnections: b.open(), statuses }).toEqual({
      backendConnections: 0,
      statuses: Array.from({ length: 5 }, () => 'HTTP/1.1 401 Unauthorized'),
    });
    expect(gw.gateway.admission.active).toBe(0);
  });
});

describe('plain HTTP: timeouts.idle is backend silence', () => {
  it('a client that pauses reading a large answer longer than timeouts.idle still gets all of it (the backend was not silent)', async () => {
    const size = 16 * 1024 * 1024;
    const b = await httpBackend((req, res) => {
      req.resume();
      res.writeHead(200, { 'Content-Length': String(size) });
      res.end(Buffer.alloc(size, 0x61));
    });
    const gw = await gatewayFor([b.url], { timeouts: { handshake: '1s', idle: '500ms', drain: '1s' } });
    const s = await openSocket(gw.port);
    cleanups.push(() => s.destroy());
    s.on('error', () => {});
    s.pause();
    s.write('GET /big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    await delay(1500);
    const all = await readUntilClose(s);
    const head = all.indexOf('\r\n\r\n');
    expect(all.subarray(0, 15).toString()).toBe('HTTP/1.1 200 OK');
    expect(all.length - head - 4).toBe(size);
  });
});

describe('pipelining: a client that goes away mid-pipeline', () => {
  for (const how of ['reset', 'half-close'] as const) {
    it(`three GETs to a slow backend, then a ${how}: no slot, no backend connection left, nothing proxied after`, async () => {
      const b = await httpBackend((req, res) => {
        req.resume();
        setTimeout(() => {
          if (!res.destroyed) res.end(`done ${req.url}`);
        }, 300);
      });
      const gw = await gatewayFor([b.url]);
      const s = await openSocket(gw.port);
      cleanups.push(() => s.destroy());
      s.on('error', () => {});
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.write(
        'GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /2 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /3 HTTP/1.1\r\nHost: localhost\r\n\r\n',
      );
      await waitFor(() => b.urls.length === 1, 2000, 'first request at the backend');
      if (how === 'reset') s.resetAndDestroy();
      else s.end();
      await delay(800);
      await expectSlotsBack(gw);
      await waitFor(() => b.open() <= 1, 2000, 'backend connections');
      expect(b.urls).toEqual(['GET /1']);
      void got;
    });
  }
});

describe('first-head reader: connections node:http closes without an event', () => {
  it('two CONNECT requests (node destroys them, no listener) do not keep counting against their address', async () => {
    const b = await httpBackend((_req, res) => res.end('ok'));
    const gw = await gatewayFor([b.url], {
      limits: { maxConnections: 1000, maxConnectionsPerIp: 2 },
      timeouts: { handshake: '4s', idle: '60s', drain: '1s' },
    });
    for (let i = 0; i < 2; i++) {
      await exchange(gw.port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 1000);
    }
    const answer = await exchange(gw.port, 'GET /poll HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 2000);
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(readerOf(gw).waitingFrom.get('127.0.0.1') ?? 0).toBe(0);
  });
});

describe('pipelining: an Expect the gateway cannot meet', () => {
  it('GET (slow), POST with Expect: foo and a body, GET: 200, 417, 200 in order; the refused body is not read as a request', async () => {
    const b = await httpBackend((req, res) => {
      req.resume();
      setTimeout(() => res.end(`done ${req.url}`), req.url === '/1' ? 200 : 0);
    });
    const gw = await gatewayFor([b.url]);
    const all = await exchange(
      gw.port,
      'GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n' +
        'POST /2 HTTP/1.1\r\nHost: localhost\r\nExpect: foo\r\nContent-Length: 39\r\n\r\n' +
        'GET /smuggled HTTP/1.1\r\nHost: local\r\n\r\n' +
        'GET /3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      3000,
    );
    expect([...all.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])).toEqual(['200', '417', '200']);
    expect(b.urls).toEqual(['GET /1', 'GET /3']);
    await expectSlotsBack(gw);
  });
});
