// The per-connection limits of one direction, checked as frame headers are scanned: message size and frames per
// message on every data frame, and rates as token buckets refilled lazily from the clock (no timer per connection).
// A pump makes its Limiter on the first frame that needs one, and each bucket on first use, so a silent
// connection costs none of them. The Limiter decides; the pump acts on its stop code and reports the hit.

import type { DirectionLimits } from '../config/types.js';
import { type Ending, Endings } from '../errors.js';
import type { FrameScanner } from './frame-scanner.js';
import { STOP_LIMIT, STOP_THROTTLE } from './stop-codes.js';
import { TokenBucket } from './token-bucket.js';

export class Limiter {
  readonly limits: DirectionLimits;
  /** limits.onExceed is `throttle`: a rate over its limit holds the source back instead of closing it. */
  readonly throttle: boolean;
  messageBucket: TokenBucket | undefined = undefined;
  byteBucket: TokenBucket | undefined = undefined;
  controlBucket: TokenBucket | undefined = undefined;
  /**
   * Stream positions (FrameScanner.frameStart) of the frames already charged a message or control-frame token: a
   * frame stopped for a throttle (or a pong cut) is presented again, and must not pay twice.
   */
  messageChargedAt = -1;
  controlChargedAt = -1;
  /** The limit behind the last STOP_LIMIT or STOP_THROTTLE. */
  hit: Ending | undefined = undefined;
  /** After STOP_THROTTLE: how long the source waits before the frame is presented again. */
  throttleMs = 0;
  /**
   * When the chunk being scanned arrived: read on its first frame that needs a bucket (0: not yet), reset by the
   * pump for each read, since every frame of one read arrived at once.
   */
  chunkTime = 0;

  constructor(limits: DirectionLimits, throttle: boolean) {
    this.limits = limits;
    this.throttle = throttle;
  }

  /**
   * A data frame's header. The size limits always apply (they close, whatever onExceed says); the rates not
   * while `closing`: the frame in flight before our close frame is the connection's last.
   */
  checkData(s: FrameScanner, closing: boolean): number {
    const limits = this.limits;
    if (s.messageBytes > limits.maxMessageBytes) {
      this.hit = Endings.MAX_MESSAGE_BYTES;
      return STOP_LIMIT;
    }
    if (s.messageFrames > limits.maxFramesPerMessage) {
      this.hit = Endings.MAX_FRAMES_PER_MESSAGE;
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
      const rc = this.take(this.messageBucket, 1, Endings.MESSAGES_PER_SECOND, now);
      if (rc !== 0) return rc;
      // Paid: a throttle on the bytes below presents this frame again, and it must not pay twice.
      this.messageChargedAt = s.frameStart;
    }
    if (!countBytes) return 0;
    this.byteBucket ??= new TokenBucket(limits.bytesPerSecond, Math.max(1, limits.bytesPerSecond));
    return this.take(this.byteBucket, s.payloadLength, Endings.BYTES_PER_SECOND, now);
  }

  /** A ping or pong of the peer's own (close frames never pay, our keepalive pongs neither): one control token. */
  chargeControl(s: FrameScanner): number {
    const rate = this.limits.controlFramesPerSecond;
    if (rate === Number.POSITIVE_INFINITY || this.controlChargedAt === s.frameStart) return 0;
    this.controlBucket ??= new TokenBucket(rate, Math.max(1, rate));
    const rc = this.take(this.controlBucket, 1, Endings.CONTROL_FRAMES_PER_SECOND, this.now());
    if (rc === 0) this.controlChargedAt = s.frameStart;
    return rc;
  }

  /** The arrival time of the chunk in hand: every frame in one read arrived at once. */
  private now(): number {
    if (this.chunkTime === 0) this.chunkTime = performance.now();
    return this.chunkTime;
  }

  /**
   * Takes from a bucket. On shortage notes the hit and returns STOP_LIMIT (close), or STOP_THROTTLE with
   * `throttleMs` set, so the frame is presented again once the bucket has refilled.
   */
  private take(b: TokenBucket, n: number, limit: Ending, now: number): number {
    if (b.take(n, now)) return 0;
    this.hit = limit;
    if (!this.throttle) return STOP_LIMIT;
    this.throttleMs = Math.max(1, b.msUntil(n, now));
    return STOP_THROTTLE;
  }
}
