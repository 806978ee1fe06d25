// limits.connectionRate: new connections per second, per process and per client address, as token buckets refilled
// lazily from a monotonic clock on use (no timer per address). The per-address buckets live in a map swept of
// full buckets (an address that stayed away long enough to refill is as good as new), so a flood across many
// addresses costs memory only while it lasts, and never more than MAX_TRACKED_ADDRESSES buckets.

import type { ConnectionRateConfig } from '../config/types.js';
import { TokenBucket } from '../tunnel/token-bucket.js';

/** Which bucket ran dry: the `scope` label of wsgate_connection_rate_limited_total. */
export type RateScope = 'process' | 'ip';

export interface RateRefusal {
  readonly scope: RateScope;
  /** Whole seconds until a token is back (at least 1): the Retry-After value. */
  readonly retryAfterSeconds: number;
}

/** The map is swept once it holds this many buckets (and again each time its size doubled since). */
const SWEEP_AT_LEAST = 1024;
/** A map that stopped growing after a flood is still swept this often, so its memory comes back. */
const SWEEP_EVERY_MS = 60_000;
/** Beyond this many addresses with a partly empty bucket, the oldest bucket is forgotten for each new one. */
export const MAX_TRACKED_ADDRESSES = 100_000;

export class ConnectionRate {
  private config: ConnectionRateConfig | undefined;
  private process: TokenBucket | undefined;
  private readonly perIp = new Map<string, TokenBucket>();
  private sweepAt = SWEEP_AT_LEAST;
  private sweptAtMs = 0;
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
    if (ipBucket !== undefined && !ipBucket.take(1, now)) return refusal('ip', ipBucket, now);
    const process = this.process;
    if (process !== undefined && !process.take(1, now)) {
      // The address's token goes back: it was not used.
      if (ipBucket !== undefined) ipBucket.tokens += 1;
      return refusal('process', process, now);
    }
    return undefined;
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

function refusal(scope: RateScope, bucket: TokenBucket, now: number): RateRefusal {
  return { scope, retryAfterSeconds: Math.max(1, Math.ceil(bucket.msUntil(1, now) / 1000)) };
}
