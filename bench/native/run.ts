// Issue 20's measurement: would a native data path put wsgate ahead of nginx and HAProxy per core? The native pump
// (pump.cc behind gateway.ts), the same bench gateway with the JS tunnel, wsgate as shipped, the bare Node pump
// (bench/floor/node-pump.ts), nginx and HAProxy, each started fresh and measured in turns for several rounds (every
// other round in reverse order, as bench/floor/run.ts does), with the median and range of each.
//
// Usage: npm run bench:native [-- --modes handshake,echo,pingpong,idle,large,saturated,cores] [--rounds N]
//        [--targets a,b] [--rate MSG_PER_S]
// Results: printed, and bench/results/native-latest.json.

import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { NODE_FLAGS } from '../../src/control/node-flags.js';
import { generateCerts } from '../harness/certs.js';
import { echoRun, handshakeRun, idleRun } from '../harness/modes.js';
import { fdLimit, processTree, startProcess, stopProcess } from '../harness/processes.js';
import {
  firstMessage,
  LOAD_CPUS,
  PACKAGE_ROOT,
  PROXY_CPUS,
  type RunningTarget,
  startEchoBackend,
  TARGETS,
  type TargetContext,
} from '../harness/targets.js';
import { buildAddon, compilerMissing } from './addon.js';

const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');
const BOTH_CPUS = '0,1';
/** The project's fixed-rate echo (BENCHMARKS.md); --rate lowers the offered rate when the machine is too busy for it. */
const ECHO = { connections: 100, payloadBytes: 64, window: 8, rate: 20_000, warmupMs: 2000, measureMs: 6000 };
const HANDSHAKE = { concurrency: 32, warmupMs: 1000, measureMs: 4000 };
const IDLE_CONNECTIONS = 5000;
/**
 * One message in flight on each of 4 connections: every message is its own read and write in the proxy, whatever
 * else runs on the machine, so CPU per message is the per-message machinery without batching (on a busy machine,
 * where the fixed rate cannot be held, this is the comparison that stays fair).
 */
const PINGPONG = { connections: 4, payloadBytes: 64, window: 1, rate: 0, warmupMs: 2000, measureMs: 6000 };
/** Large messages: few connections, 256 KiB each, a closed loop; where splice(2) could pay. */
const LARGE = { connections: 16, payloadBytes: 256 * 1024, window: 2, rate: 0, warmupMs: 2000, measureMs: 6000 };
const SPLICE_MIN_BYTES = 16 * 1024;
/**
 * A fixed-rate echo round that delivered less than this share of the offered rate had its load generator starved
 * (other work on the machine): the proxy then gets larger batches per read, which flatters its CPU per message.
 * Such rounds are left out of the medians when at least two rounds of the target were not starved.
 */
const STARVED_BELOW = 0.95;
const RUN = { generators: 2, pin: true };

/** Targets of the single-core modes; `cores` compares the ones that may use both cores. */
const SINGLE_CORE = ['haproxy', 'nginx', 'node-pump', 'wsgate', 'native-js', 'native', 'native-accept'];
/** The hybrid differs from native-accept only before the 101: measured in the handshake mode. */
const HANDSHAKE_TARGETS = [...SINGLE_CORE, 'native-accept-jsdecide'];
const ACROSS_CORES = ['wsgate-2w', 'native-2t', 'native-accept-2t', 'native'];
const LARGE_MESSAGES = ['haproxy', 'nginx', 'wsgate', 'native', 'native-splice'];
const MODES = ['echo', 'pingpong', 'saturated', 'handshake', 'idle', 'cores', 'large'] as const;
type Mode = (typeof MODES)[number];

/** One measurement; undefined fields do not apply to the mode. */
interface Sample {
  readonly cpuUs?: number;
  readonly perSecond?: number;
  readonly p99Us?: number;
  readonly coreShare?: number;
  readonly kibPerConnection?: number;
  readonly mibPerSecond?: number;
  readonly problems?: string;
  /** Fixed-rate echo that fell short of the offered rate (the load generator was starved): batching differs. */
  readonly starved?: boolean;
}

