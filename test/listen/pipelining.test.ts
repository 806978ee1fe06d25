// Several requests on one connection, and a connection's first head, on real sockets: responses leave in request
// order (RFC 9112 §9.3.2), nothing is processed after an answer that closed the connection (§9.6), after our 408,
// or after any refusal; the first-head deadline never fires on a connection node:http already answered.

import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { acceptFor } from '../../src/handshake/accept.js';
import { listenTracked, refusedPort } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { lenientGatewayFor, listenersOf, metricValue, type TestGateway } from '../helpers/gateway.js';
import { receivedText, startAcceptingBackend } from '../helpers/hostile-backends.js';
import { openSocket, readResponseHead, readUntilClose, SAMPLE_ACCEPT, upgradeRequest } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

/** RFC 6455 §5.7: a single-frame masked text message "Hello". */
const MASKED_HELLO = Buffer.from('818537fa213d7f9f4d5158', 'hex');

interface MixedBackend {
  readonly url: string;
  /** Request targets of the plain requests it answered, in order. */
  readonly plain: string[];
  /** Request targets of the upgrades it switched, in order. */
  readonly upgrades: string[];
  /** Everything each switched connection sent after its head, by upgrade. */
  readonly afterUpgrade: Buffer[][];
}

/**
 * A backend for both kinds of request: plain ones are answered `plain <target>` after `plainDelayMs`, upgrades get
 * a raw 101 at once.
 */
async function mixedBackend(plainDelayMs: number): Promise<MixedBackend> {
  const plain: string[] = [];
  const upgrades: string[] = [];
  const afterUpgrade: Buffer[][] = [];
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    plain.push(req.url ?? '');
    const body = `plain ${req.url}`;
    setTimeout(() => {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(body.length) });
      res.end(body);
    }, plainDelayMs);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upgrades.push(req.url ?? '');
    const bytes = [head];
    afterUpgrade.push(bytes);
    socket.on('data', (c: Buffer) => bytes.push(c));
    socket.on('error', () => {});
    const accept = acceptFor(req.headers['sec-websocket-key'] ?? '');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
  });
  const listening = await listenTracked(server, cleanups);
  return { url: listening.url, plain, upgrades, afterUpgrade };
}

const gatewayFor = (backends: string[], extra: Record<string, unknown> = {}) =>
  lenientGatewayFor(cleanups, backends, extra);

/** Everything the socket receives from now on, as latin1 text. */
function collect(socket: Socket): () => string {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  socket.resume();
  return () => Buffer.concat(chunks).toString('latin1');
}

/**
 * A client that may keep sending after the gateway's FIN, as a hostile one would (node's default client ends its
 * side on the FIN and fails any later write, which would make "nothing sent later is processed" pass vacuously).
 */
async function halfOpenSocket(port: number): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** Sends `late` after a refusal, then ends; resolves with everything the gateway sent after `rest` until it closed. */
async function sendLateAndClose(socket: Socket, late: string, rest: Buffer): Promise<string> {
  const closed = readUntilClose(socket, rest);
  socket.write(late);
  await delay(300);
  socket.end();
  return (await closed).toString('latin1');
}

const statusLines = (text: string): string[] => text.match(/HTTP\/1\.1 \d{3}/g) ?? [];

async function handshakeTimeouts(gw: TestGateway): Promise<number> {
  return metricValue(await gw.metrics(), 'wsgate_handshake_rejections_total', { status: '408' }) ?? 0;
}

