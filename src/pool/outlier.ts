// Passive outlier ejection: consecutive failed upstream connects/handshakes take a member out of the ring for
// `ejectFor`, doubling on repeats up to `maxEjectFor`. Pure state transitions; the Pool acts on them.

import type { OutlierConfig } from '../config/types.js';
import type { Member, PooledTunnel } from './member.js';

/** How long ejection number `previous + 1` lasts: ejectFor × 2^previous, capped. */
export function ejectionMs(previous: number, config: OutlierConfig): number {
  return Math.min(config.ejectForMs * 2 ** Math.min(previous, 30), config.maxEjectForMs);
}

/** Records a failed attempt; true when it ejects the member (until `member.ejectedUntil`). */
export function recordFailure<T extends PooledTunnel>(member: Member<T>, config: OutlierConfig, now: number): boolean {
  member.failures++;
  if (member.isEjected(now) || member.failures < config.consecutiveFailures) return false;
  // A member that stayed in for as long as its last ejection lasted has earned a fresh start.
  if (now - member.ejectedUntil >= member.lastEjectionMs) member.ejections = 0;
  member.lastEjectionMs = ejectionMs(member.ejections, config);
  member.ejections++;
  member.ejectedUntil = now + member.lastEjectionMs;
  member.failures = 0;
  return true;
}

/** A completed handshake (any answer, even a refusal) shows the backend is reachable. */
export function recordSuccess<T extends PooledTunnel>(member: Member<T>): void {
  member.failures = 0;
}
