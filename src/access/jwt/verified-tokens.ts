// Tokens a route verified recently. A client that reconnects (after a drain, a backend restart, a network change)
// presents the same token again, and verifying it again costs a few hundred µs of CPU per handshake (BENCHMARKS.md,
// "Edge controls"). Keyed by the whole token string: the same bytes verify the same way under the same keys.
// An entry lives until the token's `exp` (plus the clock skew) or REMEMBER_MS, whichever comes first, so a key taken
// out of a JWKS URL stops being honoured within REMEMBER_MS; `nbf` needs no second look (it was passed, and time
// only moves on). Each config generation builds its own RouteAuth, so a reload starts empty.

import type { JWTPayload } from 'jose';

/** Entries at most; the oldest goes first. */
export const MAX_REMEMBERED_TOKENS = 10_000;
/** Longer tokens are verified every time: together with the count, this bounds the memory (≈ 20 MB at most). */
export const MAX_REMEMBERED_TOKEN_CHARS = 2048;
/** How long a verification is trusted at most. */
export const REMEMBER_MS = 60_000;

interface Remembered {
  readonly claims: JWTPayload;
  readonly untilMs: number;
}

export class VerifiedTokens {
  private readonly entries = new Map<string, Remembered>();

  /** The claims of `token` if it was verified and is still good at `nowMs` (epoch ms). */
  get(token: string, nowMs: number): JWTPayload | undefined {
    const entry = this.entries.get(token);
    if (entry === undefined) return undefined;
    if (nowMs < entry.untilMs) return entry.claims;
    this.entries.delete(token);
    return undefined;
  }

  remember(token: string, claims: JWTPayload, nowMs: number, clockSkewMs: number): void {
    if (token.length > MAX_REMEMBERED_TOKEN_CHARS) return;
    const exp = claims.exp;
    const untilMs = Math.min(nowMs + REMEMBER_MS, typeof exp === 'number' ? exp * 1000 + clockSkewMs : Infinity);
    if (this.entries.size >= MAX_REMEMBERED_TOKENS) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    this.entries.set(token, { claims: Object.freeze(claims), untilMs });
  }

  get size(): number {
    return this.entries.size;
  }
}
