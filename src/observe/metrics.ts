// Prometheus metrics (pinned names, docs/metrics.md). Per-connection and per-message counts are plain numbers on shared
// objects made once per route (RouteStats) and per route/pool/backend (BackendChildren, both in hot-counts.ts), published to prom-client
// only at scrape time: prom-client hashes and validates the label set on every inc/observe, even through a
// `labels()` child, so the hot path calls none of it and allocates nothing for metrics.

import { Counter, collectDefaultMetrics, Gauge, type Registry as PromRegistry, Registry } from 'prom-client';
import { CLOSE_INITIATORS } from '../errors.js';
import {
  BackendChildren,
  DIRECTIONS,
  HandshakeTimes,
  handshakeSecondsHistogram,
  MESSAGE_TYPES,
  messageSizeHistogram,
  RouteStats,
  STICKY_RESULTS,
  StickyCounts,
} from './hot-counts.js';

/**
 * prom-client's default gauges named like counters (`_total`), which `promtool check metrics` refuses. Each is the
 * sum of its labelled namesake (`sum(nodejs_active_handles)`), so nothing is lost without them.
 */
const COUNTER_NAMED_GAUGES = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** prom-client's process and Node.js metrics on `registry`, without the gauges promtool refuses. */
export function collectProcessMetrics(registry: PromRegistry): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  for (const name of COUNTER_NAMED_GAUGES) registry.removeSingleMetric(name);
}

export class Metrics {
  readonly registry: Registry;
  readonly connectionsActive: Gauge<'route' | 'pool' | 'backend'>;
  readonly connectionsTotal: Counter<'route' | 'pool' | 'backend'>;
  readonly handshakeRejections: Counter<'route' | 'status' | 'reason'>;
  readonly upstreamErrors: Counter<'pool' | 'backend' | 'reason'>;
  readonly bytes: Counter<'route' | 'direction'>;
  readonly hashKeyFallbacks: Counter<'route'>;
  readonly messages: Counter<'route' | 'direction' | 'type'>;
  readonly closes: Counter<'route' | 'code' | 'initiator'>;
  readonly protocolViolations: Counter<'route' | 'direction' | 'kind'>;
  readonly limitExceeded: Counter<'route' | 'limit' | 'action'>;
  readonly keepaliveTimeouts: Counter<'route' | 'peer'>;
  readonly authResults: Counter<'route' | 'result'>;
  readonly lifetimeCloses: Counter<'route' | 'reason'>;
  readonly acceptErrors: Counter;
  readonly clientAddressRejections: Counter<'listener' | 'reason'>;
  readonly tlsHandshakes: Counter<'listener' | 'resumed'>;
  readonly sticky: Counter<'pool' | 'result'>;
  readonly requestBodyErrors: Counter<'route' | 'reason'>;

  private readonly routeStats = new Map<string, RouteStats>();
  /** What was already published per route, to turn running totals into counter increments. */
  private readonly published = new Map<RouteStats, { bytes: Float64Array; messages: Float64Array }>();
  private readonly backendChildren = new Map<string, BackendChildren>();
  /** Keys (backendKey) of the (route, pool, backend) triples configured now; undefined: keep every series. */
  private configured: (() => ReadonlySet<string>) | undefined;
  private readonly handshakeTimes = new Map<string, HandshakeTimes>();
  private readonly stickyCounts = new Map<string, StickyCounts>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (options.defaultMetrics !== false) collectProcessMetrics(registry);
    const registers = [registry];
    const children = this.backendChildren;
    const stats = this.routeStats;

