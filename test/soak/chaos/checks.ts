// The chaos soak's end-of-run checks: every gateway process back to its baseline (fds, handles — timers among
// them — and heap after GC), the gauges of live things at 0, and the /metrics counters consistent with what the
// clients saw (closes by code, refusals by status), allowing only what a killed worker changed after its last scrape.

import type { DnsStub } from '../../helpers/dns-stub.js';
import { delay } from '../../helpers/wait.js';
import type { BackendProcess } from './backends.js';
import type { Ledger } from './ledger.js';
import type { ProcessSnapshot } from './probe-client.js';

/** Heap (JS heap and array buffers, after GC) a process may end above its baseline: metric series of the backends
 * and routes seen, JIT code, V8's own growth. The quiet soak allows 16 MiB for one process with no reloads. */
export const HEAP_SLACK_BYTES = 24 * 1024 * 1024;
/** Fds a gateway process may hold above its baseline: the admin listener's keep-alive sockets of the checks. */
const FD_SLACK = 4;
/** Gauges that count live things, which must all be 0 once no client is connected. */
const LIVE_GAUGE = /active|pending|inflight|in_flight|queued|waiting/;

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/** A worker that was replaced is compared with the largest baseline of the workers (it runs the same config). */
export function compareProcesses(
  baseline: Record<string, ProcessSnapshot>,
  after: Record<string, ProcessSnapshot>,
  checks: string[],
): void {
  const workerBaselines = Object.entries(baseline)
    .filter(([n]) => n !== 'primary')
    .map(([, s]) => s);
  const worst = (pick: (s: ProcessSnapshot) => number) => Math.max(...workerBaselines.map(pick));
  for (const [name, now] of Object.entries(after)) {
    const same = baseline[name]?.pid === now.pid ? baseline[name] : undefined;
    const base = (pick: (s: ProcessSnapshot) => number) =>
      name === 'primary' ? pick(baseline.primary as ProcessSnapshot) : same ? pick(same) : worst(pick);
    if (now.fds > base((s) => s.fds) + FD_SLACK) checks.push(`${name}: fds ${base((s) => s.fds)} → ${now.fds}`);
    const kinds = new Set([...Object.keys(now.resources), ...workerBaselines.flatMap((s) => Object.keys(s.resources))]);
    for (const kind of kinds) {
      const before = base((s) => s.resources[kind] ?? 0);
      const n = now.resources[kind] ?? 0;
      // Timers must be exactly as many: one more is a timer some replaced config left running.
      const slack = kind === 'Timeout' || kind.startsWith('timers') ? 0 : kind === 'TCPSocketWrap' ? FD_SLACK : 1;
      if (n > before + slack) {
        const was = name === 'primary' ? baseline.primary : same;
        const sites = kind.startsWith('timers')
          ? ` (made at: ${JSON.stringify(now.timerSites)}; at the baseline: ${JSON.stringify(was?.timerSites ?? {})})`
          : '';
        checks.push(`${name}: ${kind} handles ${before} → ${n}${sites}`);
      }
    }
    for (const key of ['heapUsed', 'arrayBuffers'] as const) {
      if (now[key] > base((s) => s[key]) + HEAP_SLACK_BYTES) {
        checks.push(`${name}: ${key} ${mib(base((s) => s[key]))} → ${mib(now[key])} MiB`);
      }
    }
  }
}

/** Sums of a metric's samples by one label. */
function sumBy(text: string, metric: string, label: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    const key = new RegExp(`${label}="([^"]*)"`).exec(line)?.[1] ?? '';
    out.set(key, (out.get(key) ?? 0) + value);
  }
  return out;
}

export interface MetricsComparison {
  /** code → [clients saw, /metrics says]. */
  readonly closes: Record<string, [number, number]>;
  /** status → [clients saw, /metrics says]. */
  readonly rejections: Record<string, [number, number]>;
  /** Client-seen closes and refusals inside a killed worker's unscraped span: the most any count may differ by. */
  readonly slack: number;
  /** Crossed closes by the gateway's code (see Ledger.crossed). */
  readonly crossed: Record<string, number>;
  readonly liveGauges: Record<string, number>;
}

