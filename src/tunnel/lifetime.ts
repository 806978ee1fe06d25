// A tunnel's deadline: the moment the proxy ends it on its own account, however busy it is. Two settings give
// one: timeouts.maxLifetime (1001, so long-lived clients reconnect and spread over today's backends) and the
// token's `exp` on a route with auth.jwt.closeOnExpiry (1008 "token expired"); the earlier wins. A deadline is
// two fields of the tunnel, checked by the one sweeper of all tunnels (sweeper.ts): no timer per tunnel.

import { type Ending, Endings } from '../errors.js';

export interface Deadline {
  /** performance.now() time at which the tunnel ends; Infinity: never. */
  readonly atMs: number;
  readonly ending: Ending;
}

export const NO_DEADLINE: Deadline = Object.freeze({ atMs: Number.POSITIVE_INFINITY, ending: Endings.MAX_LIFETIME });

/**
 * The deadline of a tunnel opened at `nowMs` (performance.now()): maxLifetimeMs less a random part of it up to
 * `jitter` (0..1), so a fleet's tunnels opened together do not all end together; or `tokenExpiresInMs` from now if
 * that comes first (undefined: no token deadline).
 */
export function deadlineFor(
  nowMs: number,
  maxLifetimeMs: number,
  jitter: number,
  tokenExpiresInMs: number | undefined,
  random: () => number = Math.random,
): Deadline {
  const lifetimeAt = maxLifetimeMs > 0 ? nowMs + maxLifetimeMs * (1 - jitter * random()) : Number.POSITIVE_INFINITY;
  if (tokenExpiresInMs !== undefined && nowMs + tokenExpiresInMs < lifetimeAt) {
    return { atMs: nowMs + tokenExpiresInMs, ending: Endings.TOKEN_EXPIRED };
  }
  return lifetimeAt === Number.POSITIVE_INFINITY ? NO_DEADLINE : { atMs: lifetimeAt, ending: Endings.MAX_LIFETIME };
}
