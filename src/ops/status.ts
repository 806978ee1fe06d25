// The admin status snapshot (GET /api/status, documented in docs/admin-api.md): what one serving process
// reports (listeners, routes, pools and their backends, live connections, traffic totals), how the cluster
// primary sums several of those, and the rates derived from successive snapshots.

import type { Registry } from 'prom-client';
import type { RouteStats } from '../observe/metrics.js';
import type { Runtime } from '../proxy/runtime.js';
import type { HashKeySpec } from '../routing/hash-key.js';
import { VERSION } from './version.js';

export interface DirectionCounts {
  clientToBackend: number;
  backendToClient: number;
}

export interface ListenerStatus {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly tls: boolean;
  readonly selfSigned: boolean;
}

export interface BackendStatus {
  readonly id: string;
  readonly weight: number;
  /** healthy | unhealthy | ejected | draining | unknown, as the pool reports it. */
  state: string;
  active: number;
}

export interface PoolStatus {
  readonly name: string;
  readonly hashKey: string;
  readonly balanceFactor: number | null;
  active: number;
  readonly backends: BackendStatus[];
}

export interface RouteStatus {
  readonly name: string;
  readonly host: string | null;
  readonly path: string;
  readonly pool: string;
  active: number;
  connectionsTotal: number;
  readonly bytes: DirectionCounts;
  readonly messages: DirectionCounts;
}

/** What one process serving the listeners reports; the cluster primary sums its workers' reports. */
export interface ProcessStatus {
  readonly pid: number;
  readonly generation: number;
  readonly draining: boolean;
  readonly listeners: ListenerStatus[];
  readonly routes: RouteStatus[];
  readonly pools: PoolStatus[];
  readonly connections: { active: number; total: number };
  readonly bytes: DirectionCounts;
  readonly messages: DirectionCounts;
}

export interface WorkerStatus {
  readonly id: number;
  readonly pid: number;
  readonly state: 'starting' | 'ready' | 'stopping';
  readonly startedAt: string;
  readonly restarts: number;
  readonly generation: number;
  readonly connections: number;
  readonly connectionsTotal: number;
}

export interface LastReload {
  readonly at: string;
  readonly trigger: string;
  readonly result: 'success' | 'failure';
  readonly errors: readonly string[];
}

export interface Status {
  readonly version: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly now: string;
  readonly uptimeSeconds: number;
  readonly ready: boolean;
  readonly draining: boolean;
  readonly configFile: string;
  readonly generation: number;
  readonly lastReload: LastReload | null;
  readonly workers: { readonly configured: number; readonly live: number; readonly list: readonly WorkerStatus[] };
  readonly admin: { readonly address: string; readonly port: number; readonly tokenRequired: boolean };
  readonly listeners: readonly ListenerStatus[];
  readonly routes: readonly RouteStatus[];
  readonly pools: readonly PoolStatus[];
  readonly connections: { readonly active: number; readonly total: number };
  readonly traffic: {
    readonly bytesTotal: DirectionCounts;
    readonly messagesTotal: DirectionCounts;
    /** Averages over `windowSeconds` (the span since an earlier snapshot); null on the first snapshot. */
    readonly bytesPerSecond: DirectionCounts | null;
    readonly messagesPerSecond: DirectionCounts | null;
    readonly windowSeconds: number | null;
  };
}

export function formatHashKey(spec: HashKeySpec): string {
  return 'name' in spec ? `${spec.kind}:${spec.name}` : spec.kind;
}

export const zeroCounts = (): DirectionCounts => ({ clientToBackend: 0, backendToClient: 0 });

/** Values of a registry metric by label set; empty when the metric is not (yet) exported. */
export async function metricValues(
  registry: Registry,
  name: string,
): Promise<readonly { labels: Partial<Record<string, string | number>>; value: number }[]> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return [];
  const data = await metric.get();
  return data.values.filter((v) => !('metricName' in v) || v.metricName === undefined || v.metricName === name);
}

/** Adds `value` to the counts of a wsgate direction label. */
export function addDirection(counts: DirectionCounts, direction: unknown, value: number): void {
  if (direction === 'client_to_backend') counts.clientToBackend += value;
  else if (direction === 'backend_to_client') counts.backendToClient += value;
}

const STATE_SEVERITY = ['healthy', 'unknown', 'draining', 'unhealthy', 'ejected'];

