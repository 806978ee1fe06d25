// Per-connection rate limit as a token bucket refilled lazily from a caller-supplied monotonic clock
// (performance.now()): no timers, plain number fields, O(1) per call.

/**
 * Float slack: a balance short by less than one microsecond of refill counts as enough. It covers
 * the rounding in clock subtraction (below 1e-3 ms for readings under 2^43 ms), so that
 * take(n, now + msUntil(n, now)) always succeeds and exact waits are not rounded up by a whole ms.
 */
const CLOCK_SLACK_MS = 1e-3;

/**
 * `new TokenBucket(ratePerSecond, burst)`: starts full with `burst` tokens and gains
 * `ratePerSecond` tokens per second up to `burst`.
 *
 * Unlimited: a rate of 0 or Infinity (the config's "0 = no limit") makes every call succeed at once;
 * `burst` is then ignored. A negative or NaN rate, or a burst that is not a positive finite number
 * for a limited bucket, is a RangeError.
 *
 * Requests larger than the burst: they can never fit, so instead of blocking forever they are
 * allowed once the bucket is full and leave it in debt (negative tokens); later requests wait until
 * the debt is repaid. So a 1 MiB message on a 64 KiB/s, 16 KiB-burst limit passes and then holds
 * the connection for about 16 s.
 */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly unlimited: boolean;
  /** Current balance; negative while in debt. Only meaningful right after a call with `nowMs`. */
  tokens: number;
  /** Clock reading of the last refill; -Infinity until first use (the bucket starts full). */
  lastMs = Number.NEGATIVE_INFINITY;
  private readonly tokensPerMs: number;
  private readonly slackTokens: number;

  constructor(ratePerSecond: number, burst: number) {
    if (Number.isNaN(ratePerSecond) || ratePerSecond < 0) {
      throw new RangeError(`ratePerSecond must be ≥ 0 (0 or Infinity = unlimited), got ${ratePerSecond}`);
    }
    this.unlimited = ratePerSecond === 0 || ratePerSecond === Number.POSITIVE_INFINITY;
    if (!this.unlimited && !(Number.isFinite(burst) && burst > 0)) {
      throw new RangeError(`burst must be a positive finite number, got ${burst}`);
    }
    this.ratePerSecond = ratePerSecond;
    this.burst = this.unlimited ? Number.POSITIVE_INFINITY : burst;
    this.tokens = this.burst;
    this.tokensPerMs = this.unlimited ? 0 : ratePerSecond / 1000;
    this.slackTokens = this.tokensPerMs * CLOCK_SLACK_MS + 1e-9;
  }

  /** Takes `n` tokens if available now (see the class doc for n > burst); false leaves the bucket unchanged. */
  take(n: number, nowMs: number): boolean {
    if (this.unlimited) return true;
    this.refill(nowMs);
    const need = Math.min(n, this.burst);
    if (this.tokens + this.slackTokens < need) return false;
    this.tokens -= n;
    return true;
  }

  /**
   * Takes `n` tokens unconditionally (bytes already read must still be forwarded) and returns the
   * milliseconds until the balance is back to zero: 0 when there was enough, else how long to pause.
   */
  spend(n: number, nowMs: number): number {
    if (this.unlimited) return 0;
    this.refill(nowMs);
    this.tokens -= n;
    return this.tokens + this.slackTokens >= 0 ? 0 : Math.ceil(-this.tokens / this.tokensPerMs - CLOCK_SLACK_MS);
  }

  /** Milliseconds (whole, rounded up) until take(n) would succeed; 0 if it would succeed now. */
  msUntil(n: number, nowMs: number): number {
    if (this.unlimited) return 0;
    this.refill(nowMs);
    const need = Math.min(n, this.burst);
    const missing = need - this.tokens;
    if (missing <= this.slackTokens) return 0;
    return Math.ceil(missing / this.tokensPerMs - CLOCK_SLACK_MS);
  }

  /** Tokens available at `nowMs` (may be negative while in debt). */
  available(nowMs: number): number {
    if (this.unlimited) return Number.POSITIVE_INFINITY;
    this.refill(nowMs);
    return this.tokens;
  }

  private refill(nowMs: number): void {
    // A clock that does not move forward (or a NaN reading) adds nothing and never moves lastMs back.
    if (!(nowMs > this.lastMs)) return;
    const tokens = this.tokens + (nowMs - this.lastMs) * this.tokensPerMs;
    this.tokens = Math.min(tokens, this.burst);
    this.lastMs = nowMs;
  }
}
