// wsgate's benchmark harness: starts the echo backend, wsgate, nginx and HAProxy on loopback, drives them with
// our own raw-socket WebSocket load generator (bench/loadgen/) and reports messages/s, latency, CPU per message,
// handshakes/s (ws, wss RSA-2048 / ECDSA P-256) and memory per idle connection, side by side in one run; plain
// HTTP GETs (the long-poll path) are driven by autocannon.
//
//   npm run bench                                   everything (about 13 minutes), updates BENCHMARKS.md and docs/bench.svg
//   npm run bench -- --only echo,idle --targets wsgate,nginx
//   npm run bench:smoke                             a few seconds, direct + wsgate only; exit 1 if numbers are not sane
//   npm run bench -- --help
//
// Results: bench/results/latest.json (+ latest.md, latest.svg); logs and configs of the targets stay in a temp dir.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateCerts } from './harness/certs.js';
import { formatProfile, summariseCpuProfile } from './harness/cpu-profile.js';
import {
  type EchoSettings,
  echoRun,
  type HandshakeSettings,
  type HttpSettings,
  handshakeRun,
  httpRun,
  type IdleSettings,
  idleRun,
  perfInstructionsSupported,
  pooledHandshakes,
  type RunSettings,
} from './harness/modes.js';
import { fdLimit, hasTaskset } from './harness/processes.js';
import { evaluateChecks, markdownReport, svgChart, textReport } from './harness/report.js';
import type {
  BenchResults,
  EchoResult,
  HandshakeKind,
  HandshakeResult,
  HttpResult,
  IdleResult,
  Machine,
  ProfileSummary,
  Transport,
  WsgateFeatures,
} from './harness/results.js';
import {
  PACKAGE_ROOT,
  peerVersions,
  type RunningTarget,
  TARGETS,
  type TargetContext,
  type TargetSpec,
} from './harness/targets.js';

const MODES = ['echo', 'handshake', 'idle', 'http', 'profile', 'profile-handshake'] as const;
type Mode = (typeof MODES)[number];
const HANDSHAKE_KINDS: readonly HandshakeKind[] = ['ws', 'wss-rsa2048', 'wss-ecdsa-p256'];
const SMOKE_TARGETS = ['direct', 'wsgate'];
const RESULTS_DIR = join(PACKAGE_ROOT, 'bench', 'results');
const DOCS_SVG = join(PACKAGE_ROOT, 'docs', 'bench.svg');
const BENCHMARKS_MD = join(PACKAGE_ROOT, 'BENCHMARKS.md');
const MD_START = '<!-- bench:results:start -->';
const MD_END = '<!-- bench:results:end -->';

const HELP = `wsgate benchmark harness

  --only MODES          comma list of echo,handshake,idle,http,profile,profile-handshake (default: all but
                        profile-handshake: wsgate under the ws handshake load with --cpu-prof)
  --targets NAMES       comma list of ${TARGETS.map((t) => t.name).join(',')} (default: all)
  --smoke               a few seconds, direct + wsgate only, asserts sane numbers (exit 1 otherwise)
  --connections N       echo connections (default 100)
  --size BYTES          echo message size (default 64)
  --window W            echo messages in flight per connection, closed loop (default 8)
  --rate R              offered messages/s of the fixed-rate echo run, all connections (default 20000)
  --seconds S           echo measured seconds per run (default 6; warm-up 2)
  --hs-concurrency N    parallel handshake loops (default 32)
  --hs-seconds S        handshake measured seconds (default 4; warm-up 1)
  --http-connections N  plain HTTP (autocannon) connections (default 32; measured 4 s after a 1 s warm-up)
  --idle LIST           idle sizes for ws, "max" = what the fd limit allows (default 1000,5000,max)
  --idle-tls LIST       idle sizes for wss (default 1000,5000; "none" to skip)
  --generators N        load-generator processes (default 2)
  --no-pin              do not pin processes to CPUs with taskset
  --docs / --no-docs    update BENCHMARKS.md and docs/bench.svg (default: only for a full run)
  --keep                keep the temp dir with target configs and logs
  --from FILE           measure nothing: re-render the tables (and with --docs, BENCHMARKS.md and docs/bench.svg)
                        from a results JSON such as bench/results/latest.json`;

interface Options {
  readonly smoke: boolean;
  readonly modes: ReadonlySet<Mode>;
  readonly targets: readonly TargetSpec[];
  readonly echo: EchoSettings;
  readonly handshake: HandshakeSettings;
  readonly http: HttpSettings;
  readonly idle: IdleSettings;
  readonly idleWs: readonly (number | 'max')[];
  readonly idleWss: readonly number[];
  readonly run: RunSettings;
  readonly docs: boolean;
  readonly keep: boolean;
  readonly from: string | undefined;
}

