// A backend pool: its members, their live connection counts, and the immutable ring new connections are picked
// from. Membership changes build a new Ring and swap the reference (slow path); picks only read it (fast path).

import type { BackendConfig, PoolConfig } from '../config/types.js';
import type { Tunnel } from '../tunnel/tunnel.js';
import { hashString } from '../routing/hash.js';
import { Ring } from '../routing/ring.js';

export interface Member {
  readonly backend: BackendConfig;
  /** Index in the pool's members and in the ring. */
  readonly index: number;
  /** Live tunnels on this backend (bounded loads read this). */
  active: number;
  /** The live tunnels themselves: what a dead backend's clients or rebalancing must close. */
  readonly tunnels: Set<Tunnel>;
}

/** Retries walk to the next backend on the ring, at most this many attempts per connection. */
export const MAX_ATTEMPTS = 3;

export class Pool {
  readonly name: string;
  config: PoolConfig;
  members: readonly Member[];
  ring: Ring;
  /** Parallel to members: live counts as the ring's loads array (kept in sync with Member.active). */
  loads: Int32Array;
  totalActive = 0;

  constructor(config: PoolConfig) {
    this.name = config.name;
    this.config = config;
    this.members = config.backends.map((backend, index) => ({ backend, index, active: 0, tunnels: new Set() }));
    this.ring = Ring.build(this.members.map((m) => ({ id: m.backend.id, weight: m.backend.weight })));
    this.loads = new Int32Array(this.members.length);
  }

  /** Picks the member for a key, skipping `exclude` (already tried); undefined when none is eligible. */
  pick(key: string, exclude: readonly number[] = []): Member | undefined {
    const keyHash = hashString(key);
    const index = this.ring.pick(keyHash, this.loads, this.config.balanceFactor, exclude);
    return index < 0 ? undefined : this.members[index];
  }

  acquire(member: Member, tunnel: Tunnel): void {
    member.tunnels.add(tunnel);
    member.active++;
    this.loads[member.index] = member.active;
    this.totalActive++;
  }

  release(member: Member, tunnel: Tunnel): void {
    member.tunnels.delete(tunnel);
    member.active--;
    this.loads[member.index] = member.active;
    this.totalActive--;
  }
}