    this.connectionsActive = new Gauge({
      name: 'wsgate_connections_active',
      help: 'WebSocket connections currently tunnelled.',
      labelNames: ['route', 'pool', 'backend'],
      registers,
      collect: () => {
        this.withdrawDeparted();
        for (const c of children.values()) this.connectionsActive.set(c.labels, c.active);
      },
    });
    this.connectionsTotal = new Counter({
      name: 'wsgate_connections_total',
      help: 'WebSocket connections tunnelled since start (counted at the 101).',
      labelNames: ['route', 'pool', 'backend'],
      registers,
      collect() {
        for (const c of children.values()) {
          this.inc(c.labels, c.total - c.publishedTotal);
          c.publishedTotal = c.total;
        }
      },
    });
    this.handshakeRejections = new Counter({
      name: 'wsgate_handshake_rejections_total',
      help: 'Upgrade requests answered with an HTTP error instead of a tunnel.',
      labelNames: ['route', 'status', 'reason'],
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'wsgate_upstream_errors_total',
      help: 'Failed attempts to reach or handshake with a backend.',
      labelNames: ['pool', 'backend', 'reason'],
      registers,
    });
    this.hashKeyFallbacks = new Counter({
      name: 'wsgate_hash_key_fallbacks_total',
      help: 'Connections whose configured hash key was missing, so the client IP was used.',
      labelNames: ['route'],
      registers,
    });
    const publishedCloses = new Map<RouteStats, Map<number, number>>();
    this.closes = new Counter({
      name: 'wsgate_closes_total',
      help: 'Tunnels ended, by the WebSocket close code that ended them (1006: no close frame) and who started it.',
      labelNames: ['route', 'code', 'initiator'],
      registers,
      collect() {
        for (const s of stats.values()) {
          let published = publishedCloses.get(s);
          if (!published) {
            published = new Map();
            publishedCloses.set(s, published);
          }
          for (const [key, count] of s.closes) {
            const before = published.get(key) ?? 0;
            if (count === before) continue;
            const labels = { route: s.route, code: String(Math.floor(key / 3)), initiator: CLOSE_INITIATORS[key % 3]! };
            this.inc(labels, count - before);
            published.set(key, count);
          }
        }
      },
    });
    this.protocolViolations = new Counter({
      name: 'wsgate_protocol_violations_total',
      help: 'RFC 6455 frame violations seen, by direction and kind (counted in strict and lenient mode).',
      labelNames: ['route', 'direction', 'kind'],
      registers,
    });
    this.limitExceeded = new Counter({
      name: 'wsgate_limit_exceeded_total',
      help: 'Per-connection limits hit, by limit and the action taken (close or throttle).',
      labelNames: ['route', 'limit', 'action'],
      registers,
    });
    this.keepaliveTimeouts = new Counter({
      name: 'wsgate_keepalive_timeouts_total',
      help: 'Peers closed because they did not answer a proxy ping in time.',
      labelNames: ['route', 'peer'],
      registers,
    });
    this.authResults = new Counter({
      name: 'wsgate_auth_results_total',
      help: 'Token checks on routes with auth.jwt, by result (ok, missing, duplicate, invalid, expired, ...).',
      labelNames: ['route', 'result'],
      registers,
    });
    this.lifetimeCloses = new Counter({
      name: 'wsgate_lifetime_closes_total',
      help: 'Tunnels closed at their deadline: max_lifetime (1001) or token_expired (1008).',
      labelNames: ['route', 'reason'],
      registers,
    });

    this.acceptErrors = new Counter({
      name: 'wsgate_accept_errors_total',
      help:
        'Accept errors node reported (EMFILE/ENFILE: out of file descriptors). Connections libuv sheds itself ' +
        '(accepted and closed at once with its reserve descriptor) are not seen, so not counted.',
      registers,
    });
    this.clientAddressRejections = new Counter({
      name: 'wsgate_client_address_rejections_total',
      help:
        'Connections closed at the PROXY protocol stage, by reason: untrusted (peer outside trustedProxies), ' +
        'invalid (malformed header), timeout (no whole header in time), closed (ended before one).',
      labelNames: ['listener', 'reason'],
      registers,
    });
    this.tlsHandshakes = new Counter({
      name: 'wsgate_tls_handshakes_total',
      help: 'Completed TLS handshakes by listener; resumed="true" for a resumed session (ticket or session cache).',
      labelNames: ['listener', 'resumed'],
      registers,
    });

    const stickyCounts = this.stickyCounts;
    this.sticky = new Counter({
      name: 'wsgate_sticky_total',
      help:
        'Requests to pools with a sticky cookie, by what the cookie did: hit (honoured), set (none sent), stale ' +
        '(its backend left or is down) or forged; the last three are answered with a new cookie.',
      labelNames: ['pool', 'result'],
      registers,
      collect() {
        for (const s of stickyCounts.values()) {
          for (let i = 0; i < STICKY_RESULTS.length; i++) {
            this.inc({ pool: s.pool, result: STICKY_RESULTS[i]! }, s.counts[i]! - s.published[i]!);
            s.published[i] = s.counts[i]!;
          }
        }
      },
    });
    this.requestBodyErrors = new Counter({
      name: 'wsgate_request_body_errors_total',
      help:
        'Plain HTTP requests whose body was cut: malformed (e.g. a bad chunk line; answered 400) or timeout ' +
        '(paused longer than timeouts.body; answered 408). Not counted against the backend.',
      labelNames: ['route', 'reason'],
      registers,
    });