describe('pipelining: responses in request order (RFC 9112 §9.3.2)', () => {
  it('an upgrade behind a slow plain request: the 200 first, then the 101, then frames reach the backend', async () => {
    const b = await mixedBackend(300);
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    const received = collect(socket);
    socket.write(`GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n${upgradeRequest({ path: '/ws' })}`);
    await waitFor(() => received().includes('HTTP/1.1 101'), 3000, 'the 101');
    // Never HTTP bytes after a 101: the client would read them as WebSocket frames.
    expect(statusLines(received())).toEqual(['HTTP/1.1 200', 'HTTP/1.1 101']);
    expect(received()).toContain('\r\n\r\nplain /poll');
    expect(received()).toContain(`Sec-WebSocket-Accept: ${SAMPLE_ACCEPT}`);
    expect(b.upgrades).toEqual(['/ws']);
    socket.write(MASKED_HELLO);
    await waitFor(() => Buffer.concat(b.afterUpgrade[0] ?? []).equals(MASKED_HELLO), 2000, 'the frame at the backend');
    socket.destroy();
  });

  it('two plain requests and an upgrade in one write: 200, 200, 101 in that order', async () => {
    const b = await mixedBackend(150);
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    const received = collect(socket);
    const plain = (path: string) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
    socket.write(plain('/one') + plain('/two') + upgradeRequest({ path: '/ws' }));
    await waitFor(() => received().includes('HTTP/1.1 101'), 3000, 'the 101');
    socket.destroy();
    expect(statusLines(received())).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 101']);
    expect(received().indexOf('plain /one')).toBeLessThan(received().indexOf('plain /two'));
    expect(b.upgrades).toEqual(['/ws']);
  });
  it('a client that resets while its upgrade waits behind a plain request: nothing is proxied, the gateway lives on', async () => {
    const b = await mixedBackend(300);
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.on('error', () => {});
    socket.write(`GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n${upgradeRequest({ path: '/ws' })}`);
    await waitFor(() => b.plain.length === 1, 2000, 'the plain request at the backend');
    socket.resetAndDestroy();
    await delay(400);
    expect(b.upgrades).toEqual([]);
    const next = await openSocket(gw.port);
    next.write(upgradeRequest({ path: '/ws' }));
    expect((await readResponseHead(next)).status).toBe(101);
    next.destroy();
  });

  it('a malformed request behind a slow one: its 400 follows the 200, not across it', async () => {
    const b = await mixedBackend(300);
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write('GET /poll HTTP/1.1\r\nHost: localhost\r\n\r\nGET /x HTTP/1.1\r\nBad Header: x\r\n\r\n');
    const all = (await readUntilClose(socket)).toString('latin1');
    expect(statusLines(all)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 400']);
    expect(all).toMatch(/\r\n\r\nplain \/pollHTTP\/1\.1 400 /);
    expect(all).toContain('X-Wsgate-Error: WSG_BAD_REQUEST');
  });
});

describe('pipelining: nothing after an answer that closes the connection (RFC 9112 §9.6)', () => {
  it("after the client's own Connection: close, a pipelined request is neither proxied nor refused", async () => {
    const b = await mixedBackend(100);
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write(
      'GET /poll HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\nGET /late HTTP/1.1\r\nHost: localhost\r\n\r\n',
    );
    const all = (await readUntilClose(socket)).toString('latin1');
    expect(statusLines(all)).toEqual(['HTTP/1.1 200']);
    expect(all).toContain('plain /poll');
    expect(b.plain).toEqual(['/poll']);
    expect(metricValue(await gw.metrics(), 'wsgate_handshake_rejections_total') ?? 0).toBe(0);
  });

  const refusedFirst = [
    ['a dot-segment path (400 WSG_BAD_PATH)', 'GET /a/../b HTTP/1.1\r\nHost: localhost\r\n\r\n', 'WSG_BAD_PATH'],
    [
      'an Upgrade without Connection: upgrade (400 WSG_BAD_CONNECTION)',
      'GET /poll HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\n\r\n',
      'WSG_BAD_CONNECTION',
    ],
  ] as const;
  for (const [name, first, code] of refusedFirst) {
    it(`after ${name}, neither a pipelined upgrade nor a plain request reaches a backend`, async () => {
      const b = await mixedBackend(0);
      const gw = await gatewayFor([b.url]);
      const socket = await openSocket(gw.port);
      socket.write(`${first}${upgradeRequest({ path: '/ws' })}GET /late HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      const res = await readResponseHead(socket);
      expect(res.status).toBe(400);
      expect(res.headers['x-wsgate-error']).toBe(code);
      expect(res.headers.connection).toBe('close');
      const rest = await readUntilClose(socket, res.rest);
      await delay(200);
      expect(statusLines(rest.toString('latin1'))).toEqual([]);
      expect(b.upgrades).toEqual([]);
      expect(b.plain).toEqual([]);
    });
  }

  it('a plain request pipelined behind a 400 reaches no backend, though the same request alone would', async () => {
    const b = await mixedBackend(0);
    const gw = await gatewayFor([b.url]);
    const socket = await openSocket(gw.port);
    socket.write('GET /a/../b HTTP/1.1\r\nHost: localhost\r\n\r\nGET /late HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const rest = await readUntilClose(socket);
    expect(statusLines(rest.toString('latin1'))).toEqual(['HTTP/1.1 400']);
    const alone = await openSocket(gw.port);
    alone.write('GET /late HTTP/1.1\r\nHost: localhost\r\n\r\n');
    expect((await readResponseHead(alone)).status).toBe(200);
    alone.destroy();
    expect(b.plain).toEqual(['/late']);
  });
});

describe('after our own refusal (reject.ts) on a connection node:http parses', () => {
  it('the rest of a timed-out upgrade head, sent after the 408, reaches no backend', async () => {
    const b = await startAcceptingBackend();
    cleanups.push(() => b.close());
    const gw = await gatewayFor([b.url]); // 1 s deadline
    const socket = await halfOpenSocket(gw.port);
    const head = upgradeRequest({ path: '/ws' });
    socket.write(head.slice(0, 20));
    const res = await readResponseHead(socket);
    expect(res.status).toBe(408);
    expect(statusLines(await sendLateAndClose(socket, head.slice(20), res.rest))).toEqual([]);
    expect(b.connections).toBe(0);
  });

  it('a whole upgrade head sent after the 408 to a connection that was silent reaches no backend', async () => {
    const b = await startAcceptingBackend();
    cleanups.push(() => b.close());
    const gw = await gatewayFor([b.url]);
    const socket = await halfOpenSocket(gw.port);
    const res = await readResponseHead(socket);
    expect(res.status).toBe(408);
    expect(statusLines(await sendLateAndClose(socket, upgradeRequest({ path: '/ws' }), res.rest))).toEqual([]);
    expect(b.connections).toBe(0);
  });

  it('the rest of a timed-out plain request head, sent after the 408, is not proxied', async () => {
    const b = await mixedBackend(0);
    const gw = await gatewayFor([b.url]);
    const socket = await halfOpenSocket(gw.port);
    const head = 'GET /poll HTTP/1.1\r\nHost: localhost\r\nX-Late: 1\r\n\r\n';
    socket.write(head.slice(0, 20));
    const res = await readResponseHead(socket);
    expect(res.status).toBe(408);
    expect(statusLines(await sendLateAndClose(socket, head.slice(20), res.rest))).toEqual([]);
    expect(b.plain).toEqual([]);
  });

  it('after the 408, the rest of a malformed head is drained, not parsed: the lingering close is not cut short', async () => {
    const gw = await gatewayFor([`ws://127.0.0.1:${await refusedPort()}`]);
    const server = listenersOf(gw.gateway)[0]?.server as Server;
    let gatewaySide: Socket | undefined;
    server.prependListener('connection', (s: Socket) => {
      gatewaySide = s;
    });
    const socket = await halfOpenSocket(gw.port);
    socket.write('GET /poll HTTP/1.1\r\nHost: localhost\r\n');
    const res = await readResponseHead(socket);
    expect(res.status).toBe(408);
    const received = collect(socket);
    socket.write('Bad Header: x\r\n\r\n');
    await delay(200);
    // reject.ts drains the client's bytes until it ends or LINGER_MS pass, so the 408 is not reset under the
    // client; a parser still reading them would report a parse error, and the gateway would drop the socket now.
    expect(gatewaySide?.destroyed).toBe(false);
    socket.destroy();
    expect(statusLines(received())).toEqual([]);
  });

  it('a target with userinfo (400 WSG_BAD_REQUEST): a plain request and an upgrade sent later reach nothing', async () => {
    const b = await mixedBackend(0);
    const gw = await gatewayFor([b.url]);
    const socket = await halfOpenSocket(gw.port);
    socket.write('GET http://u@localhost/poll HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const res = await readResponseHead(socket);
    expect(res.status).toBe(400);
    expect(res.headers['x-wsgate-error']).toBe('WSG_BAD_REQUEST');
    await delay(100);
    const late = `GET /poll HTTP/1.1\r\nHost: localhost\r\nExpect: foo\r\n\r\nGET /poll HTTP/1.1\r\nHost: localhost\r\n\r\n${upgradeRequest({ path: '/ws' })}`;
    expect(statusLines(await sendLateAndClose(socket, late, res.rest))).toEqual([]);
    expect(b.plain).toEqual([]);
    expect(b.upgrades).toEqual([]);
  });
});

describe('the first-head deadline after node:http has answered', () => {
  it('Expect: foo gets 417; the connection stays usable and carries no unsolicited 408', async () => {
    const b = await mixedBackend(0);
    const gw = await gatewayFor([b.url]); // handshake timeout 1 s
    const socket = await openSocket(gw.port);
    const received = collect(socket);
    socket.write('GET /poll HTTP/1.1\r\nHost: localhost\r\nExpect: foo\r\n\r\n');
    await waitFor(() => received().includes('\r\n\r\n'), 2000, 'the 417');
    expect(statusLines(received())).toEqual(['HTTP/1.1 417']);
    expect(received()).toMatch(/connection: keep-alive/i);
    // Past the first-head deadline (1 s from the connection's start), well within keep-alive (5 s).
    await delay(1300);
    expect(statusLines(received())).toEqual(['HTTP/1.1 417']);
    socket.write('GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await waitFor(() => received().includes('plain /after'), 2000, 'the second answer');
    socket.destroy();
    expect(statusLines(received())).toEqual(['HTTP/1.1 417', 'HTTP/1.1 200']);
    expect(b.plain).toEqual(['/after']);
    // A request that was read and answered is not a handshake timeout.
    expect(await handshakeTimeouts(gw)).toBe(0);
  });
  it('a request without Host is answered once (400), never also with a 408', async () => {
    const b = await mixedBackend(0);
    const gw = await gatewayFor([b.url]);
    const socket = await halfOpenSocket(gw.port);
    const received = collect(socket);
    socket.write('GET /poll HTTP/1.1\r\n\r\n');
    // node:http refuses it itself (requireHostHeader) or wsgate does: either way past the 1 s first-head deadline.
    await delay(1300);
    socket.destroy();
    expect(statusLines(received())).toEqual(['HTTP/1.1 400']);
    expect(b.plain).toEqual([]);
    expect(await handshakeTimeouts(gw)).toBe(0);
  });
});

describe('first head: slow but in time, early frames, resets', () => {
  it('an upgrade head written 4 bytes at a time within the deadline switches (node:http path)', async () => {
    const b = await startAcceptingBackend();
    cleanups.push(() => b.close());
    const gw = await gatewayFor([b.url]); // 1 s deadline
    const socket = await openSocket(gw.port);
    socket.setNoDelay(true);
    const head = upgradeRequest({ path: '/ws' });
    const answer = readResponseHead(socket);
    for (let i = 0; i < head.length; i += 4) {
      socket.write(head.slice(i, i + 4));
      await delay(2);
    }
    const res = await answer;
    socket.destroy();
    expect(res.status).toBe(101);
    expect(res.headers['sec-websocket-accept']).toBe(SAMPLE_ACCEPT);
  });

  it('wss: an upgrade head and a masked frame in one TLS record: the frame reaches the backend after the 101', async () => {
    const b = await startAcceptingBackend();
    cleanups.push(() => b.close());
    const gw = await gatewayFor([b.url], {
      listeners: [
        { name: 'public', address: '127.0.0.1', port: 0 },
        { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
      ],
    });
    const socket = await openSocket(gw.tlsPort, true);
    socket.write(Buffer.concat([Buffer.from(upgradeRequest({ path: '/ws' })), MASKED_HELLO]));
    const res = await readResponseHead(socket);
    expect(res.status).toBe(101);
    await waitFor(() => receivedText(b, 0).endsWith(MASKED_HELLO.toString('latin1')), 2000, 'frame at the backend');
    socket.destroy();
  });

  it('clients that reset in the middle of a head are forgotten by the first-head reader, not timed out', async () => {
    const gw = await gatewayFor([`ws://127.0.0.1:${await refusedPort()}`]);
    const listener = listenersOf(gw.gateway)[0] as unknown as { firstRequest?: { waitingCount: number } };
    const sockets = await Promise.all(Array.from({ length: 5 }, () => openSocket(gw.port)));
    for (const s of sockets) s.write('GET /ws HTTP/1.1\r\nHost: loc');
    await waitFor(() => listener?.firstRequest?.waitingCount === 5, 2000, 'five waiting');
    for (const s of sockets) s.resetAndDestroy();
    await waitFor(() => listener?.firstRequest?.waitingCount === 0, 2000, 'none waiting');
    expect(await handshakeTimeouts(gw)).toBe(0);
  });
});
