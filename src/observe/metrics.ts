// Prometheus metrics (pinned names, see README). Label children are made once per route/pool/backend and kept;
// per-chunk and per-message counts are plain numbers on shared RouteStats objects, published to prom-client only
// at scrape time, so the hot path allocates nothing for metrics.

import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry as PromRegistry, Registry } from 'prom-client';

export const DIRECTIONS = ['client_to_backend', 'backend_to_client'] as const;
export type Direction = (typeof DIRECTIONS)[number];
/** Index of a direction in RouteStats arrays. */
export const C2B = 0;
export const B2C = 1;

export const MESSAGE_TYPES = ['text', 'binary', 'control'] as const;
export const TYPE_TEXT = 0;
export const TYPE_BINARY = 1;
export const TYPE_CONTROL = 2;

/** Upper bounds (bytes) of the message-size histogram buckets. */
export const MESSAGE_SIZE_BUCKETS: readonly number[] = [
  16, 64, 256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216,
];

/** Hot-path counters of one route: plain numbers and typed arrays, incremented by tunnels, read at scrape. */
export class RouteStats {
  readonly route: string;
  /** Bytes forwarded, by direction (C2B, B2C). */
  readonly bytes = new Float64Array(2);
  /** Messages by direction × type: index = direction * 3 + type. */
  readonly messages = new Float64Array(6);
  /** Message-size histogram by direction: index = direction * (buckets + 1) + bucket (last = +Inf). */
  readonly sizeBuckets = new Float64Array(2 * (MESSAGE_SIZE_BUCKETS.length + 1));
  readonly sizeSum = new Float64Array(2);
  constructor(route: string) {
    this.route = route;
  }

  /** Records one complete data message of `bytes` payload bytes; `type` is TYPE_TEXT or TYPE_BINARY. */
  countMessage(direction: number, type: number, bytes: number): void {
    this.messages[direction * 3 + type]!++;
    let b = 0;
    const n = MESSAGE_SIZE_BUCKETS.length;
    while (b < n && bytes > MESSAGE_SIZE_BUCKETS[b]!) b++;
    this.sizeBuckets[direction * (n + 1) + b]!++;
    this.sizeSum[direction]! += bytes;
  }
}

/** Children for one (route, pool, backend) triple, resolved once and shared by every connection on it. */
export interface BackendChildren {
  readonly active: { inc(): void; dec(): void };
  readonly total: { inc(): void };
}

export class Metrics {
  readonly registry: Registry;
  readonly connectionsActive: Gauge<'route' | 'pool' | 'backend'>;
  readonly connectionsTotal: Counter<'route' | 'pool' | 'backend'>;
  readonly handshakeRejections: Counter<'route' | 'status' | 'reason'>;
  readonly upstreamHandshakeSeconds: Histogram<'pool' | 'backend'>;
  readonly upstreamErrors: Counter<'pool' | 'backend' | 'reason'>;
  readonly bytes: Counter<'route' | 'direction'>;
  readonly hashKeyFallbacks: Counter<'route'>;
  readonly messages: Counter<'route' | 'direction' | 'type'>;
  readonly closes: Counter<'route' | 'code' | 'initiator'>;
  readonly protocolViolations: Counter<'route' | 'direction' | 'kind'>;
  readonly limitExceeded: Counter<'route' | 'limit' | 'action'>;
  readonly keepaliveTimeouts: Counter<'route' | 'peer'>;
  readonly acceptErrors: Counter;

  private readonly routeStats = new Map<string, RouteStats>();
  /** What was already published per route, to turn running totals into counter increments. */
  private readonly published = new Map<RouteStats, { bytes: Float64Array; messages: Float64Array }>();
  private readonly backendChildren = new Map<string, BackendChildren>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (options.defaultMetrics !== false)
      collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
    const registers = [registry];

    this.connectionsActive = new Gauge({
      name: 'wsgate_connections_active',
      help: 'WebSocket connections currently tunnelled.',
      labelNames: ['route', 'pool', 'backend'],
      registers,
    });
    this.connectionsTotal = new Counter({
      name: 'wsgate_connections_total',
      help: 'WebSocket connections tunnelled since start (counted at the 101).',
      labelNames: ['route', 'pool', 'backend'],
      registers,
    });
    this.handshakeRejections = new Counter({
      name: 'wsgate_handshake_rejections_total',
      help: 'Upgrade requests answered with an HTTP error instead of a tunnel.',
      labelNames: ['route', 'status', 'reason'],
      registers,
    });
    this.upstreamHandshakeSeconds = new Histogram({
      name: 'wsgate_upstream_handshake_seconds',
      help: 'Time from dialling a backend to its verified 101.',
      labelNames: ['pool', 'backend'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
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
    this.closes = new Counter({
      name: 'wsgate_closes_total',
      help: 'Tunnels ended, by the WebSocket close code that ended them (1006: no close frame) and who started it.',
      labelNames: ['route', 'code', 'initiator'],
      registers,
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

    this.acceptErrors = new Counter({
      name: 'wsgate_accept_errors_total',
      help: 'Connections the listeners failed to accept (EMFILE/ENFILE: out of file descriptors).',
      registers,
    });

    const stats = this.routeStats;
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

  childrenFor(route: string, pool: string, backend: string): BackendChildren {
    const key = `${route}\u0000${pool}\u0000${backend}`;
    let c = this.backendChildren.get(key);
    if (!c) {
      const labels = { route, pool, backend };
      c = { active: this.connectionsActive.labels(labels), total: this.connectionsTotal.labels(labels) };
      this.connectionsActive.set(labels, 0);
      this.connectionsTotal.inc(labels, 0);
      this.backendChildren.set(key, c);
    }
    return c;
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * `wsgate_message_bytes` as a registry metric built from RouteStats' typed arrays at scrape time: prom-client's
 * Histogram would hash label objects on every observe, which is a per-message allocation.
 */
function messageSizeHistogram(stats: ReadonlyMap<string, RouteStats>) {
  const name = 'wsgate_message_bytes';
  const help = 'Sizes of tunnelled WebSocket messages in bytes (whole message across fragments), by direction.';
  const n = MESSAGE_SIZE_BUCKETS.length;
  const get = async () => {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    for (const s of stats.values()) {
      for (let d = 0; d < 2; d++) {
        const direction = DIRECTIONS[d] as string;
        let cumulative = 0;
        for (let b = 0; b <= n; b++) {
          cumulative += s.sizeBuckets[d * (n + 1) + b]!;
          const le = b < n ? MESSAGE_SIZE_BUCKETS[b]! : '+Inf';
          values.push({ metricName: `${name}_bucket`, labels: { le, route: s.route, direction }, value: cumulative });
        }
        values.push({ metricName: `${name}_sum`, labels: { route: s.route, direction }, value: s.sizeSum[d]! });
        values.push({ metricName: `${name}_count`, labels: { route: s.route, direction }, value: cumulative });
      }
    }
    return { name, help, type: 'histogram', aggregator: 'sum', values };
  };
  return { name, help, type: 'histogram', aggregator: 'sum', labelNames: ['route', 'direction'], get, reset() {} };
}
