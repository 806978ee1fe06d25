// The tunnel after a verified 101. Each direction is a Pump: it scans the frame headers of every chunk it reads
// (FrameScanner: header bytes only, payload skipped by count) and writes the bytes it read to the other socket,
// pausing the reader while the writer is full. The scan lets the pump count messages, enforce limits and inject
// close frames at frame boundaries, without unmasking payload. Plain TCP sockets read into a shared buffer and
// write straight to the kernel (socket-io.ts); payload is copied only when the writer's kernel buffer is full.
//
// Per-connection state is this object plus two pumps (and a scanner each, from its first byte); socket handlers are shared functions that
// find the tunnel through a symbol, so an idle tunnel costs no closures. Every exit converges on both sockets
// closing, and the tunnel is accounted for exactly once, when the second one has closed.

import type { Socket } from 'node:net';
import type { ConnectionLimits, DirectionLimits } from '../config/types.js';
import { B2C, C2B, type RouteStats, TYPE_BINARY, TYPE_CONTROL, TYPE_TEXT } from '../observe/metrics.js';
import { detach, directWriteFd, readDirect, writeChunk } from '../platform/socket-io.js';
import {
  CLOSE_CODES,
  encodeCloseFrame,
  encodePing,
  encodePong,
  OPCODE_CLOSE,
  OPCODE_PONG,
  parseClosePayload,
} from './close-frame.js';
import { type FrameObserver, FrameScanner, VIOLATION_CLOSE_CODE, VIOLATION_KIND } from './frame-scanner.js';
import { TokenBucket } from './token-bucket.js';

/** Time the second socket gets to flush and close after the first one closed, before it is destroyed. */
export const TEARDOWN_LINGER_MS = 5000;
/** How long a close frame may wait for the frame in flight to finish before the TCP connection is cut instead. */
export const CLOSE_FRAME_DEADLINE_MS = 2000;
/**
 * How long the other peer has to answer a close frame that went through with its own (or timeouts.idle, if
 * shorter); after it, both connections are closed. Without it, a peer that never answers nor closes would keep
 * the tunnel forever.
 */
export const CLOSE_REPLY_TIMEOUT_MS = 5000;
/** Payload of the proxy's own keepalive pings; pongs carrying it are absorbed, all others pass. */
export const KEEPALIVE_PAYLOAD = Buffer.from('wsgate-keepalive');

// Observer stop codes (≥ 100, see FrameObserver).
const STOP_LIMIT = 100;
const STOP_TOO_BIG = 101;
const STOP_ABSORB = 102;
const STOP_ABSORBED = 103;
const STOP_THROTTLE = 104;
/** The source's close frame has been seen: it goes through, and nothing after it (§5.5.1). */
const STOP_CLOSE = 105;

const kTunnel = Symbol('wsgate.tunnel');
type TunnelSocket = Socket & { [kTunnel]?: Tunnel };

export type CloseInitiator = 'client' | 'backend' | 'proxy';
export type Protocol = 'strict' | 'lenient' | 'off';

/** A coarse monotonic clock (ms), advanced by the sweeper: reading it on the hot path costs a property load. */
export const coarseClock = { nowMs: performance.now() };

export interface TunnelEnd {
  readonly reason: string;
  readonly initiator: CloseInitiator;
  /** The close code that ended the WebSocket (first close frame seen or sent); 1006 when none was. */
  readonly closeCode: number;
  readonly bytesClientToBackend: number;
  readonly bytesBackendToClient: number;
  readonly messagesClientToBackend: number;
  readonly messagesBackendToClient: number;
  readonly durationMs: number;
}

/** What the owner of a tunnel is told; one object per route/backend, shared by its tunnels. */
export interface TunnelHooks {
  /** A frame violated RFC 6455 (counted in strict and lenient mode). */
  violation(tunnel: Tunnel, fromClient: boolean, kind: string): void;
  /** A per-connection limit was hit. */
  limitExceeded(tunnel: Tunnel, limit: string, action: 'close' | 'throttle'): void;
  /** A peer did not answer a keepalive ping in time. */
  keepaliveTimeout(tunnel: Tunnel, peer: 'client' | 'backend'): void;
  /** Called exactly once, after both sockets closed. */
  ended(tunnel: Tunnel, end: TunnelEnd): void;
}

export interface TunnelOptions {
  readonly stats: RouteStats;
  readonly protocol: Protocol;
  readonly limits: ConnectionLimits;
  /** permessage-deflate was negotiated (the backend's 101 said so): RSV1 is legal on first frames. */
  readonly rsv1Allowed: boolean;
  readonly clientAddress: string;
  /** Hash of the connection's routing key, so rebalancing can tell whether its owner moved. */
  readonly keyHash: number;
  /** Close after this long without a data message (0: never). */
  readonly idleMs: number;
  readonly keepalive: KeepaliveSettings | undefined;
}

export interface KeepaliveSettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly client: boolean;
  readonly backend: boolean;
}

