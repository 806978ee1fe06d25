// How a tunnel closes: the close frames the proxy writes, where in the stream they go, and what each peer hears.
//
// Rules (the entries' codes and reasons are in the catalogue, errors.ts):
// - A close frame goes to a peer only at a frame boundary of the stream toward it: now if the stream is at one,
//   else as soon as the frame in flight ends (within CLOSE_FRAME_DEADLINE_MS, or the connections are cut).
//   Nothing follows a close frame, and a stream that stopped mid-frame gets none: its TCP close speaks instead.
// - The proxy's own endings: the client hears `closeCode`, the backend `backendCloseCode` (1001).
// - A fault (violation, limit): the stream from the offender stops at the offending frame. A client at fault hears
//   `closeCode` and its backend `backendCloseCode` (1011 or 1000); a backend at fault hears `closeCode` and its
//   client 1014, both with `reason`.
// - A peer's close frame goes through and ends the WebSocket; the other peer answers it or is cut after
//   CLOSE_REPLY_TIMEOUT_MS.
// - A peer that vanished without a close frame: the survivor hears the ending's half for it (1001 or 1014).
// Once no close frame is owed either way, both sockets end (tunnel.ts).

import type { Socket } from 'node:net';
import { type Ending, Endings } from '../errors.js';
import { CLOSE_CODES, encodeCloseFrame } from './close-frame.js';
import type { FrameScanner } from './frame-scanner.js';
import type { Pump } from './pump.js';
import { STOP_ABSORBED, STOP_CLOSE } from './stop-codes.js';
import type { Tunnel } from './tunnel.js';

/** How long a close frame may wait for the frame in flight to finish before the TCP connection is cut instead. */
export const CLOSE_FRAME_DEADLINE_MS = 2000;
/**
 * How long the other peer has to answer a close frame that went through with its own (or timeouts.idle, if
 * shorter); after it, both connections are closed. Without it, a peer that never answers nor closes would keep
 * the tunnel forever.
 */
export const CLOSE_REPLY_TIMEOUT_MS = 5000;

/** The proxy ends the tunnel on its own account (drain, idle, keepalive, rebalancing, an unhealthy backend). */
export function closeByProxy(t: Tunnel, ending: Ending): void {
  t.record(ending, undefined);
  t.proxyCloseCode ||= ending.closeCode;
  sendClose(t.b2c, ending.closeCode, ending.reason, true);
  sendClose(t.c2b, ending.backendCloseCode, ending.backendReason, true);
  maybeEndSockets(t);
}

/**
 * The peer `offender` reads broke the protocol or a limit. Its stream toward the other peer has stopped at the
 * offending frame; `atBoundary` says whether that is a frame boundary.
 */
export function closeForFault(t: Tunnel, offender: Pump, ending: Ending, atBoundary: boolean): void {
  t.record(ending, undefined);
  // The offender hears its close through the other pump (whose dest is the offender).
  if (offender.fromClient) {
    t.proxyCloseCode ||= ending.closeCode;
    sendClose(t.b2c, ending.closeCode, ending.reason, true);
    sendClose(offender, ending.backendCloseCode, ending.backendReason, atBoundary);
  } else {
    t.proxyCloseCode ||= CLOSE_CODES.BAD_GATEWAY;
    sendClose(t.c2b, ending.closeCode, ending.reason, true);
    sendClose(offender, CLOSE_CODES.BAD_GATEWAY, ending.reason, atBoundary);
  }
  maybeEndSockets(t);
}

/** The close frame of the peer `pump` reads went through to the other peer. */
export function closeFramePassed(t: Tunnel, pump: Pump): void {
  t.record(pump.fromClient ? Endings.CLIENT_CLOSE_FRAME : Endings.BACKEND_CLOSE_FRAME, undefined);
  maybeEndSockets(t);
}

/**
 * A socket ended (FIN), failed or closed. Nothing the survivor sends can go anywhere now: it is read and dropped,
 * so its FIN or reset is seen at once. Unless the vanished peer's close frame went through, the survivor hears why.
 */
export function peerGone(t: Tunnel, socket: Socket, ending: Ending, detail: string | undefined): void {
  const fromClient = socket === t.client;
  // `gone` carried the vanished peer's frames to the survivor; `other` carried frames to the vanished peer.
  const gone = fromClient ? t.c2b : t.b2c;
  const other = fromClient ? t.b2c : t.c2b;
  if (gone.sourceGone) return;
  gone.sourceGone = true;
  gone.halted = true;
  other.closedToDest = true;
  other.pendingClose = undefined;
  if (!other.source.destroyed) other.source.resume();
  t.record(ending, detail);
  if (gone.closeCodeSeen === 0 && !t.tearingDown && !gone.closedToDest) {
    if (fromClient) sendClose(gone, ending.backendCloseCode, ending.backendReason, gone.atFrameBoundary());
    else {
      t.proxyCloseCode ||= ending.closeCode;
      sendClose(gone, ending.closeCode, ending.reason, gone.atFrameBoundary());
    }
  }
  t.endSockets();
}

/**
 * Sends a close frame to `pump.dest` at the next frame boundary (now, if the stream is at one). For a halted pump
 * the caller says whether the stream stopped at a boundary.
 */
