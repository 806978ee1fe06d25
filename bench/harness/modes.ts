// The measurements, each against one running target: echo (throughput, latency, CPU per message), handshake
// (upgrades per second, TLS included), idle (resident memory per held connection) and http (plain GETs, the
// long-poll path, driven by autocannon).

import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Endpoint, Job } from '../loadgen/protocol.js';
import { runLoad, split } from './generators.js';
import { cpuSeconds, hasTaskset, rssBytes, sleep } from './processes.js';
import type {
  EchoLoad,
  EchoResult,
  HandshakeKind,
  HandshakeResult,
  HttpResult,
  IdleResult,
  Transport,
} from './results.js';
import { LOAD_CPUS, PACKAGE_ROOT, type RunningTarget } from './targets.js';

export interface EchoSettings {
  readonly connections: number;
  readonly payloadBytes: number;
  readonly window: number;
  /** Offered messages/s (all connections together) of the fixed-rate echo run. */
  readonly rate: number;
  readonly warmupMs: number;
  readonly measureMs: number;
}

export interface HandshakeSettings {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly measureMs: number;
}

export interface HttpSettings {
  readonly connections: number;
  readonly warmupMs: number;
  readonly measureMs: number;
}

export interface IdleSettings {
  /** Time given to the target after the last connection opened, before RSS is read. */
  readonly settleMs: number;
}

export interface RunSettings {
  readonly generators: number;
  readonly pin: boolean;
}

const CONNECT_CONCURRENCY = 64;
/** Fixed-rate echo: a connection with this many messages unanswered skips its turn (bounds memory if a target lags). */
const FIXED_RATE_MAX_IN_FLIGHT = 64;

function first<T>(values: readonly (T | null)[]): T | null {
  for (const v of values) if (v !== null) return v;
  return null;
}

let perfSupported: boolean | undefined;

/** Whether `perf stat -e instructions` counts anything here (often not inside containers and VMs). */
export function perfInstructionsSupported(): boolean {
  if (perfSupported === undefined) {
    // perf stat prints its counts on stderr; "<not supported>" stands in for a count it cannot take.
    const r = spawnSync('perf', ['stat', '-x', ',', '-e', 'instructions', '--', 'true'], { encoding: 'utf8' });
    perfSupported = r.status === 0 && /^\d+,/m.test(r.stderr ?? '');
  }
  return perfSupported;
}

/** Counts instructions of `pids` for `ms` with perf stat; resolves null when perf cannot. */
function countInstructions(pids: readonly number[], ms: number): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(
      'perf',
      ['stat', '-x', ',', '-e', 'instructions', '-p', pids.join(','), '--', 'sleep', String(ms / 1000)],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', () => resolve(null));
    child.on('exit', () => {
      const m = /^(\d+),/m.exec(stderr);
      resolve(m ? Number(m[1]) : null);
    });
  });
}

/**
 * `max`: closed loop, `window` in flight per connection, as fast as the slowest process allows (on this machine
 * often the load generator, not the proxy: see cpuCoreShare). `rate`: the same offered rate for every target, so
 * every proxy sees the same batching and CPU per message compares like with like.
 */
