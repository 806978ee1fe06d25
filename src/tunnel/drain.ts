// Draining live tunnels: each is closed with the drain's ending (1001, "going away") at its next frame boundary, the
// closes spread over the first half of the window so reconnecting clients do not arrive in one burst, and whatever
// is still open at the deadline is destroyed (DRAIN_DEADLINE). One timer per drain, not one per tunnel.

import { type Ending, Endings } from '../errors.js';
import type { Tunnel } from './tunnel.js';

/** How often a drain sends its next batch of close frames. */
export const DRAIN_TICK_MS = 25;

export interface DrainOptions {
  /** Milliseconds from now until tunnels still open are destroyed. */
  readonly deadlineMs: number;
  /** Why the tunnels go: Endings.SHUTDOWN or Endings.ROUTE_REMOVED. */
  readonly ending: Ending;
  /** Whether the tunnel is still open (a tunnel leaves its owner's set when it ends). */
  readonly isOpen: (tunnel: Tunnel) => boolean;
  /** Tunnels already told to go away by another drain; shared so no tunnel gets two close frames. */
  readonly told: WeakSet<Tunnel>;
  /**
   * Where tunnels that open after the drain began come from (a handshake that was in flight when accepting
   * stopped): scanned every LATE_SCAN_MS, and what is new is drained too.
   */
  readonly late?: () => Iterable<Tunnel>;
  /**
   * Requests in flight without a tunnel (upgrades waiting for a backend, plain HTTP requests, relayed refusals):
   * the drain does not finish before they are answered (an upgrade gets its 503 or, as a late tunnel, its 1001) or
   * the deadline passes, so a shutdown never cuts them off unanswered.
   */
  readonly inFlight?: () => number;
}

export const LATE_SCAN_MS = 250;

export interface DrainResult {
  /** Tunnels sent a close frame by this drain. */
  readonly closed: number;
  /** Tunnels still open at the deadline, destroyed. */
  readonly destroyed: number;
}

/** Closes `tunnels` gracefully within `deadlineMs`; resolves when all have ended or the deadline passed. */
export function drainTunnels(initial: readonly Tunnel[], options: DrainOptions): Promise<DrainResult> {
  const { isOpen, told, ending, late } = options;
  const tunnels = [...initial];
  const known = late ? new Set(tunnels) : undefined;
  let lastLateScan = performance.now();
  const adoptLate = () => {
    if (!late || !known) return;
    lastLateScan = performance.now();
    for (const t of late()) {
      if (known.has(t) || told.has(t) || !isOpen(t)) continue;
      known.add(t);
      tunnels.push(t);
    }
  };
  const deadline = performance.now() + options.deadlineMs;
  const spreadMs = Math.max(0, options.deadlineMs / 2);
  const ticks = Math.max(1, Math.floor(spreadMs / DRAIN_TICK_MS));
  const perTick = Math.ceil(tunnels.length / ticks);
  let next = 0;
  let closed = 0;

  const sendBatch = () => {
    const end = Math.min(tunnels.length, next + perTick);
    for (; next < end; next++) {
      const t = tunnels[next] as Tunnel;
      if (!isOpen(t) || told.has(t)) continue;
      told.add(t);
      t.closeWith(ending);
      closed++;
    }
  };

  return new Promise((resolve) => {
    const finish = (timer: NodeJS.Timeout) => {
      clearInterval(timer);
      let destroyed = 0;
      for (const t of tunnels) {
        if (!isOpen(t)) continue;
        destroyed++;
        t.abort(Endings.DRAIN_DEADLINE);
      }
      resolve({ closed, destroyed });
    };
    // Tunnels never reopen, so everything before `scan` is known closed: checking "all closed" stays O(n) in total.
    let scan = 0;
    const allClosed = () => {
      while (scan < tunnels.length && !isOpen(tunnels[scan] as Tunnel)) scan++;
      return scan >= tunnels.length;
    };
    sendBatch();
    const timer: NodeJS.Timeout = setInterval(() => {
      if (late && performance.now() - lastLateScan >= LATE_SCAN_MS) adoptLate();
      if (next < tunnels.length) sendBatch();
      if (next >= tunnels.length && allClosed() && (options.inFlight?.() ?? 0) === 0) return finish(timer);
      if (performance.now() >= deadline) finish(timer);
    }, DRAIN_TICK_MS);
  });
}
