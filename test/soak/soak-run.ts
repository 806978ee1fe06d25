// The soak (issue 7): opens and closes many connections against a gateway in a child process, across every way a
// connection ends (normal close, handshake refusal, rate-limit close 1008, backend killed → 1014, client abort),
// then checks that the child's open fds, active handles, heap after GC and every wsgate_connections_active gauge
// are back at their baseline. Used by `npm run soak` (minutes) and test/soak/short.test.ts (seconds).

import { connect, type Socket } from 'node:net';
import { type RawBackend, startEchoBackend, startRawBackend, type TestBackend } from '../helpers/backends.js';
import { type ChildGateway, spawnGateway } from '../helpers/child-gateway.js';
import { closeCodeIn, frame } from '../helpers/frames.js';
import type { ChildStats } from '../helpers/gateway-process.js';
import { switchingProtocols } from '../helpers/hostile-backends.js';
import { upgradeRequest } from '../helpers/raw-client.js';

export const KINDS = ['normal', 'refused', 'rate_limited', 'backend_killed', 'client_abort'] as const;
export type Kind = (typeof KINDS)[number];

export interface SoakOptions {
  /** Connections to open in total (spread evenly over KINDS). */
  connections: number;
  /** Connections in flight at once. */
  concurrency: number;
  /** Progress lines to stderr every this many connections (0: quiet). */
  progressEvery?: number;
}

export interface SoakReport {
  connections: number;
  seconds: number;
  perKind: Record<Kind, { ok: number; unexpected: number }>;
  unexpectedSamples: string[];
  baseline: ChildStats;
  after: ChildStats;
  /** Every wsgate_connections_active sample after the run (all must be 0). */
  activeGauges: number[];
}

/** Opens one connection of `kind` and resolves with '' when it ended as that kind must, else what happened. */
function runOne(port: number, kind: Kind, localAddress: string): Promise<string> {
  return new Promise((resolve) => {
    const path = kind === 'rate_limited' ? '/limited' : kind === 'backend_killed' ? '/flaky' : '/ok';
    const request =
      kind === 'refused'
        ? upgradeRequest({ path, headers: { 'Sec-WebSocket-Version': '8' } })
        : upgradeRequest({ path });
    const socket: Socket = connect({ port, host: '127.0.0.1', localAddress });
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (problem: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(() => done(`${kind}: timed out`), 15_000);
    socket.on('error', (err: NodeJS.ErrnoException) => done(`${kind}: ${err.code ?? err.message}`));
    let switched = false;
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const all = Buffer.concat(chunks);
      if (!switched) {
        const end = all.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = all.toString('latin1', 9, 12);
        if (kind === 'refused') return done(status === '426' ? '' : `refused: status ${status}`);
        if (status !== '101') return done(`${kind}: status ${status}`);
        switched = true;
        chunks.length = 0;
        chunks.push(all.subarray(end + 4));
        if (kind === 'client_abort') return done('');
        if (kind === 'normal') socket.write(frame(1, 'ping-pong'));
        if (kind === 'rate_limited') socket.write(Buffer.concat([frame(1, 'a'), frame(1, 'b'), frame(1, 'c')]));
      }
      const frames = Buffer.concat(chunks);
      if (kind === 'normal' && frames.includes('ping-pong') && frames.length >= 11) {
        socket.end(frame(8, Buffer.from([0x03, 0xe8])));
      }
    });
    socket.once('close', () => {
      if (settled) return;
      const code = closeCodeIn(Buffer.concat(chunks));
      const want = kind === 'normal' ? 1000 : kind === 'rate_limited' ? 1008 : 1014;
      done(switched && (code === want || (kind === 'normal' && code === undefined)) ? '' : `${kind}: close ${code}`);
    });
    socket.write(request);
  });
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const echo: TestBackend = await startEchoBackend('echo', { welcome: false });
  // Accepts, then dies 5 ms later without a close frame: the client must get 1014.
  const flaky: RawBackend = await startRawBackend((request, socket) => {
    setTimeout(() => socket.destroy(), 5);
    return switchingProtocols(request);
  });
  // The raw backend records every byte by default; keep the soak's own memory flat.
  const received = flaky.received as Buffer[][];
  const child: ChildGateway = await spawnGateway(
    {
      listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
      admin: { address: '127.0.0.1', port: 0 },
      routes: [
        {
          name: 'limited',
          match: { path: '/limited' },
          pool: 'echo',
          limits: { perConnection: { messagesPerSecond: 1, burstMessages: 1, onExceed: 'close' } },
        },
        { name: 'flaky', match: { path: '/flaky' }, pool: 'flaky' },
        { name: 'ok', match: { path: '/ok' }, pool: 'echo' },
      ],
      pools: { echo: { backends: [echo.url] }, flaky: { backends: [flaky.url] } },
      limits: { maxConnections: 100_000, maxConnectionsPerIp: 100_000 },
      timeouts: { handshake: '5s', idle: '60s', drain: '2s' },
    },
    { exposeGc: true, logLevel: 'warn' },
  );
  try {
    const perKind = Object.fromEntries(KINDS.map((k) => [k, { ok: 0, unexpected: 0 }])) as SoakReport['perKind'];
    const unexpectedSamples: string[] = [];
    const runBatch = async (total: number, count: boolean) => {
      let next = 0;
      const worker = async (w: number) => {
        const localAddress = `127.0.0.${1 + (w % 8)}`;
        while (next < total) {
          const i = next++;
          const kind = KINDS[i % KINDS.length] as Kind;
          const problem = await runOne(child.port, kind, localAddress);
          if (!count) continue;
          if (problem === '') perKind[kind].ok++;
          else {
            perKind[kind].unexpected++;
            if (unexpectedSamples.length < 20) unexpectedSamples.push(problem);
          }
          if (options.progressEvery && (i + 1) % options.progressEvery === 0) {
            process.stderr.write(`soak: ${i + 1}/${total}\n`);
          }
          if (received.length > 1000) received.splice(0, received.length);
        }
      };
      await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
    };
    // Warm up (JIT, metric children, pools), then take the baseline.
    await runBatch(Math.min(500, options.connections), false);
    const baseline = await settledStats(child);
    const started = performance.now();
    await runBatch(options.connections, true);
    const seconds = (performance.now() - started) / 1000;
    const after = await settledStats(child);
    const activeGauges = after.metrics
      .split('\n')
      .filter((l) => l.startsWith('wsgate_connections_active{'))
      .map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
    return { connections: options.connections, seconds, perKind, unexpectedSamples, baseline, after, activeGauges };
  } finally {
    await child.stop();
    await echo.close();
    await flaky.close();
  }
}