export async function echoRun(
  target: RunningTarget,
  transport: Transport,
  load: EchoLoad,
  s: EchoSettings,
  run: RunSettings,
): Promise<EchoResult> {
  const endpoint = transport === 'ws' ? target.endpoints.ws : target.endpoints.wssEcdsa;
  const pids = target.measuredPids();
  const jobs: Job[] = split(s.connections, run.generators)
    .filter((n) => n > 0)
    .map((n) => ({
      mode: 'echo',
      endpoint,
      connections: n,
      payloadBytes: s.payloadBytes,
      window: load === 'max' ? s.window : FIXED_RATE_MAX_IN_FLIGHT,
      ratePerConnection: load === 'max' ? 0 : s.rate / s.connections,
      connectConcurrency: CONNECT_CONCURRENCY,
    }));
  let instructions: Promise<number | null> = Promise.resolve(null);
  let probes = 0;
  const measured = await runLoad({
    jobs,
    cpus: run.pin ? LOAD_CPUS : undefined,
    warmupMs: s.warmupMs,
    measureMs: s.measureMs,
    probe: () => {
      if (probes++ === 0 && perfInstructionsSupported()) instructions = countInstructions(pids, s.measureMs);
      return cpuSeconds(pids);
    },
  });
  const messages = measured.results.reduce((a, r) => a + r.count, 0);
  const cpu = measured.probeEnd - measured.probeStart;
  const instr = await instructions;
  return {
    target: target.name,
    transport,
    load,
    offeredPerSecond: load === 'max' ? null : s.rate,
    connections: measured.ready.reduce((a, r) => a + r.opened, 0),
    payloadBytes: s.payloadBytes,
    window: load === 'max' ? s.window : FIXED_RATE_MAX_IN_FLIGHT,
    seconds: measured.seconds,
    messages,
    messagesPerSecond: messages / measured.seconds,
    p50Us: measured.histogram.getValueAtPercentile(50),
    p99Us: measured.histogram.getValueAtPercentile(99),
    cpuSeconds: cpu,
    cpuSecondsPer1kMessages: messages > 0 ? (cpu / messages) * 1000 : Number.NaN,
    cpuCoreShare: cpu / measured.seconds,
    instructionsPerMessage: instr !== null && messages > 0 ? instr / messages : null,
    errors: measured.results.reduce((a, r) => a + r.errors, 0),
    dropped: measured.results.reduce((a, r) => a + r.dropped, 0),
    failedToOpen: measured.ready.reduce((a, r) => a + r.failed, 0),
    firstError: first([...measured.ready.map((r) => r.firstError), ...measured.results.map((r) => r.firstError)]),
  };
}

export function handshakeEndpoint(target: RunningTarget, kind: HandshakeKind): Endpoint {
  return kind === 'ws'
    ? target.endpoints.ws
    : kind === 'wss-rsa2048'
      ? target.endpoints.wssRsa
      : target.endpoints.wssEcdsa;
}

export async function handshakeRun(
  target: RunningTarget,
  kind: HandshakeKind,
  s: HandshakeSettings,
  run: RunSettings,
): Promise<HandshakeResult> {
  const endpoint = handshakeEndpoint(target, kind);
  const pids = target.measuredPids();
  const jobs: Job[] = split(s.concurrency, run.generators)
    .filter((n) => n > 0)
    .map((n) => ({ mode: 'handshake', endpoint, concurrency: n }));
  const load = await runLoad({
    jobs,
    cpus: run.pin ? LOAD_CPUS : undefined,
    warmupMs: s.warmupMs,
    measureMs: s.measureMs,
    probe: () => cpuSeconds(pids),
  });
  const handshakes = load.results.reduce((a, r) => a + r.count, 0);
  const cpu = load.probeEnd - load.probeStart;
  return {
    target: target.name,
    kind,
    concurrency: s.concurrency,
    seconds: load.seconds,
    handshakes,
    handshakesPerSecond: handshakes / load.seconds,
    p50Us: load.histogram.getValueAtPercentile(50),
    p99Us: load.histogram.getValueAtPercentile(99),
    cpuSeconds: cpu,
    cpuSecondsPer1kHandshakes: handshakes > 0 ? (cpu / handshakes) * 1000 : Number.NaN,
    cpuCoreShare: cpu / load.seconds,
    errors: load.results.reduce((a, r) => a + r.errors, 0),
    firstError: first(load.results.map((r) => r.firstError)),
  };
}

/**
 * Two measurements of one target and kind as one: counts, seconds and CPU add up (so rates and CPU per handshake
 * are over both); the latency percentiles, which cannot be merged without the histograms, are the mean of the two.
 */
export function pooledHandshakes(a: HandshakeResult, b: HandshakeResult): HandshakeResult {
  const seconds = a.seconds + b.seconds;
  const handshakes = a.handshakes + b.handshakes;
  const cpuSeconds = a.cpuSeconds + b.cpuSeconds;
  return {
    ...a,
    seconds,
    handshakes,
    handshakesPerSecond: handshakes / seconds,
    p50Us: (a.p50Us + b.p50Us) / 2,
    p99Us: (a.p99Us + b.p99Us) / 2,
    cpuSeconds,
    cpuSecondsPer1kHandshakes: handshakes > 0 ? (cpuSeconds / handshakes) * 1000 : Number.NaN,
    cpuCoreShare: cpuSeconds / seconds,
    errors: a.errors + b.errors,
    firstError: a.firstError ?? b.firstError,
  };
}