// How a pump scans (Pump.scanMode): not at all, or strict/lenient, with RSV1 allowed when deflate was negotiated.
const SCAN_OFF = 0;
const SCAN_STRICT = 1;
const SCAN_LENIENT = 2;
const SCAN_RSV1 = 4;

/**
 * One direction of a tunnel: source → dest, with its scanner, limits and close-frame injection. The scanner and
 * the token buckets are made on first use, so a connection that stays silent costs neither.
 */
class Pump implements FrameObserver {
  readonly tunnel: Tunnel;
  readonly source: Socket;
  readonly dest: Socket;
  /** `dest`'s descriptor for direct writes, -1 for socket.write (see socket-io.ts). */
  readonly destFd: number;
  readonly fromClient: boolean;
  readonly direction: number;
  readonly scanMode: number;
  scanner: FrameScanner | undefined = undefined;
  readonly limits: DirectionLimits;
  readonly throttle: boolean;
  messageBucket: TokenBucket | undefined = undefined;
  byteBucket: TokenBucket | undefined = undefined;
  controlBucket: TokenBucket | undefined = undefined;
  bytes = 0;
  messages = 0;
  /** A close frame was written to `dest` (ours or forwarded): nothing may follow it. */
  closedToDest = false;
  /** Reading from `source` has stopped for good (it broke the protocol or a limit, or it is gone). */
  halted = false;
  /** A close frame waiting for the frame in flight toward `dest` to end. */
  pendingClose: Buffer | undefined = undefined;
  /** Code of the first close frame `source` sent, 0 if none. */
  closeCodeSeen = 0;
  /** Which limit stopped the scan (for the log line and metric). */
  limitHit = '';
  /** The source vanished (FIN, error or close). */
  sourceGone = false;
  /** Throttled: how long to wait, the timer, and the unforwarded rest of the chunk that hit the limit. */
  throttleMs = 0;
  throttleTimer: NodeJS.Timeout | undefined = undefined;
  held: Buffer | undefined = undefined;
  /** A keepalive ping went to `source` and its pong has not come back. */
  expectPong = false;
  /** Dropping the bytes of one of our own pongs coming from `source`. */
  dropping = false;
  /** The next pong header must pass (it straddled chunks, so it cannot be cut out). */
  passNextPong = false;
  /** A pong we cut out that turned out not to be ours: written back in its place. */
  reinject: Buffer | undefined = undefined;
  /** When the chunk being scanned arrived (read once, on its first frame that needs a bucket; 0: not yet). */
  chunkTime = 0;
  /**
   * Stream positions (FrameScanner.frameStart) of frames this pump has already charged or counted: a frame
   * stopped for a throttle or a pong cut is presented again, and must not pay or count twice.
   */
  rescanAt = -1;
  messageChargedAt = -1;
  controlChargedAt = -1;
  /** Coarse time of the last read from `source`: bytes after a keepalive ping prove the peer is there. */
  lastReadMs = 0;

  constructor(tunnel: Tunnel, source: Socket, dest: Socket, fromClient: boolean, options: TunnelOptions) {
    this.tunnel = tunnel;
    this.source = source;
    this.dest = dest;
    this.destFd = directWriteFd(dest);
    this.fromClient = fromClient;
    this.direction = fromClient ? C2B : B2C;
    const limits = fromClient ? options.limits.clientToBackend : options.limits.backendToClient;
    this.limits = limits;
    this.throttle = options.limits.onExceed === 'throttle';
    const protocol = options.protocol;
    this.scanMode =
      protocol === 'off'
        ? SCAN_OFF
        : (protocol === 'strict' ? SCAN_STRICT : SCAN_LENIENT) | (options.rsv1Allowed ? SCAN_RSV1 : 0);
  }

  /**
   * Whether `source` owes a keepalive pong and shows no sign of life since the ping at `pingMs`: nothing read from
   * it since (a throttled upload proves the peer is there, its pong is only behind its data), and not held back by
   * the proxy (its pong may wait unread behind what it sent).
   */
  silentSince(pingMs: number): boolean {
    return this.expectPong && this.lastReadMs < pingMs && !this.readingHeld();
  }

  /** Whether the proxy itself holds `source` back: throttled, or waiting for `dest` to drain. */
  readingHeld(): boolean {
    return this.throttleTimer !== undefined || this.held !== undefined || this.dest.writableNeedDrain;
  }

  /** Whether a frame may be written to `dest` now: never without scanning, always before the first byte. */
  atFrameBoundary(): boolean {
    return this.scanMode !== SCAN_OFF && (this.scanner === undefined || this.scanner.atFrameBoundary);
  }

  private newScanner(): FrameScanner {
    const mode = this.scanMode;
    const scanner = new FrameScanner({
      fromClient: this.fromClient,
      rsv1Allowed: (mode & SCAN_RSV1) !== 0,
      strict: (mode & SCAN_STRICT) !== 0,
      observer: this,
    });
    this.scanner = scanner;
    return scanner;
  }

