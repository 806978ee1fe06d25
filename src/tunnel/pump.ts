// One direction of a tunnel: reads `source`, scans the frame headers of each chunk (FrameScanner: header bytes only,
// payload skipped by count) and writes the very bytes it read to `dest`, pausing the reader while the writer is
// full or a rate limit holds it back. The chunk is never copied, sliced for its own sake or unmasked.
//
// The pump is the scanner's observer and hands each frame to the part whose job it is: limits.ts (sizes, rates),
// keepalive.ts (our pongs, cut out of the stream) and closing.ts (close frames at frame boundaries). It acts on the
// stop code they return: forward up to the stop, then go on, hold the rest, drop, or close. The scanner, the
// Limiter and the token buckets are made on first use, so a connection that stays silent costs none of them.

import type { Socket } from 'node:net';
import type { Ending } from '../errors.js';
import { B2C, C2B, TYPE_BINARY, TYPE_CONTROL, TYPE_TEXT } from '../observe/hot-counts.js';
import { detach, directWriteFd, writeChunk } from '../platform/socket-io.js';
import { CLOSE_CODES, OPCODE_CLOSE, OPCODE_PONG, parseClosePayload } from './close-frame.js';
import { closeForFault, closeFramePassed, pushUntilBoundary } from './closing.js';
import { coarseClock } from './coarse-clock.js';
import { type FrameObserver, FrameScanner, OBSERVER_STOP_MIN, VIOLATION_ENDINGS } from './frame-scanner.js';
import type { PongWatch } from './keepalive.js';
import { Limiter } from './limits.js';
import { STOP_ABSORB, STOP_ABSORBED, STOP_CLOSE, STOP_THROTTLE } from './stop-codes.js';
import type { Tunnel, TunnelOptions } from './tunnel.js';

// How a pump scans (Pump.scanMode): not at all, or strict/lenient, with RSV1 allowed when deflate was negotiated.
const SCAN_OFF = 0;
const SCAN_STRICT = 1;
const SCAN_LENIENT = 2;
const SCAN_RSV1 = 4;

export class Pump implements FrameObserver {
  readonly tunnel: Tunnel;
  readonly source: Socket;
  readonly dest: Socket;
  /** `dest`'s descriptor for direct writes, -1 for socket.write (see socket-io.ts). */
  readonly destFd: number;
  readonly fromClient: boolean;
  readonly direction: number;
  readonly scanMode: number;
  /** The pongs `source` owes our keepalive pings; undefined when it is not pinged. */
  readonly pongs: PongWatch | undefined;
  scanner: FrameScanner | undefined = undefined;
  limiter: Limiter | undefined = undefined;
  bytes = 0;
  messages = 0;
  /** Reading from `source` has stopped for good (it broke the protocol or a limit, or it is gone). */
  halted = false;
  /** The source vanished (FIN, error or close). */
  sourceGone = false;
  /** Dropping what `source` sends (one of our pongs is being cut out): nothing is forwarded meanwhile. */
  dropping = false;
  /** Throttled: the timer that resumes `source`, and the unforwarded rest of the chunk that hit the limit. */
  throttleTimer: NodeJS.Timeout | undefined = undefined;
  held: Buffer | undefined = undefined;
  /** A close frame was written to `dest` (ours or forwarded): nothing may follow it. */
  closedToDest = false;
  /** A close frame waiting for the frame in flight toward `dest` to end. */
  pendingClose: Buffer | undefined = undefined;
  /** Code of the first close frame `source` sent, 0 if none. */
  closeCodeSeen = 0;
  /** Stream position (FrameScanner.frameStart) of the frame a throttle or a pong cut stopped, presented again. */
  rescanAt = -1;
  /** Coarse time of the last read from `source`: bytes after a keepalive ping prove the peer is there. */
  lastReadMs = 0;

  constructor(
    tunnel: Tunnel,
    source: Socket,
    dest: Socket,
    fromClient: boolean,
    options: TunnelOptions,
    pongs: PongWatch | undefined,
  ) {
    this.tunnel = tunnel;
    this.source = source;
    this.dest = dest;
    this.destFd = directWriteFd(dest);
    this.fromClient = fromClient;
    this.direction = fromClient ? C2B : B2C;
    const protocol = options.protocol;
    this.scanMode =
      protocol === 'off'
        ? SCAN_OFF
        : (protocol === 'strict' ? SCAN_STRICT : SCAN_LENIENT) | (options.rsv1Allowed ? SCAN_RSV1 : 0);
    this.pongs = pongs;
  }

  get scanning(): boolean {
    return this.scanMode !== SCAN_OFF;
  }

  /** Whether the proxy itself holds `source` back: throttled, or waiting for `dest` to drain. */
  readingHeld(): boolean {
    return this.throttleTimer !== undefined || this.held !== undefined || this.dest.writableNeedDrain;
  }

