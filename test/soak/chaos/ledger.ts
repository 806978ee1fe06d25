// The chaos soak's ledger: every event the scheduler fired (with the span its effects may last and what it
// touched), and every connection's ending, judged against the events in that connection's lifetime. A close code
// is accepted only with a cause: 1000 when the client closed, 1001 when its route was removed, 1008/1009 when it
// broke a limit on purpose, 1012 when its pool's ring changed, 1014 when its backend died, a TCP close without a
// close frame only when the worker process holding its socket was killed. Anything else is a problem, recorded
// with the connection's story so a failing seed can be read and replayed.

export type EventKind =
  | 'reload_backends'
  | 'reload_routes'
  | 'reload_invalid'
  | 'sighup_storm'
  | 'backend_kill'
  | 'backend_stall'
  | 'worker_kill'
  | 'dns_change'
  | 'hostile_burst'
  | 'client_vanish';

export const EVENT_KINDS: readonly EventKind[] = [
  'reload_backends',
  'reload_routes',
  'reload_invalid',
  'sighup_storm',
  'backend_kill',
  'backend_stall',
  'worker_kill',
  'dns_change',
  'hostile_burst',
  'client_vanish',
];

/** An event's footprint: from `at` until `until` (ms, performance.now()) it may explain endings. */
export interface Disturbance {
  readonly kind: EventKind;
  readonly at: number;
  until: number;
  /** Pool whose ring it changed or whose backend it killed. */
  readonly pool?: string;
  readonly backend?: string;
  /** Route it removed. */
  readonly route?: string;
  /** worker_kill: the client-side ports of every connection the killed worker held. */
  readonly clientPorts?: ReadonlySet<number>;
}

/** What a client is: an ordinary cycle, a long-lived connection, or one that breaks a limit on purpose. */
export type ClientKind = 'cycle' | 'long' | 'flood' | 'too_big';

export interface Connection {
  readonly kind: ClientKind;
  readonly route: string;
  readonly pool: string;
  readonly started: number;
  upgradedAt?: number;
  /** The backend that greeted it ({"backend":id}), once known. */
  backend?: string;
  localPort?: number;
  /** The client sent its own close frame first. */
  closedByClient: boolean;
}

export type Ending =
  | { readonly type: 'status'; readonly status: number }
  | { readonly type: 'close'; readonly code: number }
  /** After the 101: the connection ended without a close frame. */
  | { readonly type: 'tcp' }
  /** Before the 101: a socket error or close without an answer. */
  | { readonly type: 'error'; readonly message: string }
  | { readonly type: 'timeout'; readonly stage: string }
  /** An echo or pong that differed from what was sent, or came out of order. */
  | { readonly type: 'corrupt'; readonly detail: string };

/** Cause names, the keys of the "closes by code and cause" table in the report. */
export type Outcome = { readonly ok: true; readonly cause: string } | { readonly ok: false; readonly problem: string };

/** No event's footprint is longer (the scheduler caps `until`). */
export const MAX_SPAN_MS = 60_000;

const RING_CHANGES: readonly EventKind[] = ['backend_kill', 'reload_backends', 'dns_change'];

export class Ledger {
  readonly events: Disturbance[] = [];
  /** "code cause" → count; "status cause" for refusals. */
  readonly endings = new Map<string, number>();
  readonly problems: string[] = [];
  problemCount = 0;
  /** Client-observed totals for the /metrics comparison. */
  readonly closesByCode = new Map<number, number>();
  readonly statuses = new Map<number, number>();
  /**
   * Closes that crossed: the client had sent its 1000 when the gateway's own close (1012, 1014, ...) reached it.
   * The client reports the gateway's code; the gateway counts the tunnel under the client's 1000, which came first.
   */
  readonly crossed = new Map<number, number>();
  upgrades = 0;
  /** Times at which some client saw a close, status or 101 (for the slack around a worker's last scrape). */
  readonly endTimes: number[] = [];
  readonly upgradeTimes: number[] = [];

  /** Events fired, by kind (one event may leave several footprints). */
  readonly fired = new Map<EventKind, number>();
  /** Spans in which a route was absent from the config (`to` Infinity while it still is). */
  private readonly absent = new Map<string, { from: number; to: number }[]>();

  fire(kind: EventKind): void {
    this.fired.set(kind, (this.fired.get(kind) ?? 0) + 1);
  }

  record(event: Disturbance): Disturbance {
    this.events.push(event);
    return event;
  }

  routeRemoved(route: string, at: number): void {
    const spans = this.absent.get(route) ?? [];
    spans.push({ from: at, to: Number.POSITIVE_INFINITY });
    this.absent.set(route, spans);
  }