  /** Scans and forwards one chunk read from `source`; a stop may forward part of it, hold the rest (throttle) or close. */
  push(chunk: Buffer): void {
    this.lastReadMs = coarseClock.nowMs;
    if (this.halted || this.closedToDest) return;
    if (this.scanMode === SCAN_OFF) {
      this.tunnel.lastActivityMs = coarseClock.nowMs;
      this.forward(chunk, 0, chunk.length);
      return;
    }
    const scanner = this.scanner ?? this.newScanner();
    this.chunkTime = 0;
    if (this.held !== undefined) {
      // Paused for a throttle but a chunk was already on its way: keep it behind the held one (bounded: the
      // socket is paused, so at most what it had buffered). The concatenation is a copy, so it may be kept.
      this.held = Buffer.concat([this.held, chunk]);
      return;
    }
    if (this.pendingClose !== undefined) {
      this.pushUntilBoundary(chunk, scanner);
      return;
    }
    let offset = 0;
    for (;;) {
      const rc = scanner.scan(chunk, offset);
      if (rc === 0) {
        if (!this.dropping) this.forward(chunk, offset, chunk.length);
        break;
      }
      const stop = scanner.stopOffset;
      if (rc === STOP_ABSORB) {
        if (stop < offset) {
          // The pong's header began in a chunk already forwarded: it cannot be cut out, so let it pass.
          this.passNextPong = true;
        } else {
          this.forward(chunk, offset, stop);
          this.dropping = true;
        }
        offset = scanner.resumeOffset;
        continue;
      }
      if (rc === STOP_ABSORBED) {
        this.endAbsorb();
        offset = scanner.resumeOffset;
        continue;
      }
      if (rc === STOP_CLOSE) {
        // The close frame goes through; whatever follows it is read and dropped (so the peer's FIN is still seen).
        if (!this.dropping) this.forward(chunk, offset, stop);
        this.halted = true;
        break;
      }
      if (rc === STOP_THROTTLE) {
        // Forward up to the frame over the limit, keep the rest and stop reading for a while. The rest is a view
        // of the chunk, copied only if the chunk is the shared read buffer, which the next read overwrites.
        if (stop >= offset && !this.dropping) this.forward(chunk, offset, stop);
        this.held = detach(chunk.subarray(scanner.resumeOffset));
        this.source.pause();
        this.throttleTimer = setTimeout(endThrottle, this.throttleMs, this);
        return;
      }
      // A violation or a limit: forward up to the offending frame, then close.
      const atBoundary = stop >= offset;
      if (atBoundary && !this.dropping) this.forward(chunk, offset, stop);
      this.stopped(rc, atBoundary);
      return;
    }
    if (this.closeCodeSeen !== 0 && !this.closedToDest) {
      // The chunk that carried the peer's close frame has gone through: nothing more may follow it.
      this.closedToDest = true;
      this.tunnel.closeFramePassed(this);
    }
  }

  /**
   * While a close frame waits: forward only up to the end of the frame in flight, then send the close. Rate limits
   * do not apply to that frame (the connection is ending; onFrameHeader), size limits and violations do: a frame
   * that breaks one is cut where it stands, and as no close frame can follow a cut frame, the TCP close ends it.
   */
  private pushUntilBoundary(chunk: Buffer, scanner: FrameScanner): void {
    let offset = 0;
    while (offset < chunk.length) {
      const left = scanner.bytesToFrameEnd();
      if (left === 0) break;
      // A header still arriving (-1): feed it a byte at a time (at most 14) until its length is known.
      const take = left < 0 ? 1 : Math.min(left, chunk.length - offset);
      const rc = scanner.scan(chunk, offset, offset + take);
      if (rc !== 0 && rc !== STOP_ABSORBED && rc !== STOP_CLOSE) {
        this.halted = true;
        this.pendingClose = undefined;
        this.closedToDest = true;
        this.tunnel.maybeEndSockets();
        return;
      }
      if (!this.dropping) this.forward(chunk, offset, offset + take);
      offset += take;
      if (rc === STOP_ABSORBED) this.endAbsorb();
      if (rc === STOP_CLOSE) {
        // The peer closed first: its close frame is the one this direction carries, ours is not sent.
        this.halted = true;
        this.pendingClose = undefined;
        this.closedToDest = true;
        this.tunnel.closeFramePassed(this);
        return;
      }
    }
    if (scanner.atFrameBoundary) this.flushPendingClose();
  }

  /** Our pong has been dropped: forward again, and put back a foreign pong that was cut out in its place. */
  private endAbsorb(): void {
    this.dropping = false;
    if (this.reinject !== undefined) {
      this.write(this.reinject);
      this.reinject = undefined;
    }
  }

