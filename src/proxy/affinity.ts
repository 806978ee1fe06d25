// A request's affinity cookie (pools.NAME.sticky), read before the pick: a cookie naming a backend that is in the
// ring decides the pick, whatever the hash key, bounded loads or a ring change would say; otherwise the hash picks
// and the answer sets the cookie for the backend it picked. Shared by the upgrade and plain HTTP paths.

import type { StickyResult } from '../observe/hot-counts.js';
import type { Member, Pool } from '../pool/pool.js';
import { cookieValues } from '../routing/sticky.js';
import type { ProxyContext } from './context.js';

export interface Affinity {
  /** The backend the client's cookie names, when it is in the ring. */
  readonly pinned: Member | undefined;
  readonly result: StickyResult;
}

/** The request's affinity, counted in wsgate_sticky_total; undefined when the pool sets no cookie. */
export function affinityOf(ctx: ProxyContext, pool: Pool, rawHeaders: readonly string[]): Affinity | undefined {
  const sticky = pool.sticky;
  if (sticky === undefined) return undefined;
  const pinned = pool.pinnedBy(cookieValues(rawHeaders, sticky.spec.cookie));
  const affinity: Affinity =
    typeof pinned === 'string' ? { pinned: undefined, result: pinned } : { pinned, result: 'hit' };
  ctx.metrics.stickyFor(pool.name).count(affinity.result);
  return affinity;
}

/** The Set-Cookie value for an answer from `member`, unless the client's cookie already names it. */
export function setCookieFor(
  pool: Pool,
  affinity: Affinity | undefined,
  member: Member,
  secure: boolean,
): string | undefined {
  const sticky = pool.sticky;
  if (affinity === undefined || sticky === undefined || affinity.pinned === member) return undefined;
  return sticky.setCookie(sticky.valueOf(member.backend.id), secure);
}
