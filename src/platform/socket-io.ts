// Socket I/O for the tunnel without Node's stream machinery.
//
// Reading: net.Socket's documented `onread` option makes a socket read into one caller-owned buffer and hand each
// read to a callback, with no Readable push, no per-read allocation and no 'data' event. Node offers it only for
// sockets it creates, not for accepted ones, so we set the same two fields the option sets (found by their symbol
// descriptions on a probe socket) and point the handle at the buffer. Every tunnel socket reads into ONE
// process-wide buffer: reads are callbacks on one thread, and each read is fully handled before the next.
//
// Writing: when nothing is queued on the destination, the bytes go to the kernel with one write(2) on its
// descriptor (fs.writeSync; the socket is non-blocking, so it writes what fits and never waits). Only what the
// kernel did not take goes through socket.write, so order is kept, and every later write queues behind it until
// the queue is empty again.
//
// The shared read buffer is overwritten by the next read, so nothing may keep a view of it: bytes the kernel did
// not take are copied into the write queue (`detach`), and so is a throttled chunk's held rest. That is the only
// copy, and it happens only under backpressure; in the steady state payload goes from the read buffer to the
// kernel untouched.
//
// Direct writes need a plain TCP socket (a TLS socket's bytes must go through its encryption); direct reads work
// for TLS sockets too (they deliver plaintext).
//
// Internals: the `kBuffer` and `kBufferCb` symbol fields of net.Socket, its `_handle`'s `useUserBuffer()` and
// `fd`. Probe (once, at start): a socket made with the `onread` option must carry the buffer and callback under
// symbols with those descriptions. Fallback (a Node without them, Windows, WSGATE_SOCKET_IO=stream,
// WSGATE_NODE_INTERNALS=off): the stream path, 'data' events and socket.write.
// What they buy (`npm run bench:floor`, wsgate with WSGATE_SOCKET_IO=stream and without, in turns, paired medians;
// 2026-12-04 on a 2-core machine under heavy load from other work, which inflates every figure): ~0.8 µs of
// ~11 µs CPU per echoed message (8%; on a quiet machine, 2026-11-25, ~16 → ~12–13 µs), and ~77 µs of ~480 µs
// CPU per ws handshake (16%: the upstream request and the 101 are written the same way).

import { writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { NODE_INTERNALS_ALLOWED, SOCKET_IO_FORCED_STREAM } from './switches.js';

/** Size of the process-wide read buffer (Node's own per-read allocation is the same 64 KiB). */
export const READ_BUFFER_BYTES = 64 * 1024;

/** Called with the socket as `this` and the number of bytes read into `buffer` (from offset 0). */
export type DirectReadCallback = (this: Socket, nread: number, buffer: Buffer) => void;

interface OnreadFields {
  readonly buffer: symbol;
  readonly callback: symbol;
}

type InternalHandle = { fd?: unknown; useUserBuffer?: (buffer: Uint8Array) => void } | null | undefined;

/** The fields net.Socket's `onread` option sets, or undefined when this Node does not have them as we expect. */
function findOnreadFields(): OnreadFields | undefined {
  const buffer = Buffer.alloc(1);
  const callback = () => true;
  const probe = new Socket({ onread: { buffer, callback } });
  const bySymbol = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
  const bufferField = bySymbol.get('kBuffer');
  const callbackField = bySymbol.get('kBufferCb');
  probe.destroy();
  if (bufferField === undefined || callbackField === undefined) return undefined;
  const fields = probe as unknown as Record<symbol, unknown>;
  if (fields[bufferField] !== buffer || fields[callbackField] !== callback) return undefined;
  return { buffer: bufferField, callback: callbackField };
}

const enabled = process.platform !== 'win32' && NODE_INTERNALS_ALLOWED && !SOCKET_IO_FORCED_STREAM;
const onreadFields = enabled ? findOnreadFields() : undefined;
const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);

/** Which I/O path tunnel sockets take in this process, reads and writes alike (logged at start). */
export const SOCKET_IO_MODE: 'direct' | 'stream' = onreadFields === undefined ? 'stream' : 'direct';

function handleOf(socket: Socket): InternalHandle {
  return (socket as unknown as { _handle: InternalHandle })._handle;
}

/**
 * Makes `socket` deliver its reads to `onRead` through the shared buffer instead of 'data' events. Returns false
 * (and changes nothing) when the socket cannot: the caller keeps its 'data' listener. Bytes the socket had already
 * buffered before the switch still arrive as 'data' events, so a caller keeps that listener either way.
 */
export function readDirect(socket: Socket, onRead: DirectReadCallback): boolean {
  if (onreadFields === undefined || socket.destroyed) return false;
  const handle = handleOf(socket);
  if (typeof handle?.useUserBuffer !== 'function') return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[onreadFields.buffer] = readBuffer;
  fields[onreadFields.callback] = onRead;
  handle.useUserBuffer(readBuffer);
  return true;
}

/** The descriptor to write `socket` with directly, or -1 to use socket.write. */
export function directWriteFd(socket: Socket): number {
  // A TLS socket's handle reports the descriptor of the TCP connection under it: writing there would bypass TLS.
  if (SOCKET_IO_MODE !== 'direct' || socket instanceof TLSSocket || socket.destroyed) return -1;
  const fd = handleOf(socket)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/** A buffer that may be kept past the current read: `buffer` itself, or a copy when it views the shared buffer. */
export function detach(buffer: Buffer): Buffer {
  return buffer.buffer === readBuffer.buffer ? Buffer.from(buffer) : buffer;
}

/**
 * Writes `chunk` to `dest` (descriptor `fd`, or -1): straight to the kernel when nothing is queued, the rest (if
 * any) through the socket's queue. Returns socket.write's verdict: false when the reader should pause until
 * 'drain'. A write error destroys `dest` with it, as a failed socket.write would.
 */
export function writeChunk(dest: Socket, fd: number, chunk: Buffer): boolean {
  let rest = chunk;
  // writableLength counts queued and in-flight bytes: 0 means libuv holds nothing for this socket either. The
  // destroyed check comes first: a closed descriptor's number may already belong to another socket.
  if (fd >= 0 && !dest.destroyed && dest.writableLength === 0 && !dest.writableEnded) {
    let written: number;
    try {
      written = writeSync(fd, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        dest.destroy(err as Error);
        return true;
      }
      written = 0;
    }
    if (written === chunk.length) return true;
    rest = chunk.subarray(written);
  }
  return dest.write(detach(rest));
}