/** Connections opened and closed first, so one-time costs (JIT, pools, metric children) are not charged per connection. */
const IDLE_WARMUP_CONNECTIONS = 50;

export async function idleRun(
  target: RunningTarget,
  transport: Transport,
  connections: number,
  s: IdleSettings,
  run: RunSettings,
): Promise<IdleResult> {
  const endpoint = transport === 'ws' ? target.endpoints.ws : target.endpoints.wssEcdsa;
  const pids = target.measuredPids();
  const idleJobs = (total: number): Job[] =>
    split(total, run.generators)
      .filter((n) => n > 0)
      .map((n) => ({ mode: 'idle', endpoint, connections: n, connectConcurrency: CONNECT_CONCURRENCY }));
  await runLoad({
    jobs: idleJobs(IDLE_WARMUP_CONNECTIONS),
    cpus: run.pin ? LOAD_CPUS : undefined,
    warmupMs: 0,
    measureMs: 50,
    probe: () => 0,
  });
  await sleep(Math.min(1000, s.settleMs));
  const rssBefore = rssBytes(pids);
  const load = await runLoad({
    jobs: idleJobs(connections),
    cpus: run.pin ? LOAD_CPUS : undefined,
    warmupMs: s.settleMs,
    measureMs: 100,
    probe: () => rssBytes(pids),
  });
  const opened = load.ready.reduce((a, r) => a + r.opened, 0);
  return {
    target: target.name,
    transport,
    requested: connections,
    opened,
    failed: load.ready.reduce((a, r) => a + r.failed, 0),
    rssBeforeBytes: rssBefore,
    rssAfterBytes: load.probeEnd,
    bytesPerConnection: opened > 0 ? (load.probeEnd - rssBefore) / opened : Number.NaN,
    dropped: load.results.reduce((a, r) => a + r.dropped, 0),
    firstError: first([...load.ready.map((r) => r.firstError), ...load.results.map((r) => r.firstError)]),
  };
}

const AUTOCANNON = join(PACKAGE_ROOT, 'node_modules', 'autocannon', 'autocannon.js');

interface AutocannonSummary {
  readonly requests: { readonly total: number };
  readonly latency: { readonly p50: number; readonly p99: number };
  readonly duration: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}

/** One autocannon run (its CLI in a child process, pinned with the other load), JSON summary back. */
function autocannon(url: string, connections: number, ms: number, pin: boolean): Promise<AutocannonSummary> {
  const args = [AUTOCANNON, '--json', '-c', String(connections), '-d', String(Math.max(1, Math.round(ms / 1000))), url];
  const pinned = pin && hasTaskset();
  const child = pinned
    ? spawn('taskset', ['-c', LOAD_CPUS, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      try {
        resolve(JSON.parse(Buffer.concat(out).toString('utf8')) as AutocannonSummary);
      } catch {
        reject(new Error(`autocannon exited ${code}: ${Buffer.concat(err).toString('utf8').slice(-500)}`));
      }
    });
  });
}

export async function httpRun(target: RunningTarget, s: HttpSettings, run: RunSettings): Promise<HttpResult> {
  const { host, port } = target.endpoints.ws;
  const url = `http://${host}:${port}/poll`;
  const pids = target.measuredPids();
  await autocannon(url, s.connections, s.warmupMs, run.pin);
  const cpuBefore = cpuSeconds(pids);
  const r = await autocannon(url, s.connections, s.measureMs, run.pin);
  const cpu = cpuSeconds(pids) - cpuBefore;
  const requests = r.requests.total;
  return {
    target: target.name,
    connections: s.connections,
    seconds: r.duration,
    requests,
    requestsPerSecond: requests / r.duration,
    // autocannon reports milliseconds.
    p50Us: r.latency.p50 * 1000,
    p99Us: r.latency.p99 * 1000,
    cpuSeconds: cpu,
    cpuSecondsPer1kRequests: requests > 0 ? (cpu / requests) * 1000 : Number.NaN,
    cpuCoreShare: cpu / r.duration,
    errors: r.errors + r.timeouts + r.non2xx,
  };
}
