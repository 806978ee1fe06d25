// Test backends on port 0: a well-behaved `ws` server that names itself, and raw TCP servers that answer the
// upgrade however a test needs (refuse, wrong accept, never answer).

import { createServer as createHttpServer, type Server as HttpServer, type IncomingMessage } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import type { Cleanup } from './cleanups.js';

export interface TestBackend {
  readonly id: string;
  readonly url: string;
  readonly port: number;
  /** Upgrade requests seen (headers as received). */
  readonly requests: IncomingMessage[];
  readonly sockets: Set<WebSocket>;
  close(): Promise<void>;
  /** Destroys every live connection at the TCP level (a crashed backend). */
  killConnections(): void;
}

/**
 * Listens on a free loopback port and has `cleanups` close the server, cutting its kept-alive connections; resolves
 * with the port.
 */
export async function listenFor(cleanups: Cleanup[], server: HttpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** startRawBackend, closed by `cleanups` when the test ends. */
export async function rawBackendFor(
  cleanups: Cleanup[],
  respond: Parameters<typeof startRawBackend>[0],
): Promise<RawBackend> {
  const b = await startRawBackend(respond);
  cleanups.push(() => b.close());
  return b;
}

/** startEchoBackend, closed by `cleanups` when the test ends. */
export async function echoBackendFor(
  cleanups: Cleanup[],
  id: string,
  options?: Parameters<typeof startEchoBackend>[1],
): Promise<TestBackend> {
  const b = await startEchoBackend(id, options);
  cleanups.push(() => b.close());
  return b;
}

/** A `ws` echo backend: sends `{"backend":id}` on connect, echoes every message (binary stays binary). */
export function startEchoBackend(
  id: string,
  options: { perMessageDeflate?: boolean; welcome?: boolean } = {},
): Promise<TestBackend> {
  const server = createHttpServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Backend-Id': id });
    res.end(`plain ${id}`);
  });
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: options.perMessageDeflate ?? false,
    maxPayload: 64 * 1024 * 1024,
  });
  const requests: IncomingMessage[] = [];
  const sockets = new Set<WebSocket>();
  wss.on('connection', (ws, req) => {
    requests.push(req);
    sockets.add(ws);
    ws.on('close', () => sockets.delete(ws));
    ws.on('error', () => {});
    if (options.welcome !== false) ws.send(JSON.stringify({ backend: id }));
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  return listen(server, (port) => ({
    id,
    url: `ws://127.0.0.1:${port}`,
    port,
    requests,
    sockets,
    killConnections: () => {
      for (const ws of sockets) (ws as unknown as { _socket: Socket })._socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of sockets) ws.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  }));
}

export interface RawBackend {
  readonly url: string;
  readonly port: number;
  /** Every byte each connection sent, by connection. */
  readonly received: Buffer[][];
  readonly connections: number;
  close(): Promise<void>;
}

/** A TCP server whose reply to each connection's first bytes is `respond(requestText)` (undefined = say nothing). */
export function startRawBackend(
  respond: (request: string, socket: Socket) => string | Buffer | undefined,
): Promise<RawBackend> {
  const received: Buffer[][] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    const mine: Buffer[] = [];
    received.push(mine);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let answered = false;
    socket.on('data', (chunk) => {
      mine.push(chunk);
      if (answered) return;
      const text = Buffer.concat(mine).toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      answered = true;
      const reply = respond(text, socket);
      if (reply !== undefined) socket.write(reply);
    });
  });
  return listen(server, (port) => ({
    url: `ws://127.0.0.1:${port}`,
    port,
    received,
    get connections() {
      return received.length;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  }));
}

/** A port with nothing listening (bound, then closed: connects are refused). */
export async function refusedPort(): Promise<number> {
  const server = createServer();
  const port = await new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function listen<T>(server: Server | ReturnType<typeof createHttpServer>, make: (port: number) => T): Promise<T> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(make((server.address() as AddressInfo).port)));
  });
}

/**
 * Listens with `server` on 127.0.0.1:0 and tracks its connections; `cleanups` destroys every one (upgraded ones
 * too, which closeAllConnections leaves) and closes the server after the test.
 */
export async function listenTracked(
  server: HttpServer,
  cleanups: Cleanup[],
): Promise<{ port: number; url: string; open(): number }> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return { port, url: `ws://127.0.0.1:${port}`, open: () => sockets.size };
}
