// A reconnect storm through limits.connectionRate, end to end: instance A (the built CLI in a child process) holds
// thousands of live tunnels and gets SIGTERM; once every client has heard its 1001, all of them reconnect in the same
// instant to instance B (a second CLI on the same backends, with connectionRate.perSecond set), each retrying after
// a refusal's Retry-After plus a little jitter, as a real client's backoff does. It shows what the README promises:
// everyone gets back in, at the configured pace (never faster, so the backends see the pace too), every refusal says
// when to come back, and a client is refused about once, not once a second.

import { spawn } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { admin } from '../control/support.js';
import { type CliProcess, ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { type Cleanup, cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, simpleConfig } from '../helpers/gateway.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';
import { delay, waitFor } from '../helpers/wait.js';

beforeAll(ensureBuilt, 120_000);
const cleanups = cleanupAfterEach();

/** Clients A holds when it gets SIGTERM (each costs ~2 fds in a gateway and ~2 in this process). */
const CLIENTS = 3000;
/** B's connectionRate.perSecond; the process bucket's burst is one second of it. */
const PER_SECOND = 500;
const BURST = PER_SECOND;
/** Clients come from this many loopback addresses (127.0.1.1…), so B's per-address buckets are in play too. */
const SOURCES = 100;
/** A client waits Retry-After plus up to this much at random before it tries again. */
const JITTER_MS = 300;
/** The backends note a connection a little after it came (an event loop turn of a busy machine): room for that. */
const SLACK = 1.1;

/**
 * The backends run in a child process of their own, so the times they note are not held up by this process's
 * thousands of clients: when each TCP connection reached them (wall-clock ms, comparable across processes).
 */
const BACKENDS_SCRIPT = `
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
const acceptedAt = [];
const live = [0, 0];
const ports = await Promise.all([0, 1].map((i) => new Promise((resolve) => {
  const server = createServer();
  // TCP accept time: B connects in the same turn as it takes the rate token, so this is B's admission time give or
  // take this light process's own delay (B's later turns, writing the request and relaying the 101, are not in it).
  server.on('connection', () => acceptedAt.push(performance.timeOrigin + performance.now()));
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    live[i]++;
    ws.on('close', () => live[i]--);
    ws.on('error', () => {});
  });
  // A deep accept queue: B's bursts must not be held back (and bunched up) by SYNs dropped here.
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => resolve(server.address().port));
})));
process.send({ type: 'ready', ports });
process.on('message', () => process.send({ type: 'report', acceptedAt, live }));
process.on('disconnect', () => process.exit(0));
`;

interface BackendReport {
  /** When each TCP connection reached a backend (wall-clock ms). */
  readonly acceptedAt: number[];
  /** Open WebSockets per backend. */
  readonly live: number[];
}

async function startBackends(into: Cleanup[]): Promise<{ urls: string[]; report(): Promise<BackendReport> }> {
  const child = spawn(NODE_BIN, ['--input-type=module', '-e', BACKENDS_SCRIPT], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  into.push(() => child.kill('SIGKILL'));
  const ports = await new Promise<number[]>((resolve, reject) => {
    child.once('message', (m: { ports: number[] }) => resolve(m.ports));
    child.once('exit', (code) => reject(new Error(`backends exited (${code}) before ready`)));
  });
  return {
    urls: ports.map((p) => `ws://127.0.0.1:${p}`),
    report: () =>
      new Promise((resolve) => {
        child.once('message', (m: BackendReport) => resolve(m));
        child.send('report');
      }),
  };
}

/** Wall-clock milliseconds with sub-ms resolution: comparable across processes. */
const wallMs = (): number => performance.timeOrigin + performance.now();

function startCli(config: Record<string, unknown>): CliProcess {
  const cli = runCli(writeConfig(config), ['--no-watch']);
  cleanups.push(() => cli.kill('SIGKILL'));
  return cli;
}

type Attempt =
  | { readonly kind: 'open'; readonly ws: WebSocket }
  | { readonly kind: 'refused'; readonly status: number; readonly retryAfter: string | undefined }
  | { readonly kind: 'failed'; readonly message: string };

/** One upgrade from `source`: open, refused with a status (and its Retry-After), or failed below HTTP. */
function attempt(url: string, source: string, user: string): Promise<Attempt> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (a: Attempt) => {
      if (settled) return;
      settled = true;
      resolve(a);
    };
    const ws = new WebSocket(url, { headers: { 'x-user-id': user }, localAddress: source, handshakeTimeout: 20_000 });
    ws.on('error', (err) => settle({ kind: 'failed', message: err.message }));
    ws.once('open', () => settle({ kind: 'open', ws }));
    ws.once('unexpected-response', (_req, res) => {
      const retryAfter = res.headers['retry-after'];
      settle({ kind: 'refused', status: res.statusCode ?? 0, retryAfter });
      res.resume();
      ws.terminate();
    });
  });
}

