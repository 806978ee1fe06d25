// Draining live tunnels: each is closed with the drain's ending (1001, "going away") at its next frame boundary, the
// closes spread evenly over the first half of the window so reconnecting clients do not arrive in one burst, and
// whatever is still open at the deadline is destroyed (DRAIN_DEADLINE). One timer per drain, not one per tunnel.
// The pace is set by the clock, not by counting ticks: a busy event loop fires fewer ticks, and each tick then sends
// every close that has fallen due, so the last close still goes out by the end of the first half.

import { type Ending, Endings } from '../errors.js';
import type { Tunnel } from './tunnel.js';

/** How often a drain sends the close frames that have fallen due. */
export const DRAIN_TICK_MS = 25;

/** The slowest pace: a handful of tunnels is closed within a fraction of a second, not spread over half the window. */
export const MIN_DRAIN_CLOSES_PER_SECOND = 50;

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
  const started = performance.now();
  const deadline = started + options.deadlineMs;
  // The k-th of the tunnels open when the drain began is due at started + k × gap; later ones are due at once.
  const spreadMs = Math.min(Math.max(0, options.deadlineMs / 2), (initial.length * 1000) / MIN_DRAIN_CLOSES_PER_SECOND);
  const gapMs = initial.length > 0 ? spreadMs / initial.length : 0;
  let nextInitial = 0;
  let nextLate = initial.length;
  let closed = 0;

  const tell = (t: Tunnel) => {
    if (!isOpen(t) || told.has(t)) return;
    told.add(t);
    t.closeWith(ending);
    closed++;
  };
  const sendDue = () => {
    const elapsed = performance.now() - started;
    const due = gapMs > 0 ? Math.min(initial.length, Math.floor(elapsed / gapMs) + 1) : initial.length;
    for (; nextInitial < due; nextInitial++) tell(tunnels[nextInitial] as Tunnel);
    for (; nextLate < tunnels.length; nextLate++) tell(tunnels[nextLate] as Tunnel);
  };
  const allSent = () => nextInitial >= initial.length && nextLate >= tunnels.length;

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
    sendDue();
    const timer: NodeJS.Timeout = setInterval(() => {
      if (late && performance.now() - lastLateScan >= LATE_SCAN_MS) adoptLate();
      sendDue();
      if (allSent() && allClosed() && (options.inFlight?.() ?? 0) === 0) {
        // An upgrade answered since the last scan may have become a tunnel: look once more before calling it done.
        adoptLate();
        sendDue();
        if (allSent() && allClosed()) return finish(timer);
      }
      if (performance.now() >= deadline) finish(timer);
    }, DRAIN_TICK_MS);
  });
}
