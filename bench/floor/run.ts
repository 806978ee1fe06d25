// How close is wsgate to the floor of a Node proxy? Fixed-rate echo (the CPU-per-message goal of issue 6) for
// HAProxy, nginx, a bare Node pump with wsgate's socket I/O (node-pump.ts), wsgate with scanning off, and wsgate
// as shipped, taken in turns for several rounds in one run, with the median of each.
// Usage: npm run bench:floor [-- --rounds N] [--targets haproxy,node-pump,...]   (node dist/bench/floor/run.js)

import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { NODE_FLAGS } from '../../src/ops/node-flags.js';
import { generateCerts } from '../harness/certs.js';
import { echoRun } from '../harness/modes.js';
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
    options: { rounds: { type: 'string', default: '3' }, targets: { type: 'string', default: ALL.join(',') } },
  });
  const rounds = Number(values.rounds);
  const unknown = values.targets.split(',').filter((n) => !ALL.includes(n));
  if (unknown.length > 0) throw new Error(`--targets: unknown ${unknown.join(', ')} (known: ${ALL.join(', ')})`);
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-floor-'));
  const ctx: TargetContext = { dir, certs: generateCerts(dir), pin: true, fdLimit: fdLimit(), log: console.log };
  const names = values.targets
    .split(',')
    .filter((n) => n === 'node-pump' || TARGETS.find((t) => t.name === n)?.unavailable(ctx) === undefined);
  const perMessageUs = new Map<string, number[]>(names.map((n) => [n, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const name of names) {
      const spec = TARGETS.find((t) => t.name === name);
      const target = spec ? await spec.start(ctx) : await startNodePump(ctx);
      try {
        const r = await echoRun(target, 'ws', 'rate', ECHO, { generators: 2, pin: true });
        const us = r.cpuSecondsPer1kMessages * 1000;
        perMessageUs.get(name)?.push(us);
        console.log(`round ${round} ${name}: ${r.messagesPerSecond.toFixed(0)} msg/s, ${us.toFixed(2)} µs CPU/message`);
      } finally {
        await target.stop();
      }
    }
  }
  const haproxy = median(perMessageUs.get('haproxy') ?? []);
  console.log(`\nmedian CPU per echoed message (ws, ${ECHO.rate} msg/s, ${rounds} rounds)`);
  for (const [name, list] of perMessageUs) {
    const m = median(list);
    const ratio = Number.isFinite(haproxy) && haproxy > 0 ? `${(m / haproxy).toFixed(2)}× HAProxy` : '';
    console.log(`${name.padEnd(11)} ${m.toFixed(2).padStart(6)} µs  ${ratio}`);
  }
}

await main();