/** A bench-side process (node-pump.js or gateway.js) in front of its own echo backend, like a harness target. */
async function startNodeTarget(
  ctx: TargetContext,
  name: string,
  script: string,
  args: (backendPort: number) => string[],
  cpus: string,
): Promise<RunningTarget> {
  const backend = await startEchoBackend(ctx, LOAD_CPUS, false);
  const log = join(ctx.dir, `${name}-${Date.now()}.log`);
  // The same Node flags as wsgate runs with, so the difference is the code.
  const child: ChildProcess = startProcess(process.execPath, [...NODE_FLAGS, script, ...args(backend.ports.ws)], {
    cpus: ctx.pin ? cpus : undefined,
    logFile: log,
    ipc: true,
  });
  const { port } = await firstMessage<{ port: number }>(child, name, log).catch(async (err: unknown) => {
    await stopProcess(child);
    await stopProcess(backend.child);
    throw err;
  });
  const ws = { host: '127.0.0.1', port, path: '/', tls: false };
  return {
    name,
    endpoints: { ws, wssRsa: ws, wssEcdsa: ws },
    measuredPids: () => processTree(child.pid as number),
    async stop() {
      await stopProcess(child);
      await stopProcess(backend.child);
    },
  };
}

const GATEWAY = join(DIST_BENCH, 'native', 'gateway.js');

function startTarget(ctx: TargetContext, name: string): Promise<RunningTarget> {
  switch (name) {
    case 'node-pump':
      return startNodeTarget(ctx, name, join(DIST_BENCH, 'floor', 'node-pump.js'), (p) => [String(p)], PROXY_CPUS);
    case 'native-js':
      return startNodeTarget(ctx, name, GATEWAY, (p) => ['--backend', String(p), '--pump', 'js'], PROXY_CPUS);
    case 'native':
      return startNodeTarget(ctx, name, GATEWAY, (p) => ['--backend', String(p), '--pump', 'native'], PROXY_CPUS);
    case 'native-accept':
      return startNodeTarget(ctx, name, GATEWAY, (p) => ['--backend', String(p), '--accept', 'native'], PROXY_CPUS);
    case 'native-accept-jsdecide':
      return startNodeTarget(
        ctx,
        name,
        GATEWAY,
        (p) => ['--backend', String(p), '--accept', 'native', '--decide', 'js'],
        PROXY_CPUS,
      );
    case 'native-accept-2t':
      return startNodeTarget(
        ctx,
        name,
        GATEWAY,
        (p) => ['--backend', String(p), '--accept', 'native', '--threads', '2'],
        BOTH_CPUS,
      );
    case 'native-splice':
      return startNodeTarget(
        ctx,
        name,
        GATEWAY,
        (p) => ['--backend', String(p), '--pump', 'native', '--splice', String(SPLICE_MIN_BYTES)],
        PROXY_CPUS,
      );
    case 'native-2t':
      return startNodeTarget(
        ctx,
        name,
        GATEWAY,
        (p) => ['--backend', String(p), '--pump', 'native', '--threads', '2'],
        BOTH_CPUS,
      );
    default: {
      const spec = TARGETS.find((t) => t.name === name);
      if (spec === undefined) throw new Error(`unknown target ${name}`);
      return spec.start(ctx);
    }
  }
}

function unavailable(ctx: TargetContext, name: string): string | undefined {
  if (name.startsWith('native') && name !== 'native-js') return compilerMissing();
  if (name === 'native-js' || name === 'node-pump') return undefined;
  return TARGETS.find((t) => t.name === name)?.unavailable(ctx) ?? undefined;
}

