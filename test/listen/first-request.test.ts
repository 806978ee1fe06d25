// FirstRequestReader on real sockets: whole upgrade heads go to the upgrade handler, everything else reaches
// node:http's connection handler with its bytes intact and in order, and the first-head deadline runs from the
// connection's start whoever parses the head.

import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { UpgradeRequest } from '../../src/handshake/upgrade-head.js';
import { FirstRequestReader } from '../../src/listen/first-request.js';
import { upgradeRequest } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

interface Seen {
  upgrades: { req: UpgradeRequest; socket: Socket; head: Buffer }[];
  /** Sockets handed to the "node:http" handler, with every byte it read from them since. */
  handedOver: { socket: Socket; bytes: Buffer[] }[];
  timeouts: { socket: Socket; atMs: number }[];
  /** Addresses of connections refused for having too many waiting. */
  tooMany: string[];
}

const TIMEOUT_MS = 600;
const CHECK_MS = 50;
const WAITING_PER_IP = 3;

let server: Server | undefined;
/** Both ends of every connection, destroyed after each test (the server allows half-open sockets). */
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  if (server) await new Promise<void>((resolve) => server?.close(() => resolve()));
  server = undefined;
});

/**
 * A server whose connections go to the reader: accept() (the reader reads first heads), or watch() ahead of the
 * "node:http" handler (which then reads every head itself, as node:http's own server does).
 */
async function start(
  mode: 'accept' | 'watch' = 'accept',
): Promise<{ reader: FirstRequestReader; seen: Seen; port: number; startedAt: () => number }> {
  const seen: Seen = { upgrades: [], handedOver: [], timeouts: [], tooMany: [] };
  let connectedAt = 0;
  const srv = createServer({ allowHalfOpen: true }); // as node:http's server is
  const httpConnection = function (this: unknown, socket: Socket) {
    expect(this).toBe(srv);
    const entry = { socket, bytes: [] as Buffer[] };
    seen.handedOver.push(entry);
    socket.on('data', (chunk: Buffer) => entry.bytes.push(chunk));
  };
  const reader = new FirstRequestReader(
    srv,
    httpConnection,
    {
      upgrade: (req, socket, head) => seen.upgrades.push({ req, socket, head }),
      timeout: (socket) => {
        seen.timeouts.push({ socket, atMs: performance.now() - connectedAt });
        socket.destroy();
      },
      waitingPerIp: () => WAITING_PER_IP,
      tooManyWaiting: (socket, ip) => {
        seen.tooMany.push(ip);
        socket.destroy();
      },
    },
    TIMEOUT_MS,
    CHECK_MS,
  );
  srv.on('connection', (socket: Socket) => {
    connectedAt = performance.now();
    sockets.push(socket);
    if (mode === 'accept') reader.accept(socket);
    else if (reader.watch(socket)) httpConnection.call(srv, socket);
  });
  server = srv;
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { reader, seen, port: (srv.address() as AddressInfo).port, startedAt: () => connectedAt };
}

async function client(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  sockets.push(socket);
  await once(socket, 'connect');
  return socket;
}

