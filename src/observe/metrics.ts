// Prometheus metrics (pinned names, see README). Label children are made once per route/pool/backend and kept;
// per-chunk byte counts are plain numbers on shared stats objects, published to prom-client only at scrape time.

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const DIRECTIONS = ['client_to_backend', 'backend_to_client'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** Hot-path counters of one route: plain fields, incremented by tunnels, read at scrape. */
export class RouteStats {
  readonly route: string;
  bytesClientToBackend = 0;
  bytesBackendToClient = 0;
  constructor(route: string) {
    this.route = route;
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

  private readonly routeStats = new Map<string, RouteStats>();
  private readonly published = new Map<RouteStats, [number, number]>();
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
    const stats = this.routeStats;
    const published = this.published;
    this.bytes = new Counter({
      name: 'wsgate_bytes_total',
      help: 'Bytes tunnelled after the 101, by direction.',
      labelNames: ['route', 'direction'],
      registers,
      collect() {
        for (const s of stats.values()) {
          const last = published.get(s) ?? [0, 0];
          this.inc({ route: s.route, direction: 'client_to_backend' }, s.bytesClientToBackend - last[0]);
          this.inc({ route: s.route, direction: 'backend_to_client' }, s.bytesBackendToClient - last[1]);
          published.set(s, [s.bytesClientToBackend, s.bytesBackendToClient]);
        }
      },
    });
    this.hashKeyFallbacks = new Counter({
      name: 'wsgate_hash_key_fallbacks_total',
      help: 'Connections whose configured hash key was missing, so the client IP was used.',
      labelNames: ['route'],
      registers,
    });
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