  /** Whether a frame may be written to `dest` now: never without scanning, always before the first byte. */
  atFrameBoundary(): boolean {
    return this.scanMode !== SCAN_OFF && (this.scanner === undefined || this.scanner.atFrameBoundary);
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
    // A new read: the limiter's clock is read again, once, if a frame of it needs a bucket.
    if (this.limiter !== undefined) this.limiter.chunkTime = 0;
    if (this.held !== undefined) {
      // Paused for a throttle but a chunk was already on its way: keep it behind the held one (bounded: the
      // socket is paused, so at most what it had buffered). The concatenation is a copy, so it may be kept.
      this.held = Buffer.concat([this.held, chunk]);
      return;
    }
    if (this.pendingClose !== undefined) {
      pushUntilBoundary(this, chunk, scanner);
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
          (this.pongs as PongWatch).passNext = true;
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
        this.throttleTimer = setTimeout(endThrottle, (this.limiter as Limiter).throttleMs, this);
        return;
      }
      // A violation or a limit: forward up to the offending frame, then close.
      const atBoundary = stop >= offset;
      if (atBoundary && !this.dropping) this.forward(chunk, offset, stop);
      this.halted = true;
      // The source keeps being read, and what it sends is dropped: that is how its FIN or reset is noticed.
      const ending = rc < OBSERVER_STOP_MIN ? VIOLATION_ENDINGS[rc] : this.limiter?.hit;
      closeForFault(this.tunnel, this, ending as Ending, atBoundary);
      return;
    }
    if (this.closeCodeSeen !== 0 && !this.closedToDest) {
      // The chunk that carried the peer's close frame has gone through: nothing more may follow it.
      this.closedToDest = true;
      closeFramePassed(this.tunnel, this);
    }
  }

  /** Forwards `chunk[start..end)` to `dest`, pausing `source` when `dest` is full. */
  forward(chunk: Buffer, start: number, end: number): void {
    const n = end - start;
    if (n <= 0 || this.dest.destroyed) return;
    this.bytes += n;
    this.tunnel.stats.bytes[this.direction]! += n;
    const buf = start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end);
    if (!writeChunk(this.dest, this.destFd, buf)) this.source.pause();
  }

  /** Writes a frame of the proxy's own to `dest`. */
  write(frame: Buffer): void {
    if (!this.dest.destroyed) writeChunk(this.dest, this.destFd, frame);
  }

  /** Our pong has been dropped: forward again, and put back a foreign pong that was cut out in its place. */
  endAbsorb(): void {
    this.dropping = false;
    const pongs = this.pongs as PongWatch;
    if (pongs.reinject !== undefined) {
      this.write(pongs.reinject);
      pongs.reinject = undefined;
    }
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

  private newLimiter(): Limiter {
    const limits = this.tunnel.limits;
    const limiter = new Limiter(
      this.fromClient ? limits.clientToBackend : limits.backendToClient,
      limits.onExceed === 'throttle',
    );
    this.limiter = limiter;
    return limiter;
  }

  /** A limit stopped the scan: report it; a throttled frame is presented again and must not be counted twice. */
  private limited(s: FrameScanner, rc: number): number {
    const throttled = rc === STOP_THROTTLE;
    this.tunnel.hooks.limitExceeded(
      this.tunnel,
      (this.limiter as Limiter).hit as Ending,
      throttled ? 'throttle' : 'close',
    );
    if (throttled) this.rescanAt = s.frameStart;
    return rc;
  }

  // FrameObserver: called synchronously by the scanner.

  onFrameHeader(s: FrameScanner): number {
    // The frame in flight while our close waits is the connection's last: rate limits and pong cuts no longer apply.
    const closing = this.pendingClose !== undefined;
    if (s.opcode < 8) {
      const rc = (this.limiter ?? this.newLimiter()).checkData(s, closing);
      return rc === 0 ? 0 : this.limited(s, rc);
    }
    const pongs = this.pongs;
    if (s.opcode === OPCODE_PONG && pongs !== undefined && !closing && pongs.mayBeOurs(s)) {
      // Likely the answer to our keepalive ping (onControlFrame checks the payload): not the peer's own traffic,
      // so it costs no control-frame token.
      if (pongs.passNext) pongs.passNext = false;
      else if (!this.dropping) {
        this.rescanAt = s.frameStart;
        return STOP_ABSORB;
      }
      return 0;
    }
    // A close frame ends the connection whatever the rate: it never pays (a flood of them is impossible).
    if (s.opcode === OPCODE_CLOSE || closing) return 0;
    const rc = (this.limiter ?? this.newLimiter()).chargeControl(s);
    return rc === 0 ? 0 : this.limited(s, rc);
  }

  onControlFrame(s: FrameScanner): number {
    const opcode = s.opcode;
    const pongs = this.pongs;
    if (opcode === OPCODE_PONG && this.dropping) {
      // Cut out of the stream: ours is the proxy's own business, a foreign one goes back in its place.
      if ((pongs as PongWatch).cutOut(s.controlPayload, this.fromClient)) this.tunnel.keepalive?.answered();
      else this.countControl();
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
    if (opcode === OPCODE_PONG && pongs?.answeredBy(s.controlPayload)) this.tunnel.keepalive?.answered();
    return 0;
  }

  private countControl(): void {
    this.tunnel.stats.messages[this.direction * 3 + TYPE_CONTROL]!++;
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
      this.tunnel.hooks.violation(this.tunnel, this.fromClient, VIOLATION_ENDINGS[code] as Ending);
    }
    return 0;
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