  private forward(chunk: Buffer, start: number, end: number): void {
    const n = end - start;
    if (n <= 0 || this.dest.destroyed) return;
    this.bytes += n;
    this.tunnel.stats.bytes[this.direction]! += n;
    const buf = start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end);
    if (!writeChunk(this.dest, this.destFd, buf)) this.source.pause();
  }

  private write(frame: Buffer): void {
    if (!this.dest.destroyed) writeChunk(this.dest, this.destFd, frame);
  }

  /**
   * Sends a close frame to `dest` at the next frame boundary (now, if the stream is at one). For a halted pump
   * the caller says whether the stream stopped at a boundary.
   */
  sendClose(code: number, reason: string, streamAtBoundary: boolean): void {
    if (this.closedToDest || this.pendingClose !== undefined) return;
    if (this.scanMode === SCAN_OFF) {
      // Without scanning there are no known boundaries: the TCP close has to speak for us.
      this.closedToDest = true;
      return;
    }
    const frame = encodeCloseFrame(code, reason, this.fromClient);
    if (this.halted) {
      // Nothing more comes from the source: the stream toward dest ends where it stopped, which is a frame
      // boundary or not; mid-frame, no close frame can follow and the TCP close has to do.
      if (streamAtBoundary) this.write(frame);
      this.closedToDest = true;
      return;
    }
    if (this.atFrameBoundary()) {
      this.write(frame);
      this.closedToDest = true;
      return;
    }
    this.pendingClose = frame;
    this.tunnel.armCloseDeadline();
  }

  private flushPendingClose(): void {
    const frame = this.pendingClose;
    if (frame === undefined) return;
    this.pendingClose = undefined;
    this.write(frame);
    this.closedToDest = true;
    this.tunnel.maybeEndSockets();
  }

  private stopped(rc: number, atBoundary: boolean): void {
    // The source keeps being read, and what it sends is dropped: that is how its FIN or reset is noticed.
    this.halted = true;
    const t = this.tunnel;
    if (rc < STOP_LIMIT) {
      const code = VIOLATION_CLOSE_CODE[rc] ?? CLOSE_CODES.PROTOCOL_ERROR;
      const kind = VIOLATION_KIND[rc] ?? 'unknown';
      t.closeBecause(
        this,
        code,
        `protocol error: ${kind}`,
        this.fromClient ? 1011 : 1014,
        atBoundary,
        `violation:${kind}`,
      );
    } else if (rc === STOP_TOO_BIG) {
      t.closeBecause(
        this,
        CLOSE_CODES.MESSAGE_TOO_BIG,
        'message too big',
        this.otherSideCode(),
        atBoundary,
        'message_too_big',
      );
    } else {
      t.closeBecause(
        this,
        CLOSE_CODES.POLICY_VIOLATION,
        `limit exceeded: ${this.limitHit}`,
        this.otherSideCode(),
        atBoundary,
        `limit:${this.limitHit}`,
      );
    }
  }

  /** What the innocent side hears when this side's source is closed for cause. */
  private otherSideCode(): number {
    return this.fromClient ? CLOSE_CODES.NORMAL : CLOSE_CODES.BAD_GATEWAY;
  }

  // FrameObserver: called synchronously by the scanner.

  onFrameHeader(s: FrameScanner): number {
    const opcode = s.opcode;
    const limits = this.limits;
    // The frame in flight while our close waits is the connection's last: rate limits and pong cuts no longer apply.
    const closing = this.pendingClose !== undefined;
    if (opcode >= 8) {
      if (opcode === OPCODE_PONG && this.expectPong && s.payloadLength === KEEPALIVE_PAYLOAD.length && !closing) {
        // Likely the answer to our keepalive ping (onControlFrame checks the payload): not the peer's own traffic,
        // so it costs no control-frame token.
        if (this.passNextPong) this.passNextPong = false;
        else if (!this.dropping) return this.stopToSeeAgain(s, STOP_ABSORB);
        return 0;
      }
      // A close frame ends the connection whatever the rate: it never pays (a flood of them is impossible).
      if (opcode === OPCODE_CLOSE || closing || limits.controlFramesPerSecond === Number.POSITIVE_INFINITY) return 0;
      if (this.controlChargedAt === s.frameStart) return 0;
      this.controlBucket ??= new TokenBucket(limits.controlFramesPerSecond, Math.max(1, limits.controlFramesPerSecond));
      const rc = this.allow(this.controlBucket, 1, 'control_frames_per_second', this.now());
      if (rc !== 0) return this.stopToSeeAgain(s, rc);
      this.controlChargedAt = s.frameStart;
      return 0;
    }
    if (s.messageBytes > limits.maxMessageBytes) {
      this.limitHit = 'max_message_bytes';
      this.tunnel.hooks.limitExceeded(this.tunnel, 'max_message_bytes', 'close');
      return STOP_TOO_BIG;
    }
    if (s.messageFrames > limits.maxFramesPerMessage) {
      this.limitHit = 'max_frames_per_message';
      this.tunnel.hooks.limitExceeded(this.tunnel, 'max_frames_per_message', 'close');
      return STOP_LIMIT;
    }
    if (closing) return 0;
    const countMessage =
      s.messageFrames === 1 &&
      limits.messagesPerSecond !== Number.POSITIVE_INFINITY &&
      this.messageChargedAt !== s.frameStart;
    const countBytes = s.payloadLength > 0 && limits.bytesPerSecond !== Number.POSITIVE_INFINITY;
    if (!countMessage && !countBytes) return 0;
    const now = this.now();
    if (countMessage) {
      this.messageBucket ??= new TokenBucket(limits.messagesPerSecond, Math.max(1, limits.burstMessages));
      const rc = this.allow(this.messageBucket, 1, 'messages_per_second', now);
      if (rc !== 0) return this.stopToSeeAgain(s, rc);
      // Paid: a throttle on the bytes below presents this frame again, and it must not pay twice.
      this.messageChargedAt = s.frameStart;
    }
    if (countBytes) {
      this.byteBucket ??= new TokenBucket(limits.bytesPerSecond, Math.max(1, limits.bytesPerSecond));
      return this.stopToSeeAgain(s, this.allow(this.byteBucket, s.payloadLength, 'bytes_per_second', now));
    }
    return 0;
  }

  /** Notes a stop after which the scanner presents this frame again (throttle, pong cut), then returns `rc`. */
  private stopToSeeAgain(s: FrameScanner, rc: number): number {
    if (rc === STOP_THROTTLE || rc === STOP_ABSORB) this.rescanAt = s.frameStart;
    return rc;
  }

  /** The arrival time of the chunk in hand: every frame in one read arrived at once. */
  private now(): number {
    if (this.chunkTime === 0) this.chunkTime = performance.now();
    return this.chunkTime;
  }

  onControlFrame(s: FrameScanner): number {
    const opcode = s.opcode;
    if (opcode === OPCODE_PONG && this.dropping) {
      // Cut out of the stream: ours is the proxy's own business, a foreign one goes back in its place.
      const payload = s.controlPayload;
      if (payload?.equals(KEEPALIVE_PAYLOAD)) this.pongArrived();
      else {
        this.countControl();
        this.reinject = encodePong(payload ?? Buffer.alloc(0), this.fromClient);
      }
      return STOP_ABSORBED;
    }
    this.countControl();
    if (opcode === OPCODE_CLOSE) {
      if (this.closeCodeSeen === 0) {
        const payload = s.controlPayload;
        this.closeCodeSeen = (payload && parseClosePayload(payload)?.code) || CLOSE_CODES.NO_STATUS;
      }
      return STOP_CLOSE;
    }
    // Our pong passed through (its header straddled two reads, so it could not be cut out): still the answer.
    if (opcode === OPCODE_PONG && this.expectPong && s.controlPayload?.equals(KEEPALIVE_PAYLOAD)) this.pongArrived();
    return 0;
  }

  private countControl(): void {
    this.tunnel.stats.messages[this.direction * 3 + TYPE_CONTROL]!++;
  }

  private pongArrived(): void {
    this.expectPong = false;
    this.tunnel.pongReceived();
  }

  onMessageEnd(s: FrameScanner): number {
    this.messages++;
    this.tunnel.lastActivityMs = coarseClock.nowMs;
    this.tunnel.stats.countMessage(this.direction, s.messageOpcode === 1 ? TYPE_TEXT : TYPE_BINARY, s.messageBytes);
    return 0;
  }

  onViolation(s: FrameScanner, code: number): number {
    // A frame presented again after a throttle was counted on its first pass (lenient mode lets it through).
    if (s.frameStart !== this.rescanAt) {
      this.tunnel.hooks.violation(this.tunnel, this.fromClient, VIOLATION_KIND[code] ?? 'unknown');
    }
    return 0;
  }

  /**
   * Takes from a bucket. On shortage counts the hit and returns the stop code: STOP_LIMIT (close), or
   * STOP_THROTTLE with `throttleMs` set, so the frame is presented again once the bucket has refilled.
   */
  private allow(b: TokenBucket, n: number, limit: string, now: number): number {
    if (b.take(n, now)) return 0;
    this.limitHit = limit;
    if (this.throttle) {
      this.throttleMs = Math.max(1, b.msUntil(n, now));
      this.tunnel.hooks.limitExceeded(this.tunnel, limit, 'throttle');
      return STOP_THROTTLE;
    }
    this.tunnel.hooks.limitExceeded(this.tunnel, limit, 'close');
    return STOP_LIMIT;
  }
}

