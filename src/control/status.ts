// The admin status document (GET /api/status, documented in docs/admin-api.md): the serving processes' reports
// merged (one process, or a cluster's workers), the worker list, the last reload, and the rates derived from
// successive snapshots.

import {
  type DirectionCounts,
  type ListenerStatus,
  type PoolStatus,
  type ProcessStatus,
  type RouteStatus,
  zeroCounts,
} from '../gateway/process-status.js';
import { VERSION } from './version.js';

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

export interface WorkersStatus {
  readonly configured: number;
  readonly live: number;
  readonly list: readonly WorkerStatus[];
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
  readonly workers: WorkersStatus;
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
        mine.healthy &&= b.healthy;
        mine.ejected ||= b.ejected;
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

export interface StatusParts {
  readonly process: Omit<ProcessStatus, 'pid'>;
  readonly startedAt: Date;
  readonly ready: boolean;
  readonly configFile: string;
  readonly lastReload: LastReload | null;
  readonly admin: Status['admin'];
  readonly workers: WorkersStatus;
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
