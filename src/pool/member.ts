// One backend inside a pool: its config, its live tunnels and its health state. The owning Pool changes the
// state on the slow path (checks, failures, membership); acquire/release keep the counts on the fast path.

import type { BackendConfig } from '../config/types.js';
import type { Ending } from '../errors.js';
import type { Tunnel } from '../tunnel/tunnel.js';
import type { AdminState } from './admin-state.js';

/** What a pool needs of a tunnel: its key's hash (to tell whether the key moved) and a way to end it. */
export interface PooledTunnel {
  readonly keyHash: number;
  /** Ends the tunnel: its client hears the ending's close code at the next frame boundary. */
  closeWith(ending: Ending): void;
}

/** The state reported in `wsgate_pool_backends{state}`; an unhealthy verdict outranks an ejection. */
export type MemberState = 'healthy' | 'unhealthy' | 'ejected';

export const MEMBER_STATES: readonly MemberState[] = ['healthy', 'unhealthy', 'ejected'];

export class Member<T extends PooledTunnel = Tunnel> {
  /** Replaced (same id) when a reload changes the weight. */
  backend: BackendConfig;
  /** Index in the pool's members, ring and loads; -1 once the member was removed and is draining. */
  index: number;
  /** Live tunnels on this backend (bounded loads read this). */
  active = 0;
  /** The live tunnels themselves: what a dead backend's clients or rebalancing must close. */
  readonly tunnels = new Set<T>();
  /** The tunnels among them that an affinity cookie pinned here: rebalancing leaves them where they are. */
  readonly pinned = new Set<T>();

  /** Verdict of the active checks; stays true when checks are off. */
  healthy = true;
  /** Consecutive check results that disagree with `healthy` (the thresholds count these). */
  checkStreak = 0;
  /** Consecutive failed upstream connects/handshakes (passive checks). */
  failures = 0;
  /** Epoch ms until which the member is ejected; in the past (or 0) when it is not. */
  ejectedUntil = 0;
  /** Ejections since the back-off last reset: the next one lasts ejectFor × 2^ejections. */
  ejections = 0;
  /** Length of the latest ejection, which is also how long the member must stay in to reset the back-off. */
  lastEjectionMs = 0;
  /** Epoch ms since which the member is unhealthy or ejected, 0 while it is fine; panic keeps the newest in. */
  badSince = 0;
  /** Whether the current ring gives it keys; false for members kept out by health, ejection, admin state or removal. */
  inRing = true;
  /** The operator's word (admin API): 'drain' and 'disabled' keep it out of the ring whatever its health. */
  adminState: AdminState = 'active';
  /** A weight set at run time, which outranks the configured one until the process restarts. */
  runtimeWeight: number | undefined = undefined;

  constructor(backend: BackendConfig, index: number) {
    this.backend = backend;
    this.index = index;
  }

  /** The weight the ring uses: the runtime one if set, else the configured one. */
  get weight(): number {
    return this.runtimeWeight ?? this.backend.weight;
  }

  isEjected(now: number): boolean {
    return this.ejectedUntil > now;
  }

  state(now: number): MemberState {
    if (!this.healthy) return 'unhealthy';
    return this.isEjected(now) ? 'ejected' : 'healthy';
  }

  /** Keeps `badSince` in step with the state; call after every health or ejection change. */
  noteState(now: number): void {
    const bad = !this.healthy || this.isEjected(now);
    if (!bad) this.badSince = 0;
    else if (this.badSince === 0) this.badSince = now;
  }
}