export function compareMetrics(
  text: string,
  ledger: Ledger,
  hostileStatuses: ReadonlyMap<number, number>,
  vanished: number,
  lostSpans: readonly [number, number][],
  checks: string[],
): MetricsComparison {
  const liveGauges: Record<string, number> = {};
  const gauges = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^# TYPE (wsgate_\S+) gauge$/.exec(line);
    if (m && LIVE_GAUGE.test(m[1] as string)) gauges.add(m[1] as string);
  }
  for (const line of text.split('\n')) {
    const name = line.split(/[{ ]/)[0] as string;
    if (!gauges.has(name)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    liveGauges[name] = (liveGauges[name] ?? 0) + value;
  }
  for (const [name, v] of Object.entries(liveGauges)) if (v !== 0) checks.push(`gauge ${name} is ${v}, not 0`);
  if (!('wsgate_connections_active' in liveGauges)) checks.push('wsgate_connections_active missing from /metrics');

  const inLost = (t: number) => lostSpans.some(([from, to]) => t >= from && t <= to + 200);
  const slack = ledger.endTimes.filter(inLost).length;
  const closes: Record<string, [number, number]> = {};
  const seenCloses = new Map(ledger.closesByCode);
  seenCloses.set(1006, (seenCloses.get(1006) ?? 0) + vanished);
  const metricCloses = sumBy(text, 'wsgate_closes_total', 'code');
  // A crossed close is the client's 1000 in /metrics and the gateway's code at the client.
  const crossedTotal = [...ledger.crossed.values()].reduce((a, b) => a + b, 0);
  for (const code of new Set([...[...seenCloses.keys()].map(String), ...metricCloses.keys()])) {
    const pair: [number, number] = [seenCloses.get(Number(code)) ?? 0, metricCloses.get(code) ?? 0];
    closes[code] = pair;
    const crossed = ledger.crossed.get(Number(code)) ?? 0;
    const [low, high] = code === '1000' ? [pair[0], pair[0] + crossedTotal] : [pair[0] - crossed, pair[0]];
    if (pair[1] < low - slack || pair[1] > high + slack) {
      checks.push(`closes ${code}: clients saw ${pair[0]} (${crossed} crossed), /metrics says ${pair[1]}`);
    }
  }
  const rejections: Record<string, [number, number]> = {};
  const seenStatuses = new Map(ledger.statuses);
  for (const [s, n] of hostileStatuses) seenStatuses.set(s, (seenStatuses.get(s) ?? 0) + n);
  const metricStatuses = sumBy(text, 'wsgate_handshake_rejections_total', 'status');
  for (const status of new Set([...[...seenStatuses.keys()].map(String), ...metricStatuses.keys()])) {
    const pair: [number, number] = [seenStatuses.get(Number(status)) ?? 0, metricStatuses.get(status) ?? 0];
    rejections[status] = pair;
    if (Math.abs(pair[0] - pair[1]) > slack)
      checks.push(`refusals ${status}: clients saw ${pair[0]}, /metrics says ${pair[1]}`);
  }
  return { closes, rejections, slack, crossed: Object.fromEntries(ledger.crossed), liveGauges };
}

/** Health checks each backend got and DNS queries the stub got in one window: what the pools' timers do. */
export interface TimerRates {
  readonly health: Record<string, number>;
  readonly dnsQueries: number;
}

export const RATE_WINDOW_MS = 5000;

export async function measureRates(backends: ReadonlyMap<string, BackendProcess>, dns: DnsStub): Promise<TimerRates> {
  const count = async () =>
    Object.fromEntries(await Promise.all([...backends].map(async ([id, b]) => [id, await b.healthChecks()] as const)));
  const before = await count();
  const queries = dns.queries.length;
  await delay(RATE_WINDOW_MS);
  const after = await count();
  const health = Object.fromEntries(Object.keys(after).map((id) => [id, (after[id] ?? 0) - (before[id] ?? 0)]));
  return { health, dnsQueries: dns.queries.length - queries };
}

/**
 * A health checker or discovery loop a replaced config left running doubles its backend's check rate (or the
 * DNS query rate): each may end at most a little above the baseline window's count (jitter moves one check).
 */
export function compareRates(before: TimerRates, after: TimerRates, checks: string[]): void {
  for (const [id, n] of Object.entries(after.health)) {
    const base = before.health[id] ?? 0;
    if (n > base + 2) checks.push(`backend ${id}: ${base} → ${n} health checks per ${RATE_WINDOW_MS} ms`);
  }
  if (after.dnsQueries > before.dnsQueries + 4) {
    checks.push(`DNS queries ${before.dnsQueries} → ${after.dnsQueries} per ${RATE_WINDOW_MS} ms`);
  }
}