describe('FirstRequestReader', () => {
  it('a whole upgrade head goes to the upgrade handler with the early bytes after it', async () => {
    const { reader, seen, port } = await start();
    const socket = await client(port);
    socket.write(Buffer.from(`${upgradeRequest({ path: '/ws?room=1' })}\x81\x80abcd`, 'latin1'));
    await waitFor(() => seen.upgrades.length === 1, 5000, 'upgrade');
    const [u] = seen.upgrades;
    expect(u?.req.url).toBe('/ws?room=1');
    expect(u?.req.headers.upgrade).toBe('websocket');
    expect(u?.head.toString('latin1')).toBe('\x81\x80abcd');
    expect(seen.handedOver).toHaveLength(0);
    expect(reader.waitingCount).toBe(0);
    // The socket (a long-lived tunnel's, later) keeps no reference to the reader.
    const socketFields = u?.socket as unknown as Record<symbol, unknown>;
    const readerField = Object.getOwnPropertySymbols(socketFields).find((k) => k.description === 'wsgate.firstRequest');
    expect(readerField && socketFields[readerField]).toBeUndefined();
  });

  it('anything else reaches node:http with its first bytes first and the rest in order', async () => {
    const { seen, port } = await start();
    const socket = await client(port);
    socket.write('GET /plain HTTP/1.1\r\nHost: x\r\n\r\nGET /second');
    await waitFor(() => seen.handedOver.length === 1, 5000, 'hand-over');
    socket.write(' HTTP/1.1\r\nHost: x\r\n\r\n');
    const entry = seen.handedOver[0];
    const expected = 'GET /plain HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n';
    await waitFor(() => Buffer.concat(entry?.bytes ?? []).length === expected.length, 5000, 'all bytes');
    expect(Buffer.concat(entry?.bytes ?? []).toString('latin1')).toBe(expected);
    expect(seen.upgrades).toHaveLength(0);
  });

  it('an upgrade head split over two reads goes to node:http too', async () => {
    const { seen, port } = await start();
    const socket = await client(port);
    const request = upgradeRequest();
    socket.write(request.slice(0, 20));
    await waitFor(() => seen.handedOver.length === 1, 5000, 'hand-over');
    socket.write(request.slice(20));
    await waitFor(() => Buffer.concat(seen.handedOver[0]?.bytes ?? []).length === request.length, 5000, 'bytes');
    expect(Buffer.concat(seen.handedOver[0]?.bytes ?? []).toString('latin1')).toBe(request);
    expect(seen.upgrades).toHaveLength(0);
  });

  it('a connection that sends nothing times out once, after the deadline and not before', async () => {
    const { reader, seen, port } = await start();
    await client(port);
    await waitFor(() => seen.timeouts.length === 1, 5000, 'timeout');
    expect(seen.timeouts[0]?.atMs).toBeGreaterThanOrEqual(TIMEOUT_MS);
    await delay(TIMEOUT_MS);
    expect(seen.timeouts).toHaveLength(1);
    expect(reader.waitingCount).toBe(0);
  });

  it('the deadline runs from the connection, not from the hand-over to node:http', async () => {
    const { seen, port } = await start();
    const socket = await client(port);
    await delay(TIMEOUT_MS / 2);
    socket.write('GET /slow HTT');
    await waitFor(() => seen.timeouts.length === 1, 5000, 'timeout');
    // node:http's own clock would have started at the hand-over, half a timeout later.
    expect(seen.timeouts[0]?.atMs).toBeLessThan(TIMEOUT_MS * 1.5);
    expect(seen.handedOver).toHaveLength(1);
  });

  it('settled() ends the deadline: node:http parsed the first head', async () => {
    const { reader, seen, port } = await start();
    const socket = await client(port);
    socket.write('GET /plain HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => seen.handedOver.length === 1, 5000, 'hand-over');
    reader.settled(seen.handedOver[0]?.socket as Socket);
    expect(reader.waitingCount).toBe(0);
    await delay(TIMEOUT_MS + 3 * CHECK_MS);
    expect(seen.timeouts).toHaveLength(0);
    expect(socket.destroyed).toBe(false);
  });

  it('a FIN or a reset before any byte closes the socket and forgets it', async () => {
    const { reader, seen, port } = await start();
    const finning = await client(port);
    finning.end();
    const resetting = await client(port);
    resetting.resetAndDestroy();
    // Well before the deadline: nothing was left to time out.
    await waitFor(() => reader.waitingCount === 0 && finning.closed, TIMEOUT_MS / 2, 'both closed and forgotten');
    expect(seen.timeouts).toHaveLength(0);
  });

  it('one address may have only so many connections waiting for their first head; a head frees its place', async () => {
    const { reader, seen, port } = await start();
    const silent = await Promise.all(Array.from({ length: WAITING_PER_IP + 2 }, () => client(port)));
    await waitFor(() => seen.tooMany.length === 2, 5000, 'the two over the limit refused');
    expect(reader.waitingCount).toBe(WAITING_PER_IP);
    expect(seen.tooMany.every((ip) => ip.endsWith('127.0.0.1'))).toBe(true);
    await waitFor(() => silent.filter((s) => s.closed).length === 2, 5000, 'the refused ones closed');
    // One of the waiting sends its head: its place is free for a new connection.
    const waiting = silent.filter((s) => !s.closed);
    waiting[0]?.write(upgradeRequest());
    await waitFor(() => seen.upgrades.length === 1, 5000, 'the upgrade');
    await client(port);
    await delay(3 * CHECK_MS);
    expect(seen.tooMany).toHaveLength(2);
    expect(reader.waitingCount).toBe(WAITING_PER_IP);
  });

  it('watch(): where node:http reads every head, the reader keeps the per-address count and the deadline only', async () => {
    const { reader, seen, port } = await start('watch');
    const clients = await Promise.all(Array.from({ length: WAITING_PER_IP + 1 }, () => client(port)));
    await waitFor(() => seen.tooMany.length === 1, 5000, 'the one over the limit refused');
    expect(reader.waitingCount).toBe(WAITING_PER_IP);
    // A whole upgrade head is node:http's to read here, not the reader's.
    await waitFor(() => clients.filter((c) => c.closed).length === 1, 5000, 'the refused one closed');
    const sender = clients.find((c) => !c.closed) as Socket;
    sender.write(upgradeRequest());
    await waitFor(() => seen.handedOver.some((e) => e.bytes.length > 0), 5000, 'the head at node:http');
    expect(seen.upgrades).toHaveLength(0);
    // Nothing settles them (no node:http here): every one still waiting times out once, at the deadline.
    await waitFor(() => seen.timeouts.length === WAITING_PER_IP, 5000, 'the deadlines');
    // (atMs counts from the last of the connections, which all came within a few milliseconds.)
    for (const t of seen.timeouts) expect(t.atMs).toBeGreaterThanOrEqual(TIMEOUT_MS - CHECK_MS);
    expect(reader.waitingCount).toBe(0);
  });
});