/** The bucket has refilled: carry on with the held rest of the chunk, then read again. */
function endThrottle(pump: Pump): void {
  pump.throttleTimer = undefined;
  const held = pump.held;
  pump.held = undefined;
  if (held !== undefined) pump.push(held);
  if (pump.halted || pump.source.destroyed || pump.throttleTimer !== undefined) return;
  // Still blocked on the writer: its drain handler resumes the reader.
  if (!pump.dest.writableNeedDrain) pump.source.resume();
}

export class Tunnel {
  readonly client: Socket;
  readonly backend: Socket;
  readonly hooks: TunnelHooks;
  readonly stats: RouteStats;
  readonly clientAddress: string;
  readonly keyHash: number;
  readonly idleMs: number;
  readonly keepaliveSettings: KeepaliveSettings | undefined;
  readonly startedAt: number;
  readonly c2b: Pump;
  readonly b2c: Pump;
  /** Coarse time of the last data message (or chunk, without scanning); the sweeper closes idle tunnels. */
  lastActivityMs: number;
  /** When the outstanding keepalive ping was sent (0: none outstanding). */
  pingSentMs = 0;
  lastPingMs: number;
  /** First reason recorded wins: it is what the close log line and metrics report. */
  reason: string | undefined;
  /** Coarse time the close began (the first reason was recorded). */
  closingSinceMs = 0;
  initiator: CloseInitiator = 'proxy';
  /** Close code sent by the proxy (0 if it sent none). */
  proxyCloseCode = 0;
  private openSockets = 2;
  private lingerTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private ending = false;

