// Backends that misbehave on purpose, on raw sockets: a minimal correct 101 (to count what reaches a backend),
// and helpers to build the exact answers hostile tests need.

import type { Socket } from 'node:net';
import { acceptFor } from '../../src/handshake/accept.js';
import { type RawBackend, startRawBackend } from './backends.js';
import type { Cleanup } from './cleanups.js';
import { afterHead } from './frames.js';

/** The client's Sec-WebSocket-Key in a raw request head ('' if absent). */
export function keyOf(request: string): string {
  return /^sec-websocket-key:[ \t]*(\S+)[ \t]*$/im.exec(request)?.[1] ?? '';
}

/** A correct 101 for `request` (RFC 6455 §4.2.2), with `extraHeaders` lines ("Name: value\r\n") appended. */
export function switchingProtocols(request: string, extraHeaders = ''): string {
  return (
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptFor(keyOf(request))}\r\n${extraHeaders}\r\n`
  );
}

/**
 * A raw backend that completes every handshake correctly, then runs `after(socket, request)` (default: keep
 * quiet). Every byte it receives is recorded, so tests can prove what did or did not reach it.
 */
export function startAcceptingBackend(after?: (socket: Socket, request: string) => void): Promise<RawBackend> {
  return startRawBackend((request, socket) => {
    if (after) setImmediate(() => after(socket, request));
    return switchingProtocols(request);
  });
}

/** startAcceptingBackend, closed by the test's cleanups. */
export async function acceptingBackendFor(
  cleanups: Cleanup[],
  after?: (socket: Socket, request: string) => void,
): Promise<RawBackend> {
  const b = await startAcceptingBackend(after);
  cleanups.push(() => b.close());
  return b;
}

/** The frames connection `i` of a raw backend received: its bytes after the upgrade request's head. */
export function receivedAfterHead(backend: RawBackend, i = 0): Buffer {
  return afterHead(Buffer.concat(backend.received[i] ?? []));
}

/** Everything connection `i` of a raw backend received, as latin1 text. */
export function receivedText(backend: RawBackend, i: number): string {
  return Buffer.concat(backend.received[i] ?? []).toString('latin1');
}