async function measure(mode: Mode, target: RunningTarget): Promise<Sample> {
  if (mode === 'echo' || mode === 'saturated' || mode === 'cores' || mode === 'large' || mode === 'pingpong') {
    const settings = mode === 'large' ? LARGE : mode === 'pingpong' ? PINGPONG : ECHO;
    const r = await echoRun(target, 'ws', mode === 'echo' ? 'rate' : 'max', settings, RUN);
    const bad = r.errors + r.dropped + r.failedToOpen;
    return {
      cpuUs: r.cpuSecondsPer1kMessages * 1000,
      perSecond: r.messagesPerSecond,
      p99Us: r.p99Us,
      coreShare: r.cpuCoreShare,
      mibPerSecond: mode === 'large' ? (r.messagesPerSecond * LARGE.payloadBytes) / 2 ** 20 : undefined,
      starved: mode === 'echo' && r.messagesPerSecond < STARVED_BELOW * ECHO.rate,
      problems: bad > 0 ? `errors ${r.errors}, dropped ${r.dropped}, failed ${r.failedToOpen}: ${r.firstError}` : '',
    };
  }
  if (mode === 'handshake') {
    const r = await handshakeRun(target, 'ws', HANDSHAKE, RUN);
    return {
      cpuUs: r.cpuSecondsPer1kHandshakes * 1000,
      perSecond: r.handshakesPerSecond,
      p99Us: r.p99Us,
      coreShare: r.cpuCoreShare,
      problems: r.errors > 0 ? `errors ${r.errors}: ${r.firstError}` : '',
    };
  }
  const r = await idleRun(target, 'ws', IDLE_CONNECTIONS, { settleMs: 2000 }, RUN);
  return {
    kibPerConnection: r.bytesPerConnection / 1024,
    problems: r.opened !== r.requested || r.failed > 0 ? `opened ${r.opened} of ${r.requested}` : '',
  };
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

function summary(samples: readonly Sample[], pick: (s: Sample) => number | undefined): Summary | null {
  const v = samples.map(pick).filter((x): x is number => x !== undefined && Number.isFinite(x));
  return v.length === 0 ? null : { median: median(v), min: Math.min(...v), max: Math.max(...v) };
}

function fmt(s: Summary | null, digits: number): string {
  if (s === null) return '–';
  const f = (x: number) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

const COLUMNS: Record<Mode, { readonly title: string; cols: [string, (s: Sample) => number | undefined, number][] }> = {
  echo: {
    // A getter: --rate changes ECHO.rate after this table is made.
    get title() {
      return `ws echo at ${ECHO.rate.toLocaleString('en-US')} msg/s offered, ${ECHO.connections} connections, ${ECHO.payloadBytes}-byte messages (proxy pinned to one core)`;
    },
    cols: [
      ['CPU µs per echoed message', (s) => s.cpuUs, 2],
      ['msg/s', (s) => s.perSecond, 0],
      ['p99 µs', (s) => s.p99Us, 0],
    ],
  },
  pingpong: {
    title: `ws echo, ${PINGPONG.connections} connections with one ${PINGPONG.payloadBytes}-byte message in flight each (no batching; proxy pinned to one core)`,
    cols: [
      ['CPU µs per echoed message', (s) => s.cpuUs, 2],
      ['msg/s', (s) => s.perSecond, 0],
      ['proxy core share', (s) => s.coreShare, 2],
      ['p99 µs', (s) => s.p99Us, 0],
    ],
  },
  saturated: {
    title: `ws echo saturated, ${ECHO.connections} connections × ${ECHO.window} in flight (proxy pinned to one core)`,
    cols: [
      ['msg/s', (s) => s.perSecond, 0],
      ['CPU µs per message', (s) => s.cpuUs, 2],
      ['proxy core share', (s) => s.coreShare, 2],
      ['p99 µs', (s) => s.p99Us, 0],
    ],
  },
  handshake: {
    title: `ws handshakes, ${HANDSHAKE.concurrency} loops (open, upgrade, 101, close frame, close; proxy pinned to one core)`,
    cols: [
      ['CPU µs per handshake', (s) => s.cpuUs, 1],
      ['handshakes/s', (s) => s.perSecond, 0],
      ['proxy core share', (s) => s.coreShare, 2],
      ['p99 µs', (s) => s.p99Us, 0],
    ],
  },
  idle: {
    title: `memory per idle ws connection, ${IDLE_CONNECTIONS.toLocaleString('en-US')} held (RSS after − before, ÷ N)`,
    cols: [['KiB per connection', (s) => s.kibPerConnection, 2]],
  },
  large: {
    title: `ws echo of ${LARGE.payloadBytes / 1024} KiB messages, ${LARGE.connections} connections × ${LARGE.window} in flight (proxy pinned to one core; native-splice splices payloads of ${SPLICE_MIN_BYTES / 1024} KiB or more)`,
    cols: [
      ['MiB/s echoed', (s) => s.mibPerSecond, 0],
      ['CPU µs per message', (s) => s.cpuUs, 1],
      ['proxy core share', (s) => s.coreShare, 2],
      ['p99 µs', (s) => s.p99Us, 0],
    ],
  },
  cores: {
    title: `ws echo saturated, proxies allowed both cores (shared with the load generators and backend: not a scaling figure)`,
    cols: [
      ['msg/s', (s) => s.perSecond, 0],
      ['CPU µs per message', (s) => s.cpuUs, 2],
      ['proxy cores used', (s) => s.coreShare, 2],
      ['p99 µs', (s) => s.p99Us, 0],
    ],
  },
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      modes: { type: 'string', default: 'handshake,echo,pingpong,idle,large,saturated,cores' },
      rounds: { type: 'string', default: '5' },
      targets: { type: 'string' },
      rate: { type: 'string' },
    },
  });
  if (values.rate !== undefined) ECHO.rate = Number(values.rate);
  const modes = values.modes.split(',') as Mode[];
  for (const m of modes) if (!MODES.includes(m)) throw new Error(`--modes: unknown ${m} (${MODES.join(', ')})`);
  const rounds = Number(values.rounds);
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-native-'));
  const ctx: TargetContext = { dir, certs: generateCerts(dir), pin: RUN.pin, fdLimit: fdLimit(), log: console.log };
  if (compilerMissing() === undefined) buildAddon();
  const results: Record<string, Record<string, { samples: Sample[] }>> = {};
  const lines: string[] = [];
  for (const mode of modes) {
    const wanted =
      values.targets?.split(',') ??
      (mode === 'cores'
        ? ACROSS_CORES
        : mode === 'large'
          ? LARGE_MESSAGES
          : mode === 'handshake'
            ? HANDSHAKE_TARGETS
            : SINGLE_CORE);
    const names = wanted.filter((n) => {
      const why = unavailable(ctx, n);
      if (why !== undefined) console.log(`skipping ${n}: ${why}`);
      return why === undefined;
    });
    const samples = new Map<string, Sample[]>(names.map((n) => [n, []]));
    // Memory per connection moves little between rounds; the saturated runs are long: fewer rounds of those.
    const modeRounds =
      mode === 'idle' ? Math.min(rounds, 2) : mode === 'echo' || mode === 'handshake' ? rounds : Math.min(rounds, 3);
    for (let round = 1; round <= modeRounds; round++) {
      for (const name of round % 2 === 1 ? names : [...names].reverse()) {
        const target = await startTarget(ctx, name);
        try {
          const s = await measure(mode, target);
          samples.get(name)?.push(s);
          const cells = COLUMNS[mode].cols.map(([label, pick, d]) => `${label} ${(pick(s) ?? Number.NaN).toFixed(d)}`);
          const notes = `${s.problems ? ` [${s.problems}]` : ''}${s.starved ? ' [starved: below the offered rate]' : ''}`;
          console.log(`${mode} round ${round} ${name}: ${cells.join(', ')}${notes}`);
        } finally {
          await target.stop();
        }
      }
    }
    results[mode] = Object.fromEntries([...samples].map(([n, s]) => [n, { samples: s }]));
    const { title, cols } = COLUMNS[mode];
    lines.push('', `${title}; median (min–max) of ${modeRounds} rounds in turns`, '');
    lines.push(`| target | ${cols.map((c) => c[0]).join(' | ')} |`, `| --- |${cols.map(() => ' ---: |').join('')}`);
    for (const n of names) {
      const all = samples.get(n) ?? [];
      const clean = all.filter((x) => !x.starved);
      const s = clean.length >= 2 ? clean : all;
      const rounds = s.length === all.length ? '' : ` (${s.length} of ${all.length} rounds)`;
      lines.push(`| ${n}${rounds} | ${cols.map(([, pick, d]) => fmt(summary(s, pick), d)).join(' | ')} |`);
    }
  }
  const text = lines.join('\n');
  console.log(text);
  const out = join(PACKAGE_ROOT, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim(), kernel: release(), node: process.version };
  writeFileSync(
    join(out, 'native-latest.json'),
    JSON.stringify(
      { at: new Date().toISOString(), machine, settings: { ECHO, HANDSHAKE, IDLE_CONNECTIONS }, results },
      null,
      2,
    ),
  );
  writeFileSync(join(out, 'native-latest.md'), `${text}\n`);
}

await main();
