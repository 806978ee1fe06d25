// Answers a refused handshake with a real HTTP status and a one-line reason, then closes the socket gracefully:
// the response is flushed and the client's unread bytes are drained (lingering close), so a pipelined request
// can neither reach anything nor turn our answer into a TCP reset.

import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { CatalogueEntry } from '../errors.js';
import { releaseFromNodeHttp } from '../platform/http-parser-release.js';

/** How long a refused client may keep its half of the connection open before we drop it. */
export const LINGER_MS = 2000;

export function httpResponseHead(status: number, headers: Readonly<Record<string, string>>, body: string): string {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n`;
  for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
  return `${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

export function rejectHandshake(
  socket: Duplex,
  entry: CatalogueEntry,
  extraHeaders: Record<string, string> = {},
): void {
  const status = entry.status ?? 500;
  const headers: Record<string, string> = {
    Connection: 'close',
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Wsgate-Error': entry.code,
    ...extraHeaders,
  };
  writeAndClose(socket, httpResponseHead(status, headers, `${entry.message}\n`));
}

const kLingering = Symbol('wsgate.lingering');
type LingeringSocket = Duplex & { [kLingering]?: true };

/** Whether writeAndClose has taken `socket`: it ends in the lingering close, whatever else is reported on it. */
export function isLingering(socket: Duplex): boolean {
  return (socket as LingeringSocket)[kLingering] === true;
}

/** Writes `data` (if the socket is still writable), half-closes, discards input, destroys after LINGER_MS. */
export function writeAndClose(socket: Duplex, data: string | Buffer): void {
  if (socket.destroyed) return;
  (socket as LingeringSocket)[kLingering] = true;
  socket.on('error', destroySocket);
  if (socket.writable) socket.end(data);
  else socket.destroy();
  // On a socket node:http still parses, its parser would read the bytes we mean to discard and turn them into
  // requests (or answer them itself) after our answer.
  releaseFromNodeHttp(socket);
  socket.on('data', discard);
  socket.resume();
  const timer = setTimeout(destroySocket.bind(socket), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', destroySocket);
}

function discard(): void {}

function destroySocket(this: Duplex): void {
  this.destroy();
}