/** Child stats once no tunnel is left (closing handshakes take a moment), after GC. */
async function settledStats(child: ChildGateway): Promise<ChildStats> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const stats = await child.stats();
    if ((stats.tunnels === 0 && stats.admitted === 0) || Date.now() > deadline) {
      await new Promise((r) => setTimeout(r, 300));
      return child.stats();
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Problems with a report: leaks and unexpected endings. Empty when the soak passed. */
export function soakProblems(report: SoakReport, heapSlackBytes: number): string[] {
  const problems: string[] = [];
  const { baseline, after } = report;
  if (after.tunnels !== 0) problems.push(`${after.tunnels} tunnels left`);
  if (after.admitted !== 0) problems.push(`${after.admitted} admission slots left`);
  if (report.activeGauges.some((v) => v !== 0)) problems.push(`active gauges ${report.activeGauges.join(',')}`);
  if (after.fds > baseline.fds + 2) problems.push(`fds ${baseline.fds} → ${after.fds}`);
  for (const [kind, n] of Object.entries(after.resources)) {
    const before = baseline.resources[kind] ?? 0;
    if (n > before + 2) problems.push(`handles ${kind} ${before} → ${n}`);
  }
  if (after.heapUsed > baseline.heapUsed + heapSlackBytes) {
    problems.push(`heap ${mib(baseline.heapUsed)} → ${mib(after.heapUsed)} MiB`);
  }
  if (after.arrayBuffers > baseline.arrayBuffers + heapSlackBytes) {
    problems.push(`array buffers ${mib(baseline.arrayBuffers)} → ${mib(after.arrayBuffers)} MiB`);
  }
  for (const [kind, r] of Object.entries(report.perKind)) {
    if (r.unexpected > 0) problems.push(`${kind}: ${r.unexpected} unexpected endings`);
  }
  return problems;
}

export function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