  constructor(client: Socket, backend: Socket, hooks: TunnelHooks, options: TunnelOptions) {
    this.client = client;
    this.backend = backend;
    this.hooks = hooks;
    this.stats = options.stats;
    this.clientAddress = options.clientAddress;
    this.keyHash = options.keyHash;
    this.idleMs = options.idleMs;
    this.keepaliveSettings = options.keepalive;
    this.startedAt = performance.now();
    this.lastActivityMs = this.startedAt;
    this.lastPingMs = this.startedAt;
    this.c2b = new Pump(this, client, backend, true, options);
    this.b2c = new Pump(this, backend, client, false, options);
    (client as TunnelSocket)[kTunnel] = this;
    (backend as TunnelSocket)[kTunnel] = this;
    client.setNoDelay(true);
    backend.setNoDelay(true);
    // 'data' stays subscribed with direct reads too: it delivers what the socket buffered before the switch.
    client.on('data', onClientData);
    backend.on('data', onBackendData);
    // The shared read buffer only feeds direct writes: a TLS destination gets the stream path's own buffers, which
    // its queue may keep without a copy.
    if (this.c2b.destFd >= 0) readDirect(client, onClientRead);
    if (this.b2c.destFd >= 0) readDirect(backend, onBackendRead);
    client.on('drain', onDrain);
    backend.on('drain', onDrain);
    client.on('end', onEnd);
    backend.on('end', onEnd);
    client.on('error', onError);
    backend.on('error', onError);
    client.on('close', onClose);
    backend.on('close', onClose);
  }

  /**
   * Starts the pumps, after the 101 and any early bytes have been written. A pump that early bytes already
   * throttled or filled its writer stays paused: its timer or its writer's drain resumes it.
   */
  start(): void {
    if (!this.c2b.readingHeld()) this.client.resume();
    if (!this.b2c.readingHeld()) this.backend.resume();
  }

  /** Forwards bytes that arrived with the handshake (frames glued to the 101 or to the request). */
  forwardEarly(fromClient: boolean, chunk: Buffer): void {
    if (chunk.length > 0) (fromClient ? this.c2b : this.b2c).push(chunk);
  }

  /** A close is under way (a close frame passed or was sent, or a socket went). */
  get closing(): boolean {
    return this.reason !== undefined;
  }

  get messagesClientToBackend(): number {
    return this.c2b.messages;
  }

  get messagesBackendToClient(): number {
    return this.b2c.messages;
  }

  /**
   * Ends the WebSocket on the proxy's behalf: the client gets `code` with `reason`, the backend 1001, each at the
   * next frame boundary of its direction (the frame in flight finishes first, within CLOSE_FRAME_DEADLINE_MS).
   * Used for drain (1001), rebalancing (1012) and idle (1001).
   */
  closeWithCode(code: number, reason: string): void {
    this.record(reason, 'proxy');
    this.proxyCloseCode ||= code;
    this.b2c.sendClose(code, reason, true);
    this.c2b.sendClose(CLOSE_CODES.GOING_AWAY, reason, true);
    this.maybeEndSockets();
  }

  /**
   * `offender` broke the protocol or a limit: its source gets `code`, the other side `otherCode`. The offender's
   * stream toward the other side stops at the offending frame (`atBoundary` says whether that is a clean boundary).
   */
  closeBecause(
    offender: Pump,
    code: number,
    reason: string,
    otherCode: number,
    atBoundary: boolean,
    logReason: string,
  ): void {
    this.record(logReason, 'proxy');
    const other = offender === this.c2b ? this.b2c : this.c2b;
    // The offender hears `code` through the other pump (whose dest is the offender).
    if (offender === this.c2b) this.proxyCloseCode ||= code;
    else this.proxyCloseCode ||= otherCode;
    other.sendClose(code, reason, true);
    offender.sendClose(otherCode, offender.fromClient ? 'client closed by proxy' : reason, atBoundary);
    this.maybeEndSockets();
  }

  /** A peer's close frame went through to the other side. */
  closeFramePassed(pump: Pump): void {
    this.record(pump.fromClient ? 'client_close_frame' : 'backend_close_frame', pump.fromClient ? 'client' : 'backend');
    this.maybeEndSockets();
  }

