// Shared by the edge tests (test/access/edge-*.test.ts): a backend that counts every TCP connection it accepts (so a
// refusal can be shown to have opened none), optionally behind TLS that demands a client certificate; and raw
// requests (upgrade or plain GET) over TCP or TLS, from a chosen local address, with a chosen client certificate.

import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { expect } from 'vitest';
import { WebSocketServer } from 'ws';
import type { Cleanup } from '../helpers/cleanups.js';
import type { KeyPair } from '../helpers/client-certs.js';
import { type RawResponse, readResponseHead, upgradeRequest } from '../helpers/raw-client.js';

export interface CountingBackend {
  readonly url: string;
  /** TCP connections accepted so far (health checks included; the edge tests configure none). */
  readonly accepted: number;
  /** Headers of each WebSocket upgrade and plain request that reached the backend, in order. */
  readonly seen: IncomingHttpHeaders[];
}

export interface BackendTls {
  /** The backend's own certificate. */
  readonly pair: KeyPair;
  /** CA that client certificates must chain to: wsgate's connection without one fails the TLS handshake. */
  readonly clientCa: string;
}

/** An echo backend (welcome `{"backend":"edge"}`, answers plain GETs 200 "plain"), closed by `cleanups`. */
export async function countingBackend(cleanups: Cleanup[], tls?: BackendTls): Promise<CountingBackend> {
  const seen: IncomingHttpHeaders[] = [];
  const onRequest: Parameters<typeof createHttpServer>[1] = (req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('plain');
  };
  const server: Server =
    tls === undefined
      ? createHttpServer(onRequest)
      : createHttpsServer(
          { cert: tls.pair.cert, key: tls.pair.key, ca: tls.clientCa, requestCert: true, rejectUnauthorized: true },
          onRequest,
        );
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    seen.push(req.headers);
    ws.on('error', () => {});
    ws.send(JSON.stringify({ backend: 'edge' }));
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const sockets = new Set<Socket>();
  let accepted = 0;
  server.on('connection', (socket: Socket) => {
    accepted++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // A refused TLS handshake (no client certificate) is reported here; it is what the test expects.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        wss.close();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${tls === undefined ? 'ws' : 'wss'}://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    seen,
  };
}

export interface RequestOptions {
  readonly path?: string;
  /** `upgrade` (default) or a plain `GET`. */
  readonly kind?: 'upgrade' | 'get';
  readonly headers?: Record<string, string>;
  /** Connect with TLS, presenting this client certificate if given (`{}`: TLS without one), naming `servername`. */
  readonly tls?: Partial<KeyPair> & { readonly servername?: string; readonly maxVersion?: 'TLSv1.2' };
  /** Local address to connect from (any 127.x.y.z works on Linux loopback). */
  readonly from?: string;
  /** Address to connect to (default 127.0.0.1). */
  readonly host?: string;
  /** Bytes sent before the request (a PROXY protocol header). */
  readonly preamble?: Buffer;
}

/** The request bytes for `options`: an RFC 6455 upgrade or a plain GET. */
export function requestBytes(options: RequestOptions): Buffer {
  const path = options.path ?? '/';
  const text =
    options.kind === 'get'
      ? `GET ${path} HTTP/1.1\r\n${Object.entries({ Host: 'localhost', ...options.headers })
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('')}\r\n`
      : upgradeRequest({ path, ...(options.headers === undefined ? {} : { headers: options.headers }) });
  return options.preamble === undefined ? Buffer.from(text) : Buffer.concat([options.preamble, Buffer.from(text)]);
}

/** Sends one request to `port` and resolves with the response head; the socket stays open (destroy it). */
export function send(port: number, options: RequestOptions = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const host = options.host ?? '127.0.0.1';
    const localAddress = options.from;
    const onConnected = () => {
      socket.write(requestBytes(options));
      readResponseHead(socket).then(resolve, reject);
    };
    const socket: Socket =
      options.tls === undefined
        ? connect({ port, host, ...(localAddress ? { localAddress } : {}) }, onConnected)
        : tlsConnect(
            {
              port,
              host,
              rejectUnauthorized: false,
              ...(localAddress ? { localAddress } : {}),
              ...(options.tls.cert === undefined ? {} : { cert: options.tls.cert, key: options.tls.key }),
              ...(options.tls.servername === undefined ? {} : { servername: options.tls.servername }),
              ...(options.tls.maxVersion === undefined ? {} : { maxVersion: options.tls.maxVersion }),
            },
            onConnected,
          );
    socket.once('error', reject);
  });
}

/** send(), then the socket destroyed: status and headers only. */
export async function statusOf(
  port: number,
  options: RequestOptions = {},
): Promise<{ status: number; headers: Record<string, string> }> {
  const res = await send(port, options);
  res.socket.destroy();
  return { status: res.status, headers: res.headers };
}

/** What a refusal must look like: the status and catalogue code, and no backend connection opened for it. */
export async function expectRefused(
  port: number,
  backend: CountingBackend,
  options: RequestOptions,
  status: number,
  code: string,
): Promise<Record<string, string>> {
  const before = backend.accepted;
  const res = await statusOf(port, options);
  expect({ status: res.status, code: res.headers['x-wsgate-error'] }).toEqual({ status, code });
  expect(backend.accepted).toBe(before);
  return res.headers;
}

/** An upgrade answered 101 (its socket destroyed), or a plain GET answered 200 by the backend. */
export async function expectPassed(port: number, options: RequestOptions): Promise<void> {
  const res = await statusOf(port, options);
  expect(res.status).toBe(options.kind === 'get' ? 200 : 101);
}