function list(text: string | undefined): string[] | undefined {
  return text === undefined
    ? undefined
    : text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
}

function positive(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got "${text}"`);
  return n;
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      targets: { type: 'string' },
      smoke: { type: 'boolean', default: false },
      connections: { type: 'string' },
      size: { type: 'string' },
      window: { type: 'string' },
      rate: { type: 'string' },
      seconds: { type: 'string' },
      'hs-concurrency': { type: 'string' },
      'hs-seconds': { type: 'string' },
      'http-connections': { type: 'string' },
      idle: { type: 'string' },
      'idle-tls': { type: 'string' },
      generators: { type: 'string' },
      'no-pin': { type: 'boolean', default: false },
      docs: { type: 'boolean' },
      'no-docs': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      from: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const smoke = values.smoke;
  const onlyList = list(values.only);
  for (const m of onlyList ?? []) {
    if (!(MODES as readonly string[]).includes(m)) throw new Error(`--only: unknown mode "${m}" (${MODES.join(', ')})`);
  }
  const modes = new Set<Mode>(
    (onlyList as Mode[] | undefined) ??
      (smoke ? ['echo', 'handshake', 'idle', 'http'] : MODES.filter((m) => m !== 'profile-handshake')),
  );
  const targetNames = list(values.targets) ?? (smoke ? SMOKE_TARGETS : TARGETS.map((t) => t.name));
  const targets = targetNames.map((n) => {
    const spec = TARGETS.find((t) => t.name === n);
    if (!spec) throw new Error(`--targets: unknown target "${n}" (${TARGETS.map((t) => t.name).join(', ')})`);
    return spec;
  });
  const seconds = positive(values.seconds, smoke ? 0.5 : 6, 'seconds');
  const hsSeconds = positive(values['hs-seconds'], smoke ? 0.4 : 4, 'hs-seconds');
  const idleWs = (list(values.idle) ?? (smoke ? ['100'] : ['1000', '5000', 'max'])).map((s) =>
    s === 'max' ? ('max' as const) : positive(s, 0, 'idle'),
  );
  const idleTls = list(values['idle-tls']) ?? (smoke ? ['none'] : ['1000', '5000']);
  const idleWss = idleTls.includes('none') ? [] : idleTls.map((s) => positive(s, 0, 'idle-tls'));
  const full = values.only === undefined && values.targets === undefined && !smoke;
  return {
    smoke,
    modes,
    targets,
    echo: {
      connections: positive(values.connections, smoke ? 8 : 100, 'connections'),
      payloadBytes: positive(values.size, 64, 'size'),
      window: positive(values.window, smoke ? 4 : 8, 'window'),
      rate: positive(values.rate, smoke ? 2000 : 20_000, 'rate'),
      warmupMs: smoke ? 100 : 2000,
      measureMs: seconds * 1000,
    },
    handshake: {
      concurrency: positive(values['hs-concurrency'], smoke ? 4 : 32, 'hs-concurrency'),
      warmupMs: smoke ? 100 : 1000,
      measureMs: hsSeconds * 1000,
    },
    http: {
      connections: positive(values['http-connections'], smoke ? 4 : 32, 'http-connections'),
      warmupMs: 1000,
      measureMs: smoke ? 1000 : 4000,
    },
    idle: { settleMs: smoke ? 300 : 2000 },
    idleWs,
    idleWss,
    run: { generators: positive(values.generators, smoke ? 1 : 2, 'generators'), pin: !values['no-pin'] },
    docs: values['no-docs'] ? false : (values.docs ?? full),
    keep: values.keep,
    from: values.from,
  };
}

function machine(pinned: boolean, limit: number): Machine {
  const v = peerVersions();
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: totalmem() / 1024 ** 3,
    kernel: release(),
    node: process.version,
    nginx: v.nginx,
    haproxy: v.haproxy,
    openssl: v.openssl,
    fdLimit: limit,
    perfInstructions: perfInstructionsSupported() ? 'supported' : 'not supported',
    pinned,
  };
}

function wsgateFeatures(ctx: TargetContext): WsgateFeatures {
  let tunnel = '';
  try {
    tunnel = readFileSync(join(PACKAGE_ROOT, 'dist', 'src', 'tunnel', 'tunnel.js'), 'utf8');
  } catch {
    // not built: both false
  }
  const workers = TARGETS.find((t) => t.name === 'wsgate-2w')?.unavailable(ctx) === undefined;
  return {
    frameScanningInTunnel: /FrameScanner/.test(tunnel),
    limitsInTunnel: /TokenBucket|tokenBucket|token-bucket/.test(tunnel),
    workers,
  };
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Starts a target, runs `body`, stops it whatever happens. */
async function withTarget<T>(
  spec: TargetSpec,
  ctx: TargetContext,
  body: (t: RunningTarget) => Promise<T>,
  cpuProfileDir?: string,
): Promise<T> {
  const target = await spec.start(ctx, cpuProfileDir === undefined ? {} : { cpuProfileDir });
  try {
    return await body(target);
  } finally {
    await target.stop();
  }
}

function describeEcho(e: EchoResult): string {
  return `${e.target} echo ${e.transport} ${e.load === 'max' ? 'max' : `at ${e.offeredPerSecond}/s`}: ${Math.round(e.messagesPerSecond)} msg/s, p50 ${e.p50Us} µs, p99 ${e.p99Us} µs, CPU ${(e.cpuSecondsPer1kMessages * 1000).toFixed(2)} ms/1k (${Math.round(e.cpuCoreShare * 100)}% core)${e.errors + e.dropped + e.failedToOpen > 0 ? `, errors ${e.errors}, dropped ${e.dropped}, failed ${e.failedToOpen} (${e.firstError})` : ''}`;
}

function describeHandshake(h: HandshakeResult): string {
  return `${h.target} handshake ${h.kind}: ${Math.round(h.handshakesPerSecond)}/s, p50 ${h.p50Us} µs, p99 ${h.p99Us} µs, CPU ${(h.cpuSecondsPer1kHandshakes * 1000).toFixed(1)} ms/1k${h.errors > 0 ? `, errors ${h.errors} (${h.firstError})` : ''}`;
}

function describeHttp(h: HttpResult): string {
  return `${h.target} http: ${Math.round(h.requestsPerSecond)} req/s, p50 ${h.p50Us} µs, p99 ${h.p99Us} µs, CPU ${(h.cpuSecondsPer1kRequests * 1000).toFixed(1)} ms/1k${h.errors > 0 ? `, errors ${h.errors}` : ''}`;
}

function describeIdle(i: IdleResult): string {
  return `${i.target} idle ${i.transport} ${i.requested}: opened ${i.opened}, ${(i.bytesPerConnection / 1024).toFixed(1)} KiB/conn (RSS ${(i.rssBeforeBytes / 2 ** 20).toFixed(1)} → ${(i.rssAfterBytes / 2 ** 20).toFixed(1)} MiB)${i.failed + i.dropped > 0 ? `, failed ${i.failed}, dropped ${i.dropped} (${i.firstError})` : ''}`;
}

/** Sanity of a smoke run: every figure present, positive and finite, nothing failed. Returns the problems. */
function smokeProblems(r: BenchResults, o: Options): string[] {
  const problems: string[] = [];
  const ok = (v: number) => Number.isFinite(v) && v > 0;
  for (const t of o.targets.map((s) => s.name)) {
    if (o.modes.has('echo')) {
      for (const [load, tr] of [
        ['rate', 'ws'],
        ['rate', 'wss'],
        ['max', 'ws'],
        ['max', 'wss'],
      ] as const) {
        const e = r.echo.find((x) => x.target === t && x.transport === tr && x.load === load);
        if (!e) problems.push(`${t} echo ${tr} ${load}: no result`);
        else if (
          !ok(e.messagesPerSecond) ||
          !ok(e.p50Us) ||
          !ok(e.p99Us) ||
          !(e.cpuSeconds >= 0) ||
          e.failedToOpen > 0 ||
          e.dropped > 0
        ) {
          problems.push(`not sane: ${describeEcho(e)}`);
        }
      }
    }
    if (o.modes.has('handshake')) {
      for (const k of HANDSHAKE_KINDS) {
        const h = r.handshake.find((x) => x.target === t && x.kind === k);
        if (!h) problems.push(`${t} handshake ${k}: no result`);
        else if (!ok(h.handshakesPerSecond) || !ok(h.p50Us) || h.errors > 0)
          problems.push(`not sane: ${describeHandshake(h)}`);
      }
    }
    if (o.modes.has('http')) {
      const h = r.http?.find((x) => x.target === t);
      if (!h) problems.push(`${t} http: no result`);
      // autocannon's latencies are whole milliseconds: 0 is a fair p99 for a fast target.
      else if (!ok(h.requestsPerSecond) || !(h.p99Us >= 0) || h.errors > 0)
        problems.push(`not sane: ${describeHttp(h)}`);
    }
    if (o.modes.has('idle')) {
      for (const i of r.idle.filter((x) => x.target === t)) {
        if (i.opened !== i.requested || !Number.isFinite(i.bytesPerConnection) || !ok(i.rssAfterBytes)) {
          problems.push(`not sane: ${describeIdle(i)}`);
        }
      }
      if (!r.idle.some((x) => x.target === t)) problems.push(`${t} idle: no result`);
    }
  }
  return problems;
}

function newestCpuProfile(dir: string): string | undefined {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
  return files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
}

/** Tables on stdout, latest.md/.svg in bench/results/, and with --docs BENCHMARKS.md and docs/bench.svg. */
function publish(results: BenchResults, o: Options, profileText: string | null): void {
  const md = markdownReport(results, profileText);
  const svg = svgChart(results);
  if (!o.smoke) {
    writeFileSync(join(RESULTS_DIR, 'latest.md'), md);
    writeFileSync(join(RESULTS_DIR, 'latest.svg'), svg);
  }
  process.stdout.write(`\n${textReport(results)}\n`);
  if (profileText) process.stdout.write(`\n${profileText}\n`);

  if (o.docs && !o.smoke) {
    mkdirSync(join(PACKAGE_ROOT, 'docs'), { recursive: true });
    writeFileSync(DOCS_SVG, svg);
    const current = readFileSync(BENCHMARKS_MD, 'utf8');
    const a = current.indexOf(MD_START);
    const b = current.indexOf(MD_END);
    if (a !== -1 && b > a) {
      writeFileSync(BENCHMARKS_MD, `${current.slice(0, a + MD_START.length)}\n${md}\n${current.slice(b)}`);
      log('bench: updated BENCHMARKS.md and docs/bench.svg');
    } else log(`bench: BENCHMARKS.md has no ${MD_START} … ${MD_END} section; left as is`);
  }
}

async function main(): Promise<number> {
  let o: Options | 'help';
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    log(`bench: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (o === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (o.from !== undefined) {
    const loaded = JSON.parse(readFileSync(o.from, 'utf8')) as BenchResults;
    const results = { ...loaded, checks: evaluateChecks(loaded) };
    publish(results, o, results.profile ? formatProfile(results.profile) : null);
    return 0;
  }
  const startedAt = new Date().toISOString();
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-bench-'));
  const limit = fdLimit();
  const pinned = o.run.pin && hasTaskset();
  log(
    `bench: temp dir ${dir}; ulimit -n ${limit}; pinning ${pinned ? 'on (proxy: CPU 1, backend + generators: CPU 0)' : 'off'}`,
  );
  const certs = generateCerts(dir);
  const ctx: TargetContext = { dir, certs, pin: o.run.pin, fdLimit: limit, log };

  const skipped: { target: string; reason: string }[] = [];
  const runnable: TargetSpec[] = [];
  for (const spec of o.targets) {
    const reason = spec.unavailable(ctx);
    if (reason === undefined) runnable.push(spec);
    else {
      skipped.push({ target: spec.name, reason });
      log(`bench: skipping ${spec.name}: ${reason}`);
    }
  }
  const features = wsgateFeatures(ctx);
  const echo: EchoResult[] = [];
  const handshake: HandshakeResult[] = [];
  const idle: IdleResult[] = [];
  const http: HttpResult[] = [];
  let profile: ProfileSummary | null = null;
  let profileText: string | null = null;
  // The most connections every target can hold: the proxy needs two descriptors per connection.
  const maxIdle = Math.floor((limit - 500) / 2 / 100) * 100;

  try {
    if (o.modes.has('echo')) {
      for (const spec of runnable) {
        await withTarget(spec, ctx, async (target) => {
          for (const load of ['rate', 'max'] as const) {
            for (const transport of ['ws', 'wss'] as const) {
              const r = await echoRun(target, transport, load, o.echo, o.run);
              echo.push(r);
              log(describeEcho(r));
            }
          }
        });
      }
    }
    if (o.modes.has('handshake')) {
      // Every handshake leaves two sockets in TIME_WAIT for 60 s, and the pile makes connect() dearer for whoever
      // comes later. So each target is measured twice, in the target order and then in reverse (no target is always
      // last), and the two measurements are pooled.
      const first = new Map<string, HandshakeResult>();
      for (const order of [runnable, [...runnable].reverse()]) {
        for (const spec of order) {
          await withTarget(spec, ctx, async (target) => {
            for (const kind of HANDSHAKE_KINDS) {
              const r = await handshakeRun(target, kind, o.handshake, o.run);
              log(describeHandshake(r));
              const key = `${spec.name} ${kind}`;
              const earlier = first.get(key);
              if (earlier === undefined) first.set(key, r);
              else handshake.push(pooledHandshakes(earlier, r));
            }
          });
        }
      }
      const names = runnable.map((s) => s.name);
      handshake.sort((a, b) => names.indexOf(a.target) - names.indexOf(b.target));
    }
    if (o.modes.has('idle')) {
      const plans: { transport: Transport; n: number }[] = [
        ...o.idleWs.map((n) => ({ transport: 'ws' as const, n: n === 'max' ? maxIdle : n })),
        ...o.idleWss.map((n) => ({ transport: 'wss' as const, n })),
      ];
      for (const plan of plans) {
        for (const spec of runnable) {
          // A fresh process per size, so memory from earlier work is not in the "before".
          const r = await withTarget(spec, ctx, (target) => idleRun(target, plan.transport, plan.n, o.idle, o.run));
          idle.push(r);
          log(describeIdle(r));
        }
      }
    }
    if (o.modes.has('http')) {
      for (const spec of runnable) {
        const r = await withTarget(spec, ctx, (target) => httpRun(target, o.http, o.run));
        http.push(r);
        log(describeHttp(r));
      }
    }
    /** Runs `load` against wsgate under --cpu-prof; the summary (also in bench/results/MODE/summary.txt), if any. */
    const profiled = async <R>(
      mode: Mode,
      top: number,
      load: (target: RunningTarget) => Promise<R>,
      describe: (r: R) => string,
    ): Promise<{ result: R; summary: Omit<ProfileSummary, 'messagesPerSecond'> } | undefined> => {
      const spec = runnable.find((t) => t.name === 'wsgate');
      if (!spec) {
        skipped.push({ target: mode, reason: 'needs the wsgate target' });
        return undefined;
      }
      const profileDir = join(RESULTS_DIR, mode);
      rmSync(profileDir, { recursive: true, force: true });
      mkdirSync(profileDir, { recursive: true });
      const result = await withTarget(spec, ctx, load, profileDir);
      log(`profiled: ${describe(result)}`);
      const file = newestCpuProfile(profileDir);
      if (!file) {
        log('bench: wsgate wrote no .cpuprofile (did it exit cleanly on SIGTERM?)');
        return undefined;
      }
      const summary = summariseCpuProfile(file, PACKAGE_ROOT, top);
      writeFileSync(join(profileDir, 'summary.txt'), `${formatProfile(summary)}\n`);
      return { result, summary };
    };
    if (o.modes.has('profile')) {
      const p = await profiled('profile', 25, (t) => echoRun(t, 'ws', 'max', o.echo, o.run), describeEcho);
      if (p) {
        profile = { ...p.summary, messagesPerSecond: p.result.messagesPerSecond };
        profileText = formatProfile(profile);
      }
    }
    if (o.modes.has('profile-handshake')) {
      // Not part of the results JSON: a tool for finding where a plain handshake's CPU goes.
      const p = await profiled(
        'profile-handshake',
        40,
        (t) => handshakeRun(t, 'ws', o.handshake, o.run),
        describeHandshake,
      );
      if (p) log(`\n${formatProfile(p.summary)}\n`);
    }
  } finally {
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  }

  const results: BenchResults = {
    startedAt,
    smoke: o.smoke,
    machine: machine(pinned, limit),
    settings: {
      echo: o.echo,
      handshake: o.handshake,
      http: o.http,
      idle: { ...o.idle, ws: o.idleWs, wss: o.idleWss, maxIdle },
      run: o.run,
      modes: [...o.modes],
    },
    wsgate: features,
    targets: runnable.map((t) => ({ name: t.name, description: t.description })),
    skipped,
    echo,
    handshake,
    idle,
    http,
    profile,
    checks: evaluateChecks({ echo, handshake, idle }),
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, o.smoke ? 'smoke.json' : 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  publish(results, o, profileText);

  if (o.smoke) {
    const problems = smokeProblems(results, o);
    if (problems.length > 0) {
      log(`\nbench smoke FAILED:\n  ${problems.join('\n  ')}`);
      return 1;
    }
    log('\nbench smoke: all figures present and sane');
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    log(`bench: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