  /** Our keepalive pong came back; once every pinged peer answered, no ping is outstanding. */
  pongReceived(): void {
    if (!this.c2b.expectPong && !this.b2c.expectPong) this.pingSentMs = 0;
  }

  /** Sends keepalive pings where due and closes peers that did not answer; called by the sweeper. */
  keepalive(settings: KeepaliveSettings, nowMs: number): void {
    if (this.ending) return;
    if (this.pingSentMs !== 0) {
      if (nowMs - this.pingSentMs < settings.timeoutMs) return;
      const clientSilent = this.c2b.silentSince(this.pingSentMs);
      if (!clientSilent && !this.b2c.silentSince(this.pingSentMs)) return;
      const peer = clientSilent ? 'client' : 'backend';
      this.hooks.keepaliveTimeout(this, peer);
      if (clientSilent) this.closeWithCode(CLOSE_CODES.GOING_AWAY, 'keepalive timeout');
      else this.closeWithCode(CLOSE_CODES.INTERNAL_ERROR, 'backend keepalive timeout');
      return;
    }
    if (nowMs - this.lastPingMs < settings.intervalMs) return;
    // Pings go out only at frame boundaries; a busy stream gets its ping on a later sweep.
    const toClient = settings.client && this.b2c.atFrameBoundary() && !this.b2c.closedToDest;
    const toBackend = settings.backend && this.c2b.atFrameBoundary() && !this.c2b.closedToDest;
    if (!toClient && !toBackend) return;
    if (toClient) {
      this.client.write(encodePing(KEEPALIVE_PAYLOAD, false));
      this.c2b.expectPong = true;
    }
    if (toBackend) {
      this.backend.write(encodePing(KEEPALIVE_PAYLOAD, true));
      this.b2c.expectPong = true;
    }
    this.pingSentMs = nowMs;
    this.lastPingMs = nowMs;
  }

  /** Immediate end: both sockets destroyed now. */
  abort(reason: string, initiator: CloseInitiator): void {
    this.record(reason, initiator);
    destroyBoth(this);
  }

  /** @internal once no more close frames are owed in either direction, half-close both sockets. */
  maybeEndSockets(): void {
    const c2b = this.c2b;
    const b2c = this.b2c;
    const done = (p: Pump) => p.closedToDest || p.halted || p.dest.destroyed;
    if (!done(c2b) || !done(b2c) || c2b.pendingClose !== undefined || b2c.pendingClose !== undefined) return;
    if (this.closeHandshakeDone()) {
      // Nothing more may come from either peer, and nothing of ours waits in user space: close(2) hands the kernel's
      // queued bytes on and then sends FIN, without the half-close round (shutdown, the peer's FIN, two callbacks).
      this.ending = true;
      destroyBoth(this);
      return;
    }
    this.endSockets();
  }

  /**
   * Both peers sent a close frame and each went through to the other, over plain sockets with nothing queued in
   * user space. (Over TLS, end() sends close_notify; a peer that may still send would get a reset on close(2)
   * with unread bytes, and a reset discards what the kernel still had to send: both keep the half-close.)
   */
  private closeHandshakeDone(): boolean {
    const c2b = this.c2b;
    const b2c = this.b2c;
    return (
      c2b.closeCodeSeen !== 0 &&
      b2c.closeCodeSeen !== 0 &&
      c2b.closedToDest &&
      b2c.closedToDest &&
      c2b.destFd >= 0 &&
      b2c.destFd >= 0 &&
      this.client.writableLength === 0 &&
      this.backend.writableLength === 0
    );
  }

  /** @internal */
  armCloseDeadline(): void {
    if (this.deadlineTimer !== undefined) return;
    this.deadlineTimer = setTimeout(closeDeadlinePassed, CLOSE_FRAME_DEADLINE_MS, this);
    this.deadlineTimer.unref();
  }

  /** @internal a socket ended (FIN), failed or closed: the survivor hears why, with a close code. */
  peerGone(socket: Socket, reason: string): void {
    const fromClient = socket === this.client;
    // `gone` carried the vanished peer's frames to the survivor; `other` carried frames to the vanished peer.
    const gone = fromClient ? this.c2b : this.b2c;
    const other = fromClient ? this.b2c : this.c2b;
    if (gone.sourceGone) return;
    gone.sourceGone = true;
    gone.halted = true;
    other.closedToDest = true;
    other.pendingClose = undefined;
    // Nothing the survivor sends can go anywhere now: read and drop it, so its FIN or reset is seen at once instead
    // of after the linger, should it be paused for backpressure toward the peer that vanished.
    if (!other.source.destroyed) other.source.resume();
    if (gone.closeCodeSeen === 0 && !this.ending && !gone.closedToDest) {
      // No close frame from the peer: a vanished backend is 1014 to the client, a vanished client 1001 to the backend.
      this.record(reason, fromClient ? 'client' : 'backend');
      const code = fromClient ? CLOSE_CODES.GOING_AWAY : CLOSE_CODES.BAD_GATEWAY;
      if (!fromClient) this.proxyCloseCode ||= code;
      gone.sendClose(code, fromClient ? 'client went away' : 'backend connection lost', gone.atFrameBoundary());
    }
    this.endSockets();
  }