export function sendClose(pump: Pump, code: number, reason: string, streamAtBoundary: boolean): void {
  if (pump.closedToDest || pump.pendingClose !== undefined) return;
  if (!pump.scanning) {
    // Without scanning there are no known boundaries: the TCP close has to speak for us.
    pump.closedToDest = true;
    return;
  }
  const frame = encodeCloseFrame(code, reason, pump.fromClient);
  if (pump.halted) {
    // Nothing more comes from the source: the stream toward dest ends where it stopped, which is a frame
    // boundary or not; mid-frame, no close frame can follow and the TCP close has to do.
    if (streamAtBoundary) pump.write(frame);
    pump.closedToDest = true;
    return;
  }
  if (pump.atFrameBoundary()) {
    pump.write(frame);
    pump.closedToDest = true;
    return;
  }
  pump.pendingClose = frame;
  armCloseDeadline(pump.tunnel);
}

/**
 * While a close frame waits: forward only up to the end of the frame in flight, then send the close. Rate limits
 * do not apply to that frame (the connection is ending), size limits and violations do: a frame that breaks one
 * is cut where it stands, and as no close frame can follow a cut frame, the TCP close ends it.
 */
export function pushUntilBoundary(pump: Pump, chunk: Buffer, scanner: FrameScanner): void {
  let offset = 0;
  while (offset < chunk.length) {
    const left = scanner.bytesToFrameEnd();
    if (left === 0) break;
    // A header still arriving (-1): feed it a byte at a time (at most 14) until its length is known.
    const take = left < 0 ? 1 : Math.min(left, chunk.length - offset);
    const rc = scanner.scan(chunk, offset, offset + take);
    if (rc !== 0 && rc !== STOP_ABSORBED && rc !== STOP_CLOSE) {
      pump.halted = true;
      pump.pendingClose = undefined;
      pump.closedToDest = true;
      maybeEndSockets(pump.tunnel);
      return;
    }
    if (!pump.dropping) pump.forward(chunk, offset, offset + take);
    offset += take;
    if (rc === STOP_ABSORBED) pump.endAbsorb();
    if (rc === STOP_CLOSE) {
      // The peer closed first: its close frame is the one this direction carries, ours is not sent.
      pump.halted = true;
      pump.pendingClose = undefined;
      pump.closedToDest = true;
      closeFramePassed(pump.tunnel, pump);
      return;
    }
  }
  if (scanner.atFrameBoundary) flushPendingClose(pump);
}

function flushPendingClose(pump: Pump): void {
  const frame = pump.pendingClose;
  if (frame === undefined) return;
  pump.pendingClose = undefined;
  pump.write(frame);
  pump.closedToDest = true;
  maybeEndSockets(pump.tunnel);
}

function armCloseDeadline(t: Tunnel): void {
  if (t.deadlineTimer !== undefined) return;
  t.deadlineTimer = setTimeout(closeDeadlinePassed, CLOSE_FRAME_DEADLINE_MS, t);
  t.deadlineTimer.unref();
}

function closeDeadlinePassed(t: Tunnel): void {
  t.abort(Endings.CLOSE_DEADLINE);
}

/** Once no more close frames are owed in either direction, both sockets end. */
export function maybeEndSockets(t: Tunnel): void {
  const c2b = t.c2b;
  const b2c = t.b2c;
  if (!streamDone(c2b) || !streamDone(b2c) || c2b.pendingClose !== undefined || b2c.pendingClose !== undefined) return;
  if (closeHandshakeDone(t)) {
    // Nothing more may come from either peer, and nothing of ours waits in user space: close(2) hands the kernel's
    // queued bytes on and then sends FIN, without the half-close round (shutdown, the peer's FIN, two callbacks).
    t.tearingDown = true;
    t.destroyBoth();
    return;
  }
  t.endSockets();
}

function streamDone(p: Pump): boolean {
  return p.closedToDest || p.halted || p.dest.destroyed;
}

/**
 * Both peers sent a close frame and each went through to the other, over plain sockets with nothing queued in
 * user space. (Over TLS, end() sends close_notify; a peer that may still send would get a reset on close(2)
 * with unread bytes, and a reset discards what the kernel still had to send: both keep the half-close.)
 */
function closeHandshakeDone(t: Tunnel): boolean {
  const c2b = t.c2b;
  const b2c = t.b2c;
  return (
    c2b.closeCodeSeen !== 0 &&
    b2c.closeCodeSeen !== 0 &&
    c2b.closedToDest &&
    b2c.closedToDest &&
    c2b.destFd >= 0 &&
    b2c.destFd >= 0 &&
    t.client.writableLength === 0 &&
    t.backend.writableLength === 0
  );
}

/**
 * One peer's close frame went through and the other has not answered within CLOSE_REPLY_TIMEOUT_MS (or the idle
 * timeout, if shorter), nor closed its connection; asked by the sweeper. (Every other ending is bounded by its
 * own deadline or linger timer.)
 */
export function closeReplyOverdue(t: Tunnel, nowMs: number): boolean {
  if (t.tearingDown || t.ending === undefined) return false;
  const waiting = t.c2b.closedToDest !== t.b2c.closedToDest;
  if (!waiting) return false;
  const limit = t.idleMs > 0 ? Math.min(t.idleMs, CLOSE_REPLY_TIMEOUT_MS) : CLOSE_REPLY_TIMEOUT_MS;
  return nowMs - t.closingSinceMs > limit;
}

/**
 * The close code that ended the WebSocket: the one the proxy sent the client when the proxy ended it, else the
 * first close frame seen (the initiator's first); 1006 when there was none.
 */
export function closeCodeOf(t: Tunnel, ending: Ending): number {
  if (ending.initiator === 'proxy' && t.proxyCloseCode !== 0) return t.proxyCloseCode;
  const first = ending.initiator === 'backend' ? t.b2c.closeCodeSeen : t.c2b.closeCodeSeen;
  return first || t.proxyCloseCode || t.c2b.closeCodeSeen || t.b2c.closeCodeSeen || CLOSE_CODES.ABNORMAL;
}
