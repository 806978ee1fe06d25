// What one serving process reports about itself (listeners, routes, pools and their backends, live connections,
// traffic totals): the data plane's part of GET /api/status. The control plane merges one or several of these.

import type { Registry } from 'prom-client';
import type { RouteStats } from '../observe/hot-counts.js';
import { type AdminState, backendAddress } from '../pool/admin-state.js';
import type { Member } from '../pool/pool.js';
import type { Runtime } from '../proxy/runtime.js';
import type { HashKeySpec } from '../routing/hash-key.js';

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
  /** `host:port`: how the admin API and `wsgate ctl` name the backend. */
  readonly address: string;
  /** The weight the ring uses: the runtime one when set, else the configured one. */
  readonly weight: number;
  readonly configuredWeight: number;
  /** healthy | unhealthy | ejected | draining | unknown, as the pool reports it. */
  state: string;
  /** Active health checks pass (true without checks); in cluster mode, in every worker. */
  healthy: boolean;
  /** Passively ejected; in cluster mode, in any worker. */
  ejected: boolean;
  /** What the operator set through the admin API (active unless drained or disabled). */
  readonly adminState: AdminState;
  active: number;
}

/** One member as the status document and the admin API show it. */
export function backendStatusOf(m: Member, now: number): BackendStatus {
  return {
    id: m.backend.id,
    address: backendAddress(m.backend.id),
    weight: m.weight,
    configuredWeight: m.backend.weight,
    state: m.state(now),
    healthy: m.healthy,
    ejected: m.isEjected(now),
    adminState: m.adminState,
    active: m.active,
  };
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
      backends: p.members.map((m) => backendStatusOf(m, now)),
    })),
    connections: { active: source.liveTunnels, total: sumOpened(source.routeStats) },
    bytes: allBytes,
    messages: allMessages,
  };
}

function sumOpened(stats: Iterable<RouteStats>): number {
  let total = 0;
  for (const s of stats) total += s.opened;
  return total;
}