  /** @internal called by the shared close handler. */
  socketClosed(socket: Socket): void {
    this.openSockets--;
    if (this.openSockets === 1) {
      this.peerGone(socket, socket === this.client ? 'client_closed' : 'backend_closed');
      return;
    }
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    for (const p of [this.c2b, this.b2c]) if (p.throttleTimer !== undefined) clearTimeout(p.throttleTimer);
    this.hooks.ended(this, {
      reason: this.reason ?? 'closed',
      initiator: this.initiator,
      closeCode: this.closeCode(),
      bytesClientToBackend: this.c2b.bytes,
      bytesBackendToClient: this.b2c.bytes,
      messagesClientToBackend: this.c2b.messages,
      messagesBackendToClient: this.b2c.messages,
      durationMs: performance.now() - this.startedAt,
    });
  }

  private closeCode(): number {
    if (this.initiator === 'proxy' && this.proxyCloseCode !== 0) return this.proxyCloseCode;
    const first = this.initiator === 'backend' ? this.b2c.closeCodeSeen : this.c2b.closeCodeSeen;
    return first || this.proxyCloseCode || this.c2b.closeCodeSeen || this.b2c.closeCodeSeen || CLOSE_CODES.ABNORMAL;
  }

  private record(reason: string, initiator: CloseInitiator): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.initiator = initiator;
    this.closingSinceMs = coarseClock.nowMs;
  }

  /**
   * One peer's close frame went through and the other has not answered within CLOSE_REPLY_TIMEOUT_MS (or the idle
   * timeout, if shorter), nor closed its connection; called by the sweeper. (Every other ending is bounded by its
   * own deadline or linger timer.)
   */
  closeReplyOverdue(nowMs: number): boolean {
    if (this.ending || this.reason === undefined) return false;
    const waiting =
      (this.c2b.closedToDest && !this.b2c.closedToDest) || (this.b2c.closedToDest && !this.c2b.closedToDest);
    if (!waiting) return false;
    const limit = this.idleMs > 0 ? Math.min(this.idleMs, CLOSE_REPLY_TIMEOUT_MS) : CLOSE_REPLY_TIMEOUT_MS;
    return nowMs - this.closingSinceMs > limit;
  }

  /** Half-closes both sockets so queued bytes still flush; whatever is left after the linger is destroyed. */
  private endSockets(): void {
    this.ending = true;
    // A second end() on an ended socket does nothing but build an ERR_STREAM_ALREADY_FINISHED (with its stack
    // trace) for a callback we do not pass; that was ~10% of a plain handshake's CPU.
    if (!this.client.destroyed && !this.client.writableEnded) this.client.end();
    if (!this.backend.destroyed && !this.backend.writableEnded) this.backend.end();
    if (this.lingerTimer === undefined && this.openSockets > 0 && !(this.client.destroyed && this.backend.destroyed)) {
      this.lingerTimer = setTimeout(destroyBoth, TEARDOWN_LINGER_MS, this);
      this.lingerTimer.unref();
    }
  }
}

function onClientData(this: TunnelSocket, chunk: Buffer): void {
  this[kTunnel]!.c2b.push(chunk);
}

function onBackendData(this: TunnelSocket, chunk: Buffer): void {
  this[kTunnel]!.b2c.push(chunk);
}

function onClientRead(this: TunnelSocket, nread: number, buffer: Buffer): void {
  this[kTunnel]!.c2b.push(buffer.subarray(0, nread));
}

function onBackendRead(this: TunnelSocket, nread: number, buffer: Buffer): void {
  this[kTunnel]!.b2c.push(buffer.subarray(0, nread));
}

/** The writer drained: let its peer read again, unless that reader is throttled. (A halted reader is read and dropped.) */
function onDrain(this: TunnelSocket): void {
  const t = this[kTunnel]!;
  const pump = this === t.client ? t.b2c : t.c2b;
  if (pump.throttleTimer === undefined && !pump.source.destroyed) pump.source.resume();
}

function onEnd(this: TunnelSocket): void {
  const t = this[kTunnel]!;
  t.peerGone(this, this === t.client ? 'client_closed' : 'backend_closed');
}

function onError(this: TunnelSocket, err: NodeJS.ErrnoException): void {
  const t = this[kTunnel]!;
  const side = this === t.client ? 'client' : 'backend';
  t.peerGone(this, `${side}_error:${err.code ?? 'unknown'}`);
}

function onClose(this: TunnelSocket): void {
  this[kTunnel]!.socketClosed(this);
}

function closeDeadlinePassed(t: Tunnel): void {
  t.abort('close_deadline', 'proxy');
}

function destroyBoth(t: Tunnel): void {
  t.client.destroy();
  t.backend.destroy();
}
