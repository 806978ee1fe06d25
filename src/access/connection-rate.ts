// limits.connectionRate: new connections per second, per process and per client address, as token buckets refilled
// lazily from a monotonic clock on use (no timer per address). The per-address buckets live in a map swept of
// full buckets (an address that stayed away long enough to refill is as good as new), so a flood across many
// addresses costs memory only while it lasts, and never more than MAX_TRACKED_ADDRESSES buckets. A process-scope
// refusal's Retry-After queues the crowd (see retryAfterForProcess), so a reconnect storm comes back at the rate.

import type { ConnectionRateConfig } from '../config/types.js';
import { TokenBucket } from '../tunnel/token-bucket.js';

/** Which bucket ran dry: the `scope` label of wsgate_connection_rate_limited_total. */
export type RateScope = 'process' | 'ip';

export interface RateRefusal {
  readonly scope: RateScope;
  /**
   * The Retry-After value, whole seconds (at least 1): for the process, until the client's place in the queue of
   * refused clients; for an address, until its bucket's next token.
   */
  readonly retryAfterSeconds: number;
}

/** The map is swept once it holds this many buckets (and again each time its size doubled since). */
const SWEEP_AT_LEAST = 1024;
/** A map that stopped growing after a flood is still swept this often, so its memory comes back. */
const SWEEP_EVERY_MS = 60_000;
/** Beyond this many addresses with a partly empty bucket, the oldest bucket is forgotten for each new one. */
export const MAX_TRACKED_ADDRESSES = 100_000;
/** The longest process-scope Retry-After: a crowd longer than this many seconds of the rate is told it, and re-spread. */
export const MAX_RETRY_AFTER_SECONDS = 60;

export class ConnectionRate {
  private config: ConnectionRateConfig | undefined;
  private process: TokenBucket | undefined;
  private readonly perIp = new Map<string, TokenBucket>();
  private sweepAt = SWEEP_AT_LEAST;
  private sweptAtMs = 0;
  /** Clock reading up to which the process bucket's coming tokens have been promised to refused clients. */
  private promisedUntilMs = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.now = now;
  }

  /**
   * Takes one new-connection token for `ip` from its bucket and from the process's, or says which one is empty
   * (nothing is taken then). The address is checked first, so one flooding address does not eat the tokens of
   * everybody else. A config with other rates (a reload) starts full buckets.
   */
  take(ip: string, config: ConnectionRateConfig): RateRefusal | undefined {
    if (config !== this.config) this.reset(config);
    const now = this.now();
    const ipBucket = Number.isFinite(config.perIpPerSecond) ? this.bucketOf(ip) : undefined;
    if (ipBucket !== undefined && !ipBucket.take(1, now)) return ipRefusal(ipBucket, now);
    const process = this.process;
    if (process !== undefined && !process.take(1, now)) {
      // The address's token goes back: it was not used.
      if (ipBucket !== undefined) ipBucket.tokens += 1;
      return { scope: 'process', retryAfterSeconds: this.retryAfterForProcess(process, now) };
    }
    return undefined;
  }

  /**
   * Telling every client refused in a storm "1 s" brings the whole crowd back together to a second's worth of
   * tokens: all but that many are refused again, every second, so N clients at rate R cost about N²/2R refusals
   * and come back in lumps. Instead each refusal is promised the next token nobody was promised yet (one every 1/R s
   * from the bucket's next one), and Retry-After is the whole seconds until it: the crowd comes back spread at the
   * rate, and each client is refused about once. A promise is advice, not a reservation: whoever comes first gets
   * the token, and promises nobody comes for expire as the clock passes them. Clients that ignore it and hammer take
   * a place with each refusal; the per-address bucket, checked first, keeps one address from lengthening the queue.
   */
  private retryAfterForProcess(bucket: TokenBucket, now: number): number {
    const slot = Math.max(now + bucket.msUntil(1, now), this.promisedUntilMs);
    const waitMs = Math.min(slot - now, MAX_RETRY_AFTER_SECONDS * 1000);
    this.promisedUntilMs = now + waitMs + 1000 / bucket.ratePerSecond;
    return Math.max(1, Math.ceil(waitMs / 1000));
  }

  /** Addresses with a bucket now (for tests and the bounded-memory claim). */
  get trackedAddresses(): number {
    return this.perIp.size;
  }

  private reset(config: ConnectionRateConfig): void {
    const previous = this.config;
    this.config = config;
    if (previous?.perSecond !== config.perSecond) {
      this.process = Number.isFinite(config.perSecond)
        ? new TokenBucket(config.perSecond, config.perSecond)
        : undefined;
      this.promisedUntilMs = Number.NEGATIVE_INFINITY;
    }
    if (previous?.perIpPerSecond !== config.perIpPerSecond || previous?.perIpBurst !== config.perIpBurst) {
      this.perIp.clear();
      this.sweepAt = SWEEP_AT_LEAST;
    }
  }

  private bucketOf(ip: string): TokenBucket {
    let bucket = this.perIp.get(ip);
    if (bucket !== undefined) return bucket;
    if (
      this.perIp.size >= this.sweepAt ||
      (this.perIp.size >= SWEEP_AT_LEAST && this.now() - this.sweptAtMs >= SWEEP_EVERY_MS)
    ) {
      this.sweep();
    }
    if (this.perIp.size >= MAX_TRACKED_ADDRESSES) {
      // Map order is insertion order: the first key is the bucket made longest ago.
      const oldest = this.perIp.keys().next().value as string;
      this.perIp.delete(oldest);
    }
    const config = this.config as ConnectionRateConfig;
    bucket = new TokenBucket(config.perIpPerSecond, config.perIpBurst);
    this.perIp.set(ip, bucket);
    return bucket;
  }

  /** Forgets every bucket that has refilled: taking from a new one would give the same answer. */
  private sweep(): void {
    const now = this.now();
    this.sweptAtMs = now;
    for (const [ip, bucket] of this.perIp) if (bucket.available(now) >= bucket.burst) this.perIp.delete(ip);
    this.sweepAt = Math.max(SWEEP_AT_LEAST, this.perIp.size * 2);
  }
}

/** A per-address refusal: one client's own pace, so the wait for its bucket's next token is the whole answer. */
function ipRefusal(bucket: TokenBucket, now: number): RateRefusal {
  return { scope: 'ip', retryAfterSeconds: Math.max(1, Math.ceil(bucket.msUntil(1, now) / 1000)) };
}
