// Paced rebalancing: when a pool swaps its ring, the tunnels whose key now belongs to another member are found
// (and only those), then closed with 1012 "reconnect" at no more than a configured rate, evenly spread, so their
// clients reconnect to the new owner without a reconnect storm. The same pacer drains removed members.

import type { Ring } from '../routing/ring.js';
import type { Member, PooledTunnel } from './member.js';

/** A ring together with the members its indexes refer to (member indexes change when membership does). */
export interface RingView<T extends PooledTunnel> {
  readonly ring: Ring;
  readonly members: readonly Member<T>[];
}

/** A tunnel and the member it was on when its key moved (or when that member was removed). */
export interface MovedTunnel<T extends PooledTunnel> {
  readonly tunnel: T;
  readonly member: Member<T>;
}

function ownerOf<T extends PooledTunnel>(view: RingView<T>, keyHash: number): Member<T> | undefined {
  const index = view.ring.owner(keyHash);
  return index < 0 ? undefined : view.members[index];
}

/**
 * Tunnels whose key moved: its owner on `before` differs from its owner on `after`, and the tunnel is not
 * already on the new owner. Ownership is the plain ring owner; a tunnel placed elsewhere by bounded loads or a
 * retry stays put unless its key itself moved. Members out of the new ring are skipped: their tunnels are the
 * pool's to end (1014 for unhealthy, left alone while ejected, drained when removed).
 */
export function movedTunnels<T extends PooledTunnel>(before: RingView<T>, after: RingView<T>): MovedTunnel<T>[] {
  const moved: MovedTunnel<T>[] = [];
  for (const member of after.members) {
    if (!member.inRing) continue;
    for (const tunnel of member.tunnels) {
      const owner = ownerOf(after, tunnel.keyHash);
      if (owner === undefined || owner === member || owner === ownerOf(before, tunnel.keyHash)) continue;
      moved.push({ tunnel, member });
    }
  }
  return moved;
}

/** Below this a timer per close costs more than it spreads; faster rates close a few per tick instead. */
export const MIN_TICK_MS = 10;

/**
 * Works through a queue at most `perSecond` entries per second: ticks of max(1000 / rate, MIN_TICK_MS) ms, each
 * earning rate × tick closes; the fraction carries to the next tick, so the average is the rate and no tick
 * exceeds it by more than one. `closeOne` re-checks an entry just before its turn and returns false when it no
 * longer applies (tunnel gone, key mapped back); such entries use no budget.
 */
export class ClosePacer<E> {
  private perSecond: number;
  private readonly closeOne: (entry: E) => boolean;
  private queue: E[] = [];
  private head = 0;
  private credit = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(perSecond: number, closeOne: (entry: E) => boolean) {
    this.perSecond = perSecond;
    this.closeOne = closeOne;
  }

  get pending(): number {
    return this.queue.length - this.head;
  }

  /** Applies from the next tick. */
  setRate(perSecond: number): void {
    this.perSecond = perSecond;
  }

  enqueue(entries: readonly E[]): void {
    if (entries.length === 0) return;
    for (const e of entries) this.queue.push(e);
    if (this.timer === undefined) this.schedule();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.head = 0;
    this.credit = 0;
  }

  private tickMs(): number {
    return Math.max(1000 / this.perSecond, MIN_TICK_MS);
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.tick(), this.tickMs());
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    const perTick = (this.perSecond * this.tickMs()) / 1000;
    // Unused credit does not pile up into a burst: at most one tick's worth plus the carried fraction.
    this.credit = Math.min(this.credit + perTick, perTick + 1);
    while (this.credit >= 1 && this.head < this.queue.length) {
      const entry = this.queue[this.head++] as E;
      if (this.closeOne(entry)) this.credit--;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
      this.credit = 0;
      return;
    }
    this.schedule();
  }
}