  /** The route is back from `at` on (a refusal may still race the reload by a moment: `graceMs`). */
  routeAdded(route: string, at: number, graceMs: number): void {
    const open = this.absent.get(route)?.at(-1);
    if (open && open.to === Number.POSITIVE_INFINITY) open.to = at + graceMs;
  }

  private wasAbsent(route: string, from: number, to: number): boolean {
    return (this.absent.get(route) ?? []).some((s) => s.from <= to && s.to >= from);
  }

  /** Events are recorded in time order and none lasts longer than MAX_SPAN_MS: search back from the newest. */
  private overlapping(c: Connection, end: number, match: (e: Disturbance) => boolean): Disturbance | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) {
      const e = this.events[i] as Disturbance;
      if (e.at + MAX_SPAN_MS < c.started) return undefined;
      if (e.at <= end && e.until >= c.started && match(e)) return e;
    }
    return undefined;
  }

  judge(c: Connection, ending: Ending, end: number): Outcome {
    const outcome = this.explain(c, ending, end);
    const label =
      ending.type === 'close'
        ? `close ${ending.code}`
        : ending.type === 'status'
          ? `status ${ending.status}`
          : ending.type === 'tcp'
            ? 'tcp close'
            : ending.type;
    if (outcome.ok) {
      const key = `${label} (${outcome.cause})`;
      this.endings.set(key, (this.endings.get(key) ?? 0) + 1);
    } else {
      this.problemCount++;
      if (this.problems.length < 50) {
        this.problems.push(
          `${outcome.problem}: ${c.kind} ${c.route} backend=${c.backend ?? '?'} port=${c.localPort ?? '?'} ` +
            `life ${c.started.toFixed(0)}–${end.toFixed(0)} ms, ${JSON.stringify(ending)}`,
        );
      }
    }
    if (ending.type === 'close') {
      this.closesByCode.set(ending.code, (this.closesByCode.get(ending.code) ?? 0) + 1);
      if (c.closedByClient && ending.code !== 1000)
        this.crossed.set(ending.code, (this.crossed.get(ending.code) ?? 0) + 1);
    }
    if (ending.type === 'status') this.statuses.set(ending.status, (this.statuses.get(ending.status) ?? 0) + 1);
    if (ending.type === 'close' || ending.type === 'status') this.endTimes.push(end);
    return outcome;
  }

  upgraded(c: Connection, at: number): void {
    c.upgradedAt = at;
    this.upgrades++;
    this.upgradeTimes.push(at);
  }

  private explain(c: Connection, ending: Ending, end: number): Outcome {
    const workerDeath = () =>
      c.localPort !== undefined &&
      this.overlapping(c, end, (e) => e.kind === 'worker_kill' && (e.clientPorts?.has(c.localPort as number) ?? false));
    const routeGone = () => this.overlapping(c, end, (e) => e.kind === 'reload_routes' && e.route === c.route);
    const ringChange = () => this.overlapping(c, end, (e) => RING_CHANGES.includes(e.kind) && e.pool === c.pool);
    const backendDied = () =>
      this.overlapping(
        c,
        end,
        (e) => e.kind === 'backend_kill' && (c.backend === undefined ? e.pool === c.pool : e.backend === c.backend),
      );
    switch (ending.type) {
      case 'close': {
        const code = ending.code;
        if (code === 1000 && c.closedByClient) return { ok: true, cause: 'own' };
        if (code === 1001 && routeGone()) return { ok: true, cause: 'route removed' };
        if (code === 1008 && c.kind === 'flood') return { ok: true, cause: 'rate limit broken' };
        if (code === 1009 && c.kind === 'too_big') return { ok: true, cause: 'size limit broken' };
        if (code === 1012 && ringChange()) return { ok: true, cause: 'rebalance or backend removed' };
        if (code === 1014 && backendDied()) return { ok: true, cause: 'backend died' };
        if (code === 1006 && workerDeath()) return { ok: true, cause: 'worker died' };
        return { ok: false, problem: `close ${code} that no event explains` };
      }
      case 'tcp':
        if (workerDeath()) return { ok: true, cause: 'worker died' };
        return { ok: false, problem: 'TCP close without a close frame while its worker lived' };
      case 'status': {
        const s = ending.status;
        if (s === 404 && this.wasAbsent(c.route, c.started, end)) return { ok: true, cause: 'route absent' };
        if ((s === 502 || s === 503) && (ringChange() || backendDied())) return { ok: true, cause: 'pool disturbed' };
        return { ok: false, problem: `refused ${s} that no event explains` };
      }
      case 'error':
        if (workerDeath()) return { ok: true, cause: 'worker died' };
        return { ok: false, problem: `error before the 101 (${ending.message}) while its worker lived` };
      case 'timeout':
        return { ok: false, problem: `timed out (${ending.stage})` };
      case 'corrupt':
        return { ok: false, problem: `data corrupted: ${ending.detail}` };
    }
  }
}
