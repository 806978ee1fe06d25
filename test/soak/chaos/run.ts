// The chaos soak (issue 19): the quiet soak's end-of-run checks, with the world changing underneath. wsgate runs as
// the built CLI with `workers: 2` (a real primary and two real workers), three pools (static with bounded loads,
// static changed by reloads, DNS-discovered) with health checks, outlier ejection, gradual rebalancing and limits,
// in front of backends that are child processes. Clients cycle through connections while the scheduler fires
// events; the ledger judges every ending; after a quiet period the gauges, every process's fds and handles
// (timers included), heap and the /metrics counters are checked against the baseline and what clients saw.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { type CliProcess, ensureBuilt, runCli } from '../../helpers/child-gateway.js';
import { startDnsStub } from '../../helpers/dns-stub.js';
import { delay } from '../../helpers/wait.js';
import { BackendProcess } from './backends.js';
import {
  compareMetrics,
  compareProcesses,
  compareRates,
  type MetricsComparison,
  measureRates,
  RATE_WINDOW_MS,
  type TimerRates,
} from './checks.js';
import { planCycle, planLong, runConnection, type Target } from './clients.js';
import { type ConfigModel, configFor, DNS_NAME, DNS_SETS, DRAIN_MS, fire, type World } from './events.js';
import { Ledger } from './ledger.js';
import { ProcessProbe, type ProcessSnapshot } from './probe-client.js';
import { EventLog, Random, Scheduler } from './scheduler.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface ChaosOptions {
  readonly seed: number;
  /** Connection cycles to complete (long-lived connections not counted). */
  readonly cycles: number;
  /** Stop after this many seconds even if `cycles` are not done (0: no cap). */
  readonly seconds: number;
  /** Cycles in flight at once. */
  readonly concurrency: number;
  /** Long-lived connections kept open (each reopened when it ends). */
  readonly longLived: number;
  /** Pause between events: min + a random share of spread (ms). */
  readonly eventMinMs: number;
  readonly eventSpreadMs: number;
  /** Progress to stderr every this many cycles (0: quiet). */
  readonly progressEvery: number;
}

