// The hot path's counts: plain numbers and typed arrays that tunnels and handshakes bump without calling prom-client
// (which hashes and validates a label set on every inc/observe), and the scrape-time collectors that turn the two
// histograms among them into registry metrics. Metrics (metrics.ts) owns the registry and publishes the rest.

import { CLOSE_INITIATORS, type CloseInitiator } from '../errors.js';

export const DIRECTIONS = ['client_to_backend', 'backend_to_client'] as const;
export type Direction = (typeof DIRECTIONS)[number];
/** Index of a direction in RouteStats arrays. */
export const C2B = 0;
export const B2C = 1;

export const MESSAGE_TYPES = ['text', 'binary', 'control'] as const;
export const TYPE_TEXT = 0;
export const TYPE_BINARY = 1;
export const TYPE_CONTROL = 2;

/** What a request's affinity cookie did (the `result` label of wsgate_sticky_total). */
export const STICKY_RESULTS = ['hit', 'set', 'stale', 'forged'] as const;
export type StickyResult = (typeof STICKY_RESULTS)[number];

/** Why a plain request's body was cut (the `reason` label of wsgate_request_body_errors_total). */
export type BodyErrorReason = 'malformed' | 'timeout';

/** Upper bounds (seconds) of the upstream handshake histogram buckets. */
export const HANDSHAKE_SECONDS_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

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
  /** Tunnels ended, by close code and initiator: key = code * 3 + initiator index (CLOSE_INITIATORS). */
  readonly closes = new Map<number, number>();
  /** Tunnels opened since start (the per-backend series may be withdrawn; this never goes back). */
  opened = 0;
  constructor(route: string) {
    this.route = route;
  }

  countClose(code: number, initiator: CloseInitiator): void {
    const key = code * 3 + CLOSE_INITIATORS.indexOf(initiator);
    this.closes.set(key, (this.closes.get(key) ?? 0) + 1);
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

/** Upstream handshake times of one (pool, backend): histogram buckets (last = +Inf), sum and count. */
export class HandshakeTimes {
  readonly pool: string;
  readonly backend: string;
  readonly buckets = new Float64Array(HANDSHAKE_SECONDS_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  constructor(pool: string, backend: string) {
    this.pool = pool;
    this.backend = backend;
  }

  observe(seconds: number): void {
    let b = 0;
    const n = HANDSHAKE_SECONDS_BUCKETS.length;
    while (b < n && seconds > HANDSHAKE_SECONDS_BUCKETS[b]!) b++;
    this.buckets[b]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** Affinity cookie outcomes of one pool, by STICKY_RESULTS index: counted per request, published at scrape. */
export class StickyCounts {
  readonly pool: string;
  readonly counts = new Float64Array(STICKY_RESULTS.length);
  readonly published = new Float64Array(STICKY_RESULTS.length);
  constructor(pool: string) {
    this.pool = pool;
  }

  count(result: StickyResult): void {
    this.counts[STICKY_RESULTS.indexOf(result)]!++;
  }
}

/**
 * Counts of one (route, pool, backend) triple, made once and shared by every connection on it: tunnels change the
 * numbers, scrapes publish them (wsgate_connections_active, wsgate_connections_total).
 */
export class BackendChildren {
  readonly labels: { readonly route: string; readonly pool: string; readonly backend: string };
  readonly handshakeTimes: HandshakeTimes;
  /** Tunnels open now. */
  active = 0;
  /** Tunnels opened since start. */
  total = 0;
  /** `total` as of the last scrape. */
  publishedTotal = 0;
  /** Its series were withdrawn (the backend left, no tunnel was open): whoever holds it must ask for new ones. */
  withdrawn = false;
  constructor(route: string, pool: string, backend: string, handshakeTimes: HandshakeTimes) {
    this.labels = { route, pool, backend };
    this.handshakeTimes = handshakeTimes;
  }
}

/**
 * `wsgate_upstream_handshake_seconds` (time from dialling a backend to its verified 101) from HandshakeTimes at
 * scrape time, like wsgate_message_bytes below. A (pool, backend) appears once it has a first observation.
 */
export function handshakeSecondsHistogram(times: ReadonlyMap<string, HandshakeTimes>) {
  const name = 'wsgate_upstream_handshake_seconds';
  const help = 'Time from dialling a backend to its verified 101.';
  const n = HANDSHAKE_SECONDS_BUCKETS.length;
  const get = async () => {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    for (const t of times.values()) {
      if (t.count === 0) continue;
      let cumulative = 0;
      for (let b = 0; b <= n; b++) {
        cumulative += t.buckets[b]!;
        const le = b < n ? HANDSHAKE_SECONDS_BUCKETS[b]! : '+Inf';
        values.push({
          metricName: `${name}_bucket`,
          labels: { le, pool: t.pool, backend: t.backend },
          value: cumulative,
        });
      }
      values.push({ metricName: `${name}_sum`, labels: { pool: t.pool, backend: t.backend }, value: t.sum });
      values.push({ metricName: `${name}_count`, labels: { pool: t.pool, backend: t.backend }, value: t.count });
    }
    return { name, help, type: 'histogram', aggregator: 'sum', values };
  };
  return { name, help, type: 'histogram', aggregator: 'sum', labelNames: ['pool', 'backend'], get, reset() {} };
}

/**
 * `wsgate_message_bytes` as a registry metric built from RouteStats' typed arrays at scrape time: prom-client's
 * Histogram would hash label objects on every observe, which is a per-message allocation.
 */
export function messageSizeHistogram(stats: ReadonlyMap<string, RouteStats>) {
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
