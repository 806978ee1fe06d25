// One timer for all tunnels instead of one per tunnel: advances the coarse clock, closes tunnels past their deadline
// (lifetime.ts) or idle for longer than the route allows (idleness counts data messages, not pings), drives
// keepalive pings, and ends close handshakes the second peer never answers.

import { Endings } from '../errors.js';
import { closeReplyOverdue } from './closing.js';
import { coarseClock } from './coarse-clock.js';
import type { Tunnel } from './tunnel.js';

export const MIN_SWEEP_MS = 50;
export const MAX_SWEEP_MS = 1000;

export class TunnelSweeper {
  private timer: NodeJS.Timeout | undefined;
  private periodMs: number = MAX_SWEEP_MS;
  private readonly tunnels: ReadonlySet<Tunnel>;

  constructor(tunnels: ReadonlySet<Tunnel>) {
    this.tunnels = tunnels;
  }

  /** (Re)starts sweeping every `everyMs`, clamped to [MIN_SWEEP_MS, MAX_SWEEP_MS]. */
  start(everyMs: number): void {
    this.stop();
    const period = Math.min(MAX_SWEEP_MS, Math.max(MIN_SWEEP_MS, Math.floor(everyMs)));
    this.periodMs = period;
    this.timer = setInterval(() => this.sweep(), period);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  sweep(): void {
    const now = performance.now();
    coarseClock.nowMs = now;
    for (const t of this.tunnels) {
      if (t.closing) {
        if (closeReplyOverdue(t, now)) t.abort(Endings.CLOSE_REPLY_TIMEOUT);
        continue;
      }
      if (now >= t.deadlineMs) {
        t.hooks.deadlineReached(t, t.deadlineEnding);
        t.closeWith(t.deadlineEnding);
        continue;
      }
      // Activity is stamped with the coarse clock, up to one period behind: allow for it so no tunnel closes early.
      if (t.idleMs > 0 && now - t.lastActivityMs > t.idleMs + this.periodMs) {
        t.closeWith(Endings.IDLE_TIMEOUT);
        continue;
      }
      if (t.keepalive !== undefined) t.keepalive.sweep(t, now);
    }
  }
}

/** A sweep period fine enough for the shortest idle timeout or keepalive setting in use. */
export function sweepPeriodFor(durationsMs: readonly number[]): number {
  const positive = durationsMs.filter((d) => d > 0);
  return positive.length === 0 ? MAX_SWEEP_MS : Math.min(...positive) / 4;
}
