// How close is wsgate to the floor of a Node proxy? Fixed-rate echo (CPU per message), or
// ws handshakes (`--mode handshake`), for HAProxy, nginx, a bare Node pump with wsgate's socket I/O
// (node-pump.ts), wsgate with scanning off, and wsgate as shipped, taken in turns for several rounds in one run
// (every other round in reverse order, so drift and TIME_WAIT build-up fall on all alike), with the median of each.
// Usage: npm run bench:floor [-- --mode echo|handshake] [--rounds N] [--targets haproxy,node-pump,...]

import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { NODE_FLAGS } from '../../src/control/node-flags.js';
import { generateCerts } from '../harness/certs.js';
import { echoRun, handshakeRun } from '../harness/modes.js';
import { fdLimit, startProcess, stopProcess } from '../harness/processes.js';
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

const NODE_PUMP = join(PACKAGE_ROOT, 'dist', 'bench', 'floor', 'node-pump.js');
const ALL = ['haproxy', 'nginx', 'node-pump', 'wsgate-off', 'wsgate'];
const ECHO = { connections: 100, payloadBytes: 64, window: 8, rate: 20_000, warmupMs: 2000, measureMs: 6000 };
const HANDSHAKE = { concurrency: 32, warmupMs: 1000, measureMs: 4000 };
const RUN = { generators: 2, pin: true };

/** One measurement of a target: CPU µs per unit (message or handshake) and units per second. */
interface Sample {
  readonly cpuUs: number;
  readonly perSecond: number;
}

const MODES = {
  echo: {
    unit: 'echoed message',
    baseline: 'haproxy',
    title: `ws echo, ${ECHO.rate} msg/s offered`,
    async measure(target: RunningTarget): Promise<Sample> {
      const r = await echoRun(target, 'ws', 'rate', ECHO, RUN);
      return { cpuUs: r.cpuSecondsPer1kMessages * 1000, perSecond: r.messagesPerSecond };
    },
  },
  handshake: {
    unit: 'ws handshake',
    baseline: 'nginx',
    title: `ws handshakes, ${HANDSHAKE.concurrency} loops`,
    async measure(target: RunningTarget): Promise<Sample> {
      const r = await handshakeRun(target, 'ws', HANDSHAKE, RUN);
      return { cpuUs: r.cpuSecondsPer1kHandshakes * 1000, perSecond: r.handshakesPerSecond };
    },
  },
} as const;
type Mode = keyof typeof MODES;

async function startNodePump(ctx: TargetContext): Promise<RunningTarget> {
  const backend = await startEchoBackend(ctx, LOAD_CPUS, false);
  // The same Node flags as wsgate runs with, so the difference is the code.
  const log = join(ctx.dir, 'node-pump.log');
  const child: ChildProcess = startProcess(process.execPath, [...NODE_FLAGS, NODE_PUMP, String(backend.ports.ws)], {
    cpus: ctx.pin ? PROXY_CPUS : undefined,
    logFile: log,
    ipc: true,
  });
  const { port } = await firstMessage<{ port: number }>(child, 'node-pump', log).catch(async (err: unknown) => {
    await stopProcess(child);
    await stopProcess(backend.child);
    throw err;
  });
  const ws = { host: '127.0.0.1', port, path: '/', tls: false };
  return {
    name: 'node-pump',
    endpoints: { ws, wssRsa: ws, wssEcdsa: ws },
    measuredPids: () => [child.pid as number],
    async stop() {
      await stopProcess(child);
      await stopProcess(backend.child);
    },
  };
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mode: { type: 'string', default: 'echo' },
      rounds: { type: 'string', default: '3' },
      targets: { type: 'string', default: ALL.join(',') },
    },
  });
  if (!(values.mode in MODES)) throw new Error(`--mode: echo or handshake, got ${values.mode}`);
  const mode = MODES[values.mode as Mode];
  const rounds = Number(values.rounds);
  const unknown = values.targets.split(',').filter((n) => !ALL.includes(n));
  if (unknown.length > 0) throw new Error(`--targets: unknown ${unknown.join(', ')} (known: ${ALL.join(', ')})`);
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-floor-'));
  const ctx: TargetContext = { dir, certs: generateCerts(dir), pin: true, fdLimit: fdLimit(), log: console.log };
  const names = values.targets
    .split(',')
    .filter((n) => n === 'node-pump' || TARGETS.find((t) => t.name === n)?.unavailable(ctx) === undefined);
  const samples = new Map<string, Sample[]>(names.map((n) => [n, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const name of round % 2 === 1 ? names : [...names].reverse()) {
      const spec = TARGETS.find((t) => t.name === name);
      const target = spec ? await spec.start(ctx) : await startNodePump(ctx);
      try {
        const sample = await mode.measure(target);
        samples.get(name)?.push(sample);
        console.log(
          `round ${round} ${name}: ${sample.perSecond.toFixed(0)}/s, ${sample.cpuUs.toFixed(2)} µs CPU per ${mode.unit}`,
        );
      } finally {
        await target.stop();
      }
    }
  }
  const medianOf = (name: string, pick: (s: Sample) => number) => median((samples.get(name) ?? []).map(pick));
  const baselineCpu = medianOf(mode.baseline, (s) => s.cpuUs);
  const baselineRate = medianOf(mode.baseline, (s) => s.perSecond);
  console.log(`\nmedians over ${rounds} rounds (${mode.title}); ratios against ${mode.baseline}`);
  for (const name of names) {
    const cpu = medianOf(name, (s) => s.cpuUs);
    const rate = medianOf(name, (s) => s.perSecond);
    const ratios =
      baselineCpu > 0 ? `  CPU ${(cpu / baselineCpu).toFixed(2)}×  rate ${(rate / baselineRate).toFixed(2)}×` : '';
    console.log(
      `${name.padEnd(11)} ${cpu.toFixed(2).padStart(7)} µs CPU per ${mode.unit}  ${rate.toFixed(0).padStart(7)}/s${ratios}`,
    );
  }
}

await main();