interface StormClient {
  readonly user: string;
  readonly source: string;
  ws: WebSocket | undefined;
  /** Close code A sent. */
  goneWith: number | undefined;
  /** When A's close arrived (wall-clock ms). */
  goneAt: number | undefined;
  /** When B's 101 arrived (wall-clock ms). */
  backAt: number | undefined;
  attempts: number;
  readonly refusals: { status: number; retryAfter: string | undefined }[];
  readonly failures: string[];
}

/** Peak count of `times` within any window of `windowMs` (times sorted ascending). */
function peakInWindow(times: readonly number[], windowMs: number): number {
  let peak = 0;
  let start = 0;
  for (let end = 0; end < times.length; end++) {
    while ((times[end] as number) - (times[start] as number) >= windowMs) start++;
    peak = Math.max(peak, end - start + 1);
  }
  return peak;
}

/** Counts per whole second since `from`, for the log. */
function countsPerSecond(times: readonly number[], from: number): number[] {
  const counts: number[] = [];
  for (const t of times) {
    const s = Math.floor((t - from) / 1000);
    counts[s] = (counts[s] ?? 0) + 1;
  }
  return Array.from(counts, (c) => c ?? 0);
}

describe('reconnect storm through limits.connectionRate', () => {
  it(`${CLIENTS} clients drained from A come back to B at ${PER_SECOND}/s: all get in, never faster, refusals say when`, async () => {
    const backends = await startBackends(cleanups);
    const common = {
      limits: { maxConnections: 10_000, maxConnectionsPerIp: 10_000 },
      // A's drain sends its 1001s within the first half of timeouts.drain (then the test lets the crowd go at once).
      timeouts: { handshake: '20s', idle: '5m', drain: '1s' },
      shutdown: { acceptDelay: '0s' },
      log: { level: 'info' },
    };
    const a = startCli(simpleConfig(backends.urls, common));
    // Per address: 30 clients per source address stay well inside the default burst (2 × 50).
    const rate = { perSecond: PER_SECOND, perIpPerSecond: 50 };
    const b = startCli(simpleConfig(backends.urls, { ...common, limits: { ...common.limits, connectionRate: rate } }));
    const [aPorts, bPorts] = await Promise.all([a.ready(), b.ready()]);
    const aUrl = `ws://127.0.0.1:${aPorts.port}/`;
    const bUrl = `ws://127.0.0.1:${bPorts.port}/`;

    const clients: StormClient[] = Array.from({ length: CLIENTS }, (_, i) => ({
      user: `u${i}`,
      source: `127.0.1.${1 + (i % SOURCES)}`,
      ws: undefined,
      goneWith: undefined,
      goneAt: undefined,
      backAt: undefined,
      attempts: 0,
      refusals: [],
      failures: [],
    }));
    cleanups.push(() => {
      for (const c of clients) c.ws?.terminate();
    });

    // Every client on A, a hundred at a time (a listen backlog holds only so many SYNs).
    for (let i = 0; i < CLIENTS; i += 100) {
      await Promise.all(
        clients.slice(i, i + 100).map(async (c) => {
          const first = await attempt(aUrl, c.source, c.user);
          if (first.kind !== 'open') throw new Error(`client ${c.user} could not open on A: ${JSON.stringify(first)}`);
          c.ws = first.ws;
        }),
      );
    }
    const before = await backends.report();
    expect(before.live.reduce((n, x) => n + x, 0)).toBe(CLIENTS);

    const giveUpAt = performance.now() + 90_000;
    /** After A's close: straight to B, then again after each refusal's Retry-After (+ jitter) until it is in. */
    const comeBack = async (c: StormClient): Promise<void> => {
      for (;;) {
        c.attempts++;
        const result = await attempt(bUrl, c.source, c.user);
        if (result.kind === 'open') {
          c.ws = result.ws;
          c.backAt = wallMs();
          return;
        }
        let waitMs: number;
        if (result.kind === 'refused') {
          c.refusals.push(result);
          waitMs = Number(result.retryAfter ?? 1) * 1000 + Math.random() * JITTER_MS;
        } else {
          c.failures.push(result.message);
          waitMs = 250 + Math.random() * JITTER_MS;
        }
        if (performance.now() + waitMs > giveUpAt) return;
        await delay(waitMs);
      }
    };
    const heard1001 = clients.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.ws?.once('close', (code) => {
            c.goneWith = code;
            c.goneAt = wallMs();
            resolve();
          });
        }),
    );
    const signalledAt = wallMs();
    a.kill('SIGTERM');
    await Promise.all(heard1001);
    // The drain spreads its 1001s, but the storm is the worst case: the whole crowd at B's door in the same
    // instant (as after a crash, or a drain window too short for the crowd).
    const stormAt = wallMs();
    await Promise.all(clients.map(comeBack));
    const exit = await a.exited;
    const after = await backends.report();
    const metrics = (await admin(bPorts.adminPort, '/metrics')).text;
    const refusals = clients.flatMap((c) => c.refusals);
    // B's log lines come through a pipe and may still be on their way on a busy machine.
    const logged = (msg: string) => b.logs.filter((l) => l.msg === msg);
    await waitFor(
      () => logged('connection opened').length >= CLIENTS && logged('handshake rejected').length >= refusals.length,
      30_000,
      "B's open and rejection log lines",
    ).catch(() => {});

    // Admissions as the backends saw them (TCP accepts: B's admission times), as B logged them (after the backend's
    // 101, so a busy B bunches them) and as the clients saw them (after B relayed the 101, later still).
    const sorted = (times: number[]) => times.sort((x, y) => x - y);
    const bOpens = sorted(logged('connection opened').map((l) => Date.parse(l.time as string)));
    const bRefusals = logged('handshake rejected');
    const backendConnects = sorted(after.acceptedAt.filter((t) => t > stormAt));
    const clientOpens = sorted(clients.flatMap((c) => (c.backAt === undefined ? [] : [c.backAt])));
    const goneTimes = sorted(clients.flatMap((c) => (c.goneAt === undefined ? [] : [c.goneAt])));
    const summary = {
      clients: CLIENTS,
      perSecond: PER_SECOND,
      allBackMs: Math.round((clientOpens.at(-1) ?? Number.NaN) - stormAt),
      all1001sWithinMs: Math.round((goneTimes.at(-1) ?? Number.NaN) - signalledAt),
      refusals: refusals.length,
      refusalsByStatus: Object.fromEntries(
        [...new Set(refusals.map((r) => r.status))].map((s) => [s, refusals.filter((r) => r.status === s).length]),
      ),
      retryAfterValues: [...new Set(refusals.map((r) => r.retryAfter))],
      maxAttemptsOfOneClient: Math.max(...clients.map((c) => c.attempts)),
      failuresBelowHttp: clients.reduce((n, c) => n + c.failures.length, 0),
      peakIn1s: {
        atB: peakInWindow(bOpens, 1000),
        atBackends: peakInWindow(backendConnects, 1000),
        atClients: peakInWindow(clientOpens, 1000),
      },
      perSecondSinceStorm: {
        admittedAtB: countsPerSecond(bOpens, stormAt),
        refusedAtB: countsPerSecond(sorted(bRefusals.map((l) => Date.parse(l.time as string))), stormAt),
        atBackends: countsPerSecond(backendConnects, stormAt),
        atClients: countsPerSecond(clientOpens, stormAt),
      },
    };
    console.log(`reconnect storm: ${JSON.stringify(summary)}`);

    // A drained: every client heard 1001 and A exited cleanly.
    expect(clients.filter((c) => c.goneWith !== 1001)).toEqual([]);
    expect(exit.code).toBe(0);

    // Nobody was refused forever: every client is back on B, and the backends hold exactly the crowd again.
    expect(clients.filter((c) => c.backAt === undefined).map((c) => c.user)).toEqual([]);
    expect(after.live.reduce((n, x) => n + x, 0)).toBe(CLIENTS);
    // Refusals never reached a backend: one connection per client since the storm began, none for refused attempts.
    expect(backendConnects.length).toBe(CLIENTS);
    expect(bOpens.length).toBe(CLIENTS);

    // The pace: a token bucket gives at most burst + rate × t in any t, so the backends never see more than
    // PER_SECOND + BURST new connections in a second…
    expect(summary.peakIn1s.atBackends).toBeLessThanOrEqual((PER_SECOND + BURST) * SLACK);
    // …and the crowd beyond the burst takes at least (CLIENTS - BURST) / PER_SECOND seconds to get in.
    const spanMs = (backendConnects.at(-1) ?? 0) - (backendConnects[0] ?? 0);
    expect(spanMs).toBeGreaterThanOrEqual(((CLIENTS - BURST) / PER_SECOND) * 1000 * (2 - SLACK));

    // Every refusal was the process limit's 503 with a whole-second Retry-After, and B counted each one.
    expect(refusals.length).toBeGreaterThan(0);
    expect(new Set(refusals.map((r) => r.status))).toEqual(new Set([503]));
    for (const r of refusals) expect(r.retryAfter).toMatch(/^[1-9][0-9]*$/);
    expect(bRefusals.length).toBe(refusals.length);
    // Retry-After queues the crowd (1 s for the first second's worth, 2 s for the next…), so a client is refused
    // about once: at most the crowd beyond the burst, with room for late arrivals that take a promised token.
    // A flat "Retry-After: 1" brings everyone back each second and costs about twice as many here.
    expect(refusals.length).toBeLessThanOrEqual((CLIENTS - BURST) * 1.2);
    expect(metricValue(metrics, 'wsgate_connection_rate_limited_total', { scope: 'process' })).toBe(refusals.length);
    expect(metricValue(metrics, 'wsgate_connection_rate_limited_total', { scope: 'ip' })).toBe(0);
  }, 180_000);
});