/** Sums several processes' reports (same config generation expected); a backend shows its worst state. */
export function mergeProcessStatus(reports: readonly ProcessStatus[]): Omit<ProcessStatus, 'pid'> {
  const first = reports[0];
  if (!first) {
    return {
      generation: 0,
      draining: false,
      listeners: [],
      routes: [],
      pools: [],
      connections: { active: 0, total: 0 },
      bytes: zeroCounts(),
      messages: zeroCounts(),
    };
  }
  const clone = structuredClone(first);
  const routes = new Map(clone.routes.map((r) => [r.name, r]));
  const backends = new Map(clone.pools.flatMap((p) => p.backends.map((b) => [`${p.name}\u0000${b.id}`, b] as const)));
  const pools = new Map(clone.pools.map((p) => [p.name, p]));
  for (const other of reports.slice(1)) {
    clone.connections.active += other.connections.active;
    clone.connections.total += other.connections.total;
    sumInto(clone.bytes, other.bytes);
    sumInto(clone.messages, other.messages);
    for (const r of other.routes) {
      const mine = routes.get(r.name);
      if (!mine) continue;
      mine.active += r.active;
      mine.connectionsTotal += r.connectionsTotal;
      sumInto(mine.bytes, r.bytes);
      sumInto(mine.messages, r.messages);
    }
    for (const p of other.pools) {
      const pool = pools.get(p.name);
      if (pool) pool.active += p.active;
      for (const b of p.backends) {
        const mine = backends.get(`${p.name}\u0000${b.id}`);
        if (!mine) continue;
        mine.active += b.active;
        if (STATE_SEVERITY.indexOf(b.state) > STATE_SEVERITY.indexOf(mine.state)) mine.state = b.state;
      }
    }
  }
  const { pid: _pid, ...merged } = clone;
  return { ...merged, draining: reports.some((r) => r.draining) };
}

function sumInto(into: DirectionCounts, from: DirectionCounts): void {
  into.clientToBackend += from.clientToBackend;
  into.backendToClient += from.backendToClient;
}

interface Sample {
  readonly atMs: number;
  readonly bytes: DirectionCounts;
  readonly messages: DirectionCounts;
}

/**
 * Messages/s and bytes/s from the totals of successive snapshots, taken only when someone asks (no timer):
 * the rate is over the span since the oldest kept sample, at least MIN_WINDOW_MS and at most MAX_WINDOW_MS ago.
 */
export class RateTracker {
  static readonly MIN_WINDOW_MS = 1000;
  static readonly MAX_WINDOW_MS = 10_000;
  private samples: Sample[] = [];

  observe(
    nowMs: number,
    bytes: DirectionCounts,
    messages: DirectionCounts,
  ): { bytes: DirectionCounts; messages: DirectionCounts; windowSeconds: number } | null {
    // Totals that went down (a worker restarted) make the old samples useless.
    const last = this.samples.at(-1);
    if (last && (total(bytes) < total(last.bytes) || total(messages) < total(last.messages))) this.samples = [];
    while (this.samples.length > 1 && nowMs - (this.samples[1] as Sample).atMs >= RateTracker.MIN_WINDOW_MS) {
      if (nowMs - (this.samples[0] as Sample).atMs <= RateTracker.MAX_WINDOW_MS) break;
      this.samples.shift();
    }
    const oldest = this.samples[0];
    const newest = this.samples.at(-1);
    if (!newest || nowMs - newest.atMs >= RateTracker.MIN_WINDOW_MS / 2) {
      this.samples.push({ atMs: nowMs, bytes: { ...bytes }, messages: { ...messages } });
    }
    if (!oldest || nowMs - oldest.atMs < RateTracker.MIN_WINDOW_MS) return null;
    const seconds = (nowMs - oldest.atMs) / 1000;
    const rate = (now: DirectionCounts, then: DirectionCounts): DirectionCounts => ({
      clientToBackend: (now.clientToBackend - then.clientToBackend) / seconds,
      backendToClient: (now.backendToClient - then.backendToClient) / seconds,
    });
    return { bytes: rate(bytes, oldest.bytes), messages: rate(messages, oldest.messages), windowSeconds: seconds };
  }
}

function total(c: DirectionCounts): number {
  return c.clientToBackend + c.backendToClient;
}