    const published = this.published;
    const publishedFor = (s: RouteStats) => {
      let p = published.get(s);
      if (!p) {
        p = { bytes: new Float64Array(2), messages: new Float64Array(6) };
        published.set(s, p);
      }
      return p;
    };
    this.bytes = new Counter({
      name: 'wsgate_bytes_total',
      help: 'Bytes tunnelled after the 101, by direction.',
      labelNames: ['route', 'direction'],
      registers,
      collect() {
        for (const s of stats.values()) {
          const p = publishedFor(s);
          for (let d = 0; d < 2; d++) {
            this.inc({ route: s.route, direction: DIRECTIONS[d] }, s.bytes[d]! - p.bytes[d]!);
            p.bytes[d] = s.bytes[d]!;
          }
        }
      },
    });
    this.messages = new Counter({
      name: 'wsgate_messages_total',
      help: 'WebSocket messages tunnelled, by direction and type (a fragmented message counts once).',
      labelNames: ['route', 'direction', 'type'],
      registers,
      collect() {
        for (const s of stats.values()) {
          const p = publishedFor(s);
          for (let i = 0; i < 6; i++) {
            const labels = { route: s.route, direction: DIRECTIONS[Math.floor(i / 3)]!, type: MESSAGE_TYPES[i % 3]! };
            this.inc(labels, s.messages[i]! - p.messages[i]!);
            p.messages[i] = s.messages[i]!;
          }
        }
      },
    });
    registry.registerMetric(messageSizeHistogram(stats) as unknown as Parameters<PromRegistry['registerMetric']>[0]);
    registry.registerMetric(
      handshakeSecondsHistogram(this.handshakeTimes) as unknown as Parameters<PromRegistry['registerMetric']>[0],
    );
  }

  /** Every route's stats since start, removed routes' included. */
  allRouteStats(): Iterable<RouteStats> {
    return this.routeStats.values();
  }

  /** Shared stats for a route; created once, also making the route's series visible at 0. */
  statsFor(route: string): RouteStats {
    let s = this.routeStats.get(route);
    if (!s) {
      s = new RouteStats(route);
      this.routeStats.set(route, s);
      for (const direction of DIRECTIONS) this.bytes.inc({ route, direction }, 0);
      this.hashKeyFallbacks.inc({ route }, 0);
    }
    return s;
  }

  /** Shared affinity cookie counts of a pool; created once, also making its series visible at 0. */
  stickyFor(pool: string): StickyCounts {
    let s = this.stickyCounts.get(pool);
    if (!s) {
      s = new StickyCounts(pool);
      this.stickyCounts.set(pool, s);
      for (const result of STICKY_RESULTS) this.sticky.inc({ pool, result }, 0);
    }
    return s;
  }

  /**
   * Says which (route, pool, backend) triples are configured now (keys from backendKey). A triple that is not, and
   * has no tunnel open, loses its series at the next scrape: backends come and go with DNS discovery and reloads,
   * and their series must not pile up.
   */
  trackConfigured(configured: () => ReadonlySet<string>): void {
    this.configured = configured;
  }

  private withdrawDeparted(): void {
    if (this.configured === undefined) return;
    const configured = this.configured();
    const timesInUse = new Set<HandshakeTimes>();
    for (const [key, c] of this.backendChildren) {
      if (c.active > 0 || configured.has(key)) {
        timesInUse.add(c.handshakeTimes);
        continue;
      }
      c.withdrawn = true;
      this.backendChildren.delete(key);
      this.connectionsActive.remove(c.labels);
      this.connectionsTotal.remove(c.labels);
    }
    for (const [key, times] of this.handshakeTimes) if (!timesInUse.has(times)) this.handshakeTimes.delete(key);
  }

  /** Shared counts for a (route, pool, backend); created once, also making its series visible at 0. */
  childrenFor(route: string, pool: string, backend: string): BackendChildren {
    const key = backendKey(route, pool, backend);
    let c = this.backendChildren.get(key);
    if (!c) {
      const timesKey = `${pool}\u0000${backend}`;
      let times = this.handshakeTimes.get(timesKey);
      if (!times) {
        times = new HandshakeTimes(pool, backend);
        this.handshakeTimes.set(timesKey, times);
      }
      c = new BackendChildren(route, pool, backend, times);
      this.connectionsActive.set(c.labels, 0);
      this.connectionsTotal.inc(c.labels, 0);
      this.backendChildren.set(key, c);
    }
    return c;
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** The key of a (route, pool, backend) triple, for Metrics.trackConfigured. */
export function backendKey(route: string, pool: string, backend: string): string {
  return `${route}\u0000${pool}\u0000${backend}`;
}
