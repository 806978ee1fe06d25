// Raw clients on real sockets: send exact handshake bytes, read the exact answer, then the raw bytes that follow
// (frames to build and parse are in frames.ts).

import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Cleanup } from './cleanups.js';
import { waitFor } from './wait.js';

export const SAMPLE_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='; // RFC 6455 §1.3
export const SAMPLE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  /** Head text (status line + headers). */
  readonly head: string;
  /** Bytes after the head that came in the same read(s). */
  readonly rest: Buffer;
  readonly socket: Socket;
}

export interface UpgradeOptions {
  path?: string;
  host?: string;
  headers?: Record<string, string>;
  tls?: boolean;
  /** Extra bytes sent right after the request head (pipelining, early frames). */
  trailing?: Buffer | string;
}

export function upgradeRequest(options: UpgradeOptions = {}): string {
  const headers: Record<string, string> = {
    Host: options.host ?? 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': SAMPLE_KEY,
    'Sec-WebSocket-Version': '13',
    ...options.headers,
  };
  let text = `GET ${options.path ?? '/'} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(headers)) if (v !== '') text += `${k}: ${v}\r\n`;
  return `${text}\r\n`;
}

export function openSocket(port: number, tls = false): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tls
      ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(socket))
      : connect({ port, host: '127.0.0.1' }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends `request` bytes and resolves with the parsed response head (socket left open). */
export async function sendRequest(
  port: number,
  request: string | Buffer,
  tls = false,
  trailing?: Buffer | string,
): Promise<RawResponse> {
  const socket = await openSocket(port, tls);
  socket.write(request);
  if (trailing !== undefined) socket.write(trailing);
  return readResponseHead(socket);
}

export function rawUpgrade(port: number, options: UpgradeOptions = {}): Promise<RawResponse> {
  return sendRequest(port, upgradeRequest(options), options.tls, options.trailing);
}

export function readResponseHead(socket: Socket): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      cleanup();
      socket.pause();
      const head = buf.subarray(0, end).toString('latin1');
      const [statusLine, ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine?.split(' ')[1]), headers, head, rest: buf.subarray(end + 4), socket });
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`connection closed before a response head (got ${JSON.stringify(buf.toString('latin1'))})`));
    };
    const cleanup = () => {
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.on('error', () => {});
  });
}

/**
 * Opens a socket, sends an upgrade request and collects every byte that comes back; resolves once `started()` says
 * the backend has the attempt (for tests of what happens while a backend handshake is in flight).
 */
export async function upgradeInFlight(
  port: number,
  started: () => boolean,
  options: UpgradeOptions = {},
): Promise<{ socket: Socket; received: () => Buffer }> {
  const socket = await openSocket(port);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.write(upgradeRequest(options));
  await waitFor(started);
  return { socket, received: () => Buffer.concat(chunks) };
}

/** Resolves with everything the socket sends until it closes. */
export function readUntilClose(socket: Socket, initial: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [initial];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.resume();
  });
}

/** Resolves true when the socket closes within `ms`, false otherwise. */
export function closesWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.on('error', () => {});
    socket.resume();
  });
}

/**
 * A raw client after a 101 (anything else throws): its socket, what it received after the head so far, and a
 * promise of all of it once the socket closes. `cleanups` destroys the socket after the test.
 */
export async function upgradedClient(port: number, cleanups: Cleanup[]) {
  const res = await rawUpgrade(port);
  if (res.status !== 101) throw new Error(`expected a 101, got ${res.status}`);
  const chunks: Buffer[] = [res.rest];
  res.socket.on('data', (c: Buffer) => chunks.push(c));
  res.socket.on('error', () => {});
  res.socket.resume();
  cleanups.push(() => res.socket.destroy());
  const closed = new Promise<Buffer>((resolve) => res.socket.once('close', () => resolve(Buffer.concat(chunks))));
  return { socket: res.socket, received: () => Buffer.concat(chunks), closed };
}

/**
 * `head` (a backend's answer head, ending in the blank line) as wsgate relays it: byte-exact, with the request's
 * X-Request-Id line added last. The id is taken from `received` (it is generated per request); where `received` has
 * none, the expected line says so and the comparison fails.
 */
export function headWithRequestId(head: string, received: string): string {
  const id = /\r\nX-Request-Id: ([A-Za-z0-9_-]+)\r\n/.exec(received)?.[1] ?? '(missing)';
  return `${head.slice(0, -2)}X-Request-Id: ${id}\r\n\r\n`;
}