export interface ChaosReport {
  readonly seed: number;
  readonly cycles: number;
  readonly longConnections: number;
  readonly seconds: number;
  readonly events: Record<string, number>;
  readonly endings: Record<string, number>;
  readonly problems: string[];
  readonly eventLog: string[];
  readonly checks: string[];
  readonly baseline: Record<string, ProcessSnapshot>;
  readonly after: Record<string, ProcessSnapshot>;
  readonly metrics: MetricsComparison;
  /** Health checks per backend and DNS queries in a window, at the baseline and after the quiet period. */
  readonly rates: readonly [TimerRates, TimerRates];
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  await ensureBuilt();
  const log = new EventLog();
  const ledger = new Ledger();
  const dns = await startDnsStub();
  dns.records.set(DNS_NAME, [...(DNS_SETS[0] as string[])]);
  const backends = new Map<string, BackendProcess>();
  for (const id of ['a1', 'a2', 'b1', 'b2', 'b3']) backends.set(id, await BackendProcess.start(id, '127.0.0.1'));
  const d2 = await BackendProcess.start('d2', '127.0.0.2');
  backends.set('d2', d2);
  backends.set('d3', await BackendProcess.start('d3', '127.0.0.3', d2.port));
  const model: ConfigModel = { b3: false, extra: '/x1' };
  ledger.routeRemoved('/x2', 0);
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-chaos-'));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, stringify(configFor(model, backends, dns)));
  const probeDir = dir;
  const cli: CliProcess = runCli(configFile, ['--no-watch'], {
    env: { NODE_OPTIONS: `--import ${join(here, 'probe.ts')}`, WSGATE_PROBE_DIR: probeDir },
  });
  // The gateway's log lines are kept by runCli; a long run must not keep them all.
  const trimLogs = setInterval(() => {
    if (cli.lines.length > 2000) cli.lines.splice(0, cli.lines.length - 500);
    if (cli.logs.length > 2000) cli.logs.splice(0, cli.logs.length - 500);
  }, 5000);
  try {
    const { port, adminPort } = await cli.ready();
    const localAddresses = Array.from({ length: 16 }, (_, i) => `127.0.0.${10 + i}`);
    const target: Target = { port, ledger, localAddresses };
    const world: World = {
      target,
      adminPort,
      primaryPid: cli.child.pid ?? 0,
      configFile,
      backends,
      dns,
      ledger,
      log,
      model,
      dnsSet: 0,
      lastWorkerKill: Number.NEGATIVE_INFINITY,
      lostSpans: [],
      configLock: Promise.resolve(),
      problems: [],
      hostileStatuses: new Map(),
      vanished: 0,
    };
    const probe = new ProcessProbe(probeDir, adminPort);
    const random = new Random(options.seed);
    const runCycles = async (total: number, deadline: number) => {
      let started = 0;
      let done = 0;
      let shownProblems = 0;
      const worker = async () => {
        while (started < total && performance.now() < deadline) {
          started++;
          await runConnection(target, planCycle(random, localAddresses, ['/x1', '/x2']), () => false);
          done++;
          if (options.progressEvery && done % options.progressEvery === 0) {
            process.stderr.write(
              `chaos: ${done}/${total} cycles, ${ledger.problemCount} problems, ${(performance.now() / 1000).toFixed(0)} s\n`,
            );
            // A long run shows its first problems as they come, not an hour later in the report.
            for (; shownProblems < ledger.problems.length; shownProblems++) {
              process.stderr.write(`  problem: ${ledger.problems[shownProblems]}\n`);
            }
          }
        }
      };
      await Promise.all(Array.from({ length: options.concurrency }, worker));
      return done;
    };

    // Warm up on the quiet system (JIT, metric children, pools), then take the baseline.
    await runCycles(Math.min(300, options.cycles), Number.POSITIVE_INFINITY);
    await delay(1500);
    const baseline = await probe.settled();
    const baseRates = await measureRates(backends, dns);
    for (const b of backends.values()) b.baselineFds = b.fds();
    const warmEndings = new Map(ledger.endings);

    const t0 = performance.now();
    const scheduler = new Scheduler({
      seed: options.seed,
      minMs: options.eventMinMs,
      spreadMs: options.eventSpreadMs,
      log,
      fire: (k, r) => fire(world, k, r),
    });
    scheduler.start();
    let stopping = false;
    let longConnections = 0;
    const longRunners = Array.from({ length: options.longLived }, async () => {
      while (!stopping) {
        longConnections++;
        await runConnection(target, planLong(random, localAddresses), () => stopping);
      }
    });
    const cycles = await runCycles(
      options.cycles,
      options.seconds > 0 ? t0 + options.seconds * 1000 : Number.POSITIVE_INFINITY,
    );
    stopping = true;
    await scheduler.stop();
    await Promise.all(longRunners);
    const seconds = (performance.now() - t0) / 1000;

    // Back to the starting world: every backend up, the first config and DNS answer; then the quiet period.
    for (const b of backends.values()) if (!b.alive) await b.spawn();
    dns.records.set(DNS_NAME, [...(DNS_SETS[0] as string[])]);
    await world.configLock;
    model.b3 = false;
    model.extra = '/x1';
    writeFileSync(configFile, stringify(configFor(model, backends, dns)));
    const reload = await fetch(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' });
    if (reload.status !== 200) world.problems.push(`final reload answered ${reload.status}`);
    log.add('quiet period');
    await delay(DRAIN_MS + 8000);
    const after = await probe.settled();
    const rates = await measureRates(backends, dns);
    const checks: string[] = [];
    compareProcesses(baseline, after, checks);
    compareRates(baseRates, rates, checks);
    for (const b of backends.values()) {
      const fds = b.fds();
      if (fds > b.baselineFds + 1) checks.push(`backend ${b.id} fds ${b.baselineFds} → ${fds}`);
    }
    const metricsText = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const metrics = compareMetrics(metricsText, ledger, world.hostileStatuses, world.vanished, world.lostSpans, checks);
    const endings = Object.fromEntries(
      [...ledger.endings].map(([k, v]) => [k, v - (warmEndings.get(k) ?? 0)]).filter(([, v]) => (v as number) > 0),
    );
    return {
      seed: options.seed,
      cycles,
      longConnections,
      seconds,
      events: Object.fromEntries(ledger.fired),
      endings,
      problems: [...ledger.problems, ...world.problems],
      eventLog: log.lines,
      checks,
      baseline,
      after,
      metrics,
      rates: [baseRates, rates],
    };
  } finally {
    clearInterval(trimLogs);
    cli.kill('SIGTERM');
    const timer = setTimeout(() => cli.kill('SIGKILL'), 10_000);
    await cli.exited;
    clearTimeout(timer);
    for (const b of backends.values()) await b.stop();
    await dns.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Everything wrong with a run (empty: it passed). */
export function chaosProblems(report: ChaosReport): string[] {
  return [...report.problems, ...report.checks];
}

/** The report as text; on failure with the seed and the event log, to replay it (`npm run soak -- --chaos --seed K`). */
export function formatChaos(report: ChaosReport): string {
  const problems = chaosProblems(report);
  const table = (o: Record<string, unknown>) =>
    Object.entries(o).map(([k, v]) => `  ${k}: ${Array.isArray(v) ? `clients ${v[0]}, /metrics ${v[1]}` : v}`);
  const snap = (name: string) => {
    const b = report.baseline[name];
    const a = report.after[name];
    if (!a) return `  ${name}: gone`;
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    return `  ${name} (pid ${b?.pid ?? '?'} → ${a.pid}): fds ${b?.fds ?? '?'} → ${a.fds}, handles ${JSON.stringify(b?.resources)} → ${JSON.stringify(a.resources)}, heap ${b ? mb(b.heapUsed) : '?'} → ${mb(a.heapUsed)} MiB, array buffers ${b ? mb(b.arrayBuffers) : '?'} → ${mb(a.arrayBuffers)} MiB`;
  };
  const lines = [
    `seed ${report.seed}: ${report.cycles} cycles and ${report.longConnections} long-lived connections in ${report.seconds.toFixed(1)} s (${Math.round(report.cycles / report.seconds)} cycles/s)`,
    'events fired:',
    ...table(report.events),
    'endings (close code or status, and the cause the ledger found):',
    ...table(report.endings),
    `/metrics against clients (slack from killed workers' unscraped spans: ${report.metrics.slack}):`,
    '  closes by code:',
    ...table(report.metrics.closes).map((l) => `  ${l}`),
    '  refusals by status:',
    ...table(report.metrics.rejections).map((l) => `  ${l}`),
    `  crossed closes (client's 1000 met the gateway's code): ${JSON.stringify(report.metrics.crossed)}`,
    `  live gauges: ${JSON.stringify(report.metrics.liveGauges)}`,
    `health checks per backend in ${RATE_WINDOW_MS} ms: ${JSON.stringify(report.rates[0].health)} → ${JSON.stringify(report.rates[1].health)}; DNS queries ${report.rates[0].dnsQueries} → ${report.rates[1].dnsQueries}`,
    'processes (baseline → after the quiet period):',
    ...Object.keys(report.after).map(snap),
  ];
  if (problems.length === 0) return [...lines, 'PASS'].join('\n');
  return [
    ...lines,
    `FAIL (seed ${report.seed}; replay: npm run soak -- --chaos --seed ${report.seed}):`,
    ...problems.map((p) => `  ${p}`),
    'event log:',
    ...report.eventLog,
  ].join('\n');
}