/** What a gateway process reports about itself. */
export interface StatusSource {
  readonly registry: Registry;
  readonly runtime: Runtime;
  readonly generation: number;
  readonly draining: boolean;
  readonly listeners: readonly { name: string; address: string; port: number; secure: boolean; selfSigned: boolean }[];
  readonly liveTunnels: number;
  /** Every route's stats since start (removed routes too): connection totals that never go back. */
  readonly routeStats: Iterable<RouteStats>;
}

/** This process's view: listeners, routes, pools with backend states, live counts and traffic totals. */
export async function collectProcessStatus(source: StatusSource): Promise<ProcessStatus> {
  const registry = source.registry;
  const [active, bytes, messages] = await Promise.all([
    metricValues(registry, 'wsgate_connections_active'),
    metricValues(registry, 'wsgate_bytes_total'),
    metricValues(registry, 'wsgate_messages_total'),
  ]);
  const runtime = source.runtime;
  const routes = new Map<string, RouteStatus>(
    runtime.routes.map((r) => [
      r.name,
      {
        name: r.name,
        host: r.config.host ?? null,
        path: r.pathPrefix,
        pool: r.pool.name,
        active: 0,
        // Not summed from wsgate_connections_total: the series of a backend that left are withdrawn.
        connectionsTotal: r.stats.opened,
        bytes: zeroCounts(),
        messages: zeroCounts(),
      },
    ]),
  );
  for (const v of active) {
    const r = routes.get(String(v.labels.route));
    if (r) r.active += v.value;
  }
  const allBytes = zeroCounts();
  const allMessages = zeroCounts();
  for (const v of bytes) {
    addDirection(allBytes, v.labels.direction, v.value);
    const r = routes.get(String(v.labels.route));
    if (r) addDirection(r.bytes, v.labels.direction, v.value);
  }
  for (const v of messages) {
    if (v.labels.type === 'control') continue;
    addDirection(allMessages, v.labels.direction, v.value);
    const r = routes.get(String(v.labels.route));
    if (r) addDirection(r.messages, v.labels.direction, v.value);
  }
  const now = Date.now();
  return {
    pid: process.pid,
    generation: source.generation,
    draining: source.draining,
    listeners: source.listeners.map((l) => ({
      name: l.name,
      address: l.address,
      port: l.port,
      tls: l.secure,
      selfSigned: l.selfSigned,
    })),
    routes: [...routes.values()],
    pools: [...runtime.pools.values()].map((p) => ({
      name: p.name,
      hashKey: formatHashKey(p.config.hashKey),
      balanceFactor: p.config.balanceFactor ?? null,
      active: p.totalActive,
      backends: p.members.map((m) => ({
        id: m.backend.id,
        weight: m.backend.weight,
        state: m.state(now),
        active: m.active,
      })),
    })),
    connections: { active: source.liveTunnels, total: sumOpened(source.routeStats) },
    bytes: allBytes,
    messages: allMessages,
  };
}

export interface StatusParts {
  readonly process: Omit<ProcessStatus, 'pid'>;
  readonly startedAt: Date;
  readonly ready: boolean;
  readonly configFile: string;
  readonly lastReload: LastReload | null;
  readonly admin: Status['admin'];
  readonly workers: Status['workers'];
  readonly rates: RateTracker;
}

/** Builds the documented status document from one process's (or the merged cluster's) report. */
export function composeStatus(parts: StatusParts): Status {
  const p = parts.process;
  const nowMs = Date.now();
  const rates = parts.rates.observe(nowMs, p.bytes, p.messages);
  return {
    version: VERSION,
    pid: process.pid,
    startedAt: parts.startedAt.toISOString(),
    now: new Date(nowMs).toISOString(),
    uptimeSeconds: Math.round((nowMs - parts.startedAt.getTime()) / 100) / 10,
    ready: parts.ready,
    draining: p.draining,
    configFile: parts.configFile,
    generation: p.generation,
    lastReload: parts.lastReload,
    workers: parts.workers,
    admin: parts.admin,
    listeners: p.listeners,
    routes: p.routes,
    pools: p.pools,
    connections: p.connections,
    traffic: {
      bytesTotal: p.bytes,
      messagesTotal: p.messages,
      bytesPerSecond: rates?.bytes ?? null,
      messagesPerSecond: rates?.messages ?? null,
      windowSeconds: rates ? Math.round(rates.windowSeconds * 10) / 10 : null,
    },
  };
}

function sumOpened(stats: Iterable<RouteStats>): number {
  let total = 0;
  for (const s of stats) total += s.opened;
  return total;
}
