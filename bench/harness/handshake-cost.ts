// What a feature costs per WebSocket handshake: wsgate's own CPU (user + system of its process, all threads, read
// from /proc; and of its main thread alone, so work sent to the libuv thread pool shows as the difference) per
// handshake (open, 101, close 1000), for several targets side by side: each a build of wsgate and a
// variant of one listener and one route. The targets run at once and are driven in turns, every other round in
// reverse order, so drift in the machine's load falls on all of them; each round's figure is also compared with the
// first target's of the same round (paired differences and ratios). Used by client-address.bench.ts and
// edge.bench.ts.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { NODE_FLAGS } from '../../src/control/node-flags.js';
import { pickLoopbackPorts, waitForPorts } from './ports.js';
import { exited } from './processes.js';
import { PACKAGE_ROOT } from './targets.js';

export interface HandshakeTarget {
  readonly name: string;
  /** dist/src/cli.js of the build to run. */
  readonly cli: string;
  /** Keys added to the one listener and to the one route (`/` → the echo backend). */
  readonly listener?: Record<string, unknown>;
  readonly route?: Record<string, unknown>;
  /** Bytes a client sends before its request (a PROXY header). */
  readonly preamble?: Buffer;
  /** Extra request header lines ("Name: value\r\n") of the n-th handshake. */
  readonly headers?: (n: number) => string;
}

export interface CostSettings {
  readonly rounds: number;
  readonly handshakes: number;
  readonly concurrency: number;
  /** wsgate's log.level: `info` logs a line per connection opened and closed, `warn` none. */
  readonly logLevel: string;
  /** --baseline DIR: a worktree of another build, built. */
  readonly baseline: string | undefined;
}

/** The command line every handshake-cost benchmark takes, with its own defaults. */
export function costSettings(defaults: { rounds: number; logLevel: string }): CostSettings {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: String(defaults.rounds) },
      handshakes: { type: 'string', default: '2000' },
      concurrency: { type: 'string', default: '16' },
      'log-level': { type: 'string', default: defaults.logLevel },
      baseline: { type: 'string' },
    },
  });
  return {
    rounds: Number(values.rounds),
    handshakes: Number(values.handshakes),
    concurrency: Number(values.concurrency),
    logLevel: values['log-level'],
    baseline: values.baseline,
  };
}

/** dist/src/cli.js of this build, or of the build in `dir`. */
export function cliOf(dir: string = PACKAGE_ROOT): string {
  return join(dir, 'dist', 'src', 'cli.js');
}

const REQUEST =
  'GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
/** A masked close frame (code 1000): the client ends each WebSocket properly. */
const CLOSE = Buffer.from([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]);
const START_ATTEMPTS = 3;
const START_TIMEOUT_MS = 20_000;

interface Running {
  readonly target: HandshakeTarget;
  readonly process: ChildProcess;
  readonly port: number;
  /** CPU µs per handshake, one per round: the process, and its main thread. */
  readonly cpu: number[];
  readonly mainThread: number[];
  /** Handshakes per second of wall time, one per round. */
  readonly rate: number[];
}

/**
 * Starts wsgate with `target`'s config. The listener's port must be in the file: one is picked free a moment
 * before (the harness's accepted race, bench/harness/ports.ts), and the start is retried with another if it fails.
 */
async function start(target: HandshakeTarget, backendPort: number, settings: CostSettings, dir: string) {
  for (let attempt = 1; ; attempt++) {
    const [port] = (await pickLoopbackPorts(1)) as [number];
    const file = join(dir, `${target.name.replace(/\W+/g, '-')}.yaml`);
    writeFileSync(
      file,
      stringify({
        listeners: [{ name: 'public', address: '127.0.0.1', port, ...target.listener }],
        admin: { address: '127.0.0.1', port: 0 },
        routes: [{ name: 'main', match: { path: '/' }, pool: 'main', ...target.route }],
        pools: { main: { hashKey: 'ip', backends: [`ws://127.0.0.1:${backendPort}`] } },
        limits: { maxConnections: 100_000, maxConnectionsPerIp: 100_000 },
        log: { level: settings.logLevel },
      }),
    );
    const child = spawn(process.execPath, [...NODE_FLAGS, target.cli, '--config', file, '--no-watch'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    if (await waitForPorts([port], START_TIMEOUT_MS, () => exited(child))) return { child, port };
    child.kill('SIGKILL');
    if (attempt === START_ATTEMPTS) throw new Error(`${target.name} did not come up`);
  }
}

/** The benchmark's echo backend (bench/backend/echo-server.ts) in its own process. */
async function startBackend(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'dist', 'bench', 'backend', 'echo-server.js')], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { ports } = await new Promise<{ ports: { ws: number } }>((resolve) => child.once('message', resolve));
  return { child, port: ports.ws };
}

/** User + system CPU in µs of a process (all its threads: /proc/PID/stat) or a thread (/proc/PID/task/TID/stat). */
function cpuMicros(statFile: string): number {
  const fields = readFileSync(statFile, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1_000_000) / 100; // USER_HZ
}

function oneHandshake(running: Running, n: number): Promise<void> {
  const { target, port } = running;
  const request = Buffer.from(`${REQUEST}${target.headers?.(n) ?? ''}\r\n`, 'latin1');
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => {
      socket.write(target.preamble === undefined ? request : Buffer.concat([target.preamble, request]));
    });
    let head = '';
    const onHead = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onHead);
      socket.resume(); // the backend's close frame, read and dropped
      if (head.startsWith('HTTP/1.1 101')) socket.end(CLOSE);
      else reject(new Error(`${target.name}: ${head.slice(0, 40)}`));
    };
    socket.on('data', onHead);
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
}

async function round(running: Running, settings: CostSettings): Promise<void> {
  const pid = running.process.pid as number;
  const [processStat, mainStat] = [`/proc/${pid}/stat`, `/proc/${pid}/task/${pid}/stat`];
  const before = cpuMicros(processStat);
  const mainBefore = cpuMicros(mainStat);
  const startedMs = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < settings.handshakes) await oneHandshake(running, next++);
  };
  await Promise.all(Array.from({ length: settings.concurrency }, worker));
  const wallMs = performance.now() - startedMs;
  await new Promise((r) => setTimeout(r, 200)); // the last closes' CPU
  running.cpu.push((cpuMicros(processStat) - before) / settings.handshakes);
  running.mainThread.push((cpuMicros(mainStat) - mainBefore) / settings.handshakes);
  running.rate.push((settings.handshakes * 1000) / wallMs);
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? (s[(s.length - 1) / 2] as number)
    : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
}

const signed = (x: number, digits: number) => `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`;
const range = (xs: readonly number[], digits: number) =>
  `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

/** Measures `targets` in turns and prints each one's median, range, and paired difference and ratio to the first. */
export async function measureInTurns(targets: readonly HandshakeTarget[], settings: CostSettings): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-hs-cost-'));
  const backend = await startBackend();
  const running: Running[] = [];
  try {
    for (const target of targets) {
      const { child, port } = await start(target, backend.port, settings, dir);
      running.push({ target, process: child, port, cpu: [], mainThread: [], rate: [] });
    }
    for (const r of running) for (let i = 0; i < 2; i++) await round(r, settings); // warm-up
    for (const r of running) {
      r.cpu.length = 0;
      r.mainThread.length = 0;
      r.rate.length = 0;
    }
    for (let i = 0; i < settings.rounds; i++) {
      for (const r of i % 2 === 0 ? running : [...running].reverse()) await round(r, settings);
    }
    const base = running[0] as Running;
    process.stdout.write(
      `CPU µs per ws handshake (wsgate's process), ${settings.rounds} rounds of ${settings.handshakes} from ` +
        `${settings.concurrency} loops, in turns, log.level ${settings.logLevel}:\n`,
    );
    process.stdout.write(
      `  ${'target'.padEnd(26)} median µs (range)  paired Δ to ${base.target.name} (range)  ratio  ` +
        'main thread µs  handshakes/s\n',
    );
    for (const r of running) {
      // Each round against the first target's same round: drift of the machine falls on both alike.
      const deltas = r.cpu.map((x, i) => x - (base.cpu[i] as number));
      const ratio = median(r.cpu.map((x, i) => x / (base.cpu[i] as number)));
      process.stdout.write(
        `  ${r.target.name.padEnd(26)} ${median(r.cpu).toFixed(1)} (${range(r.cpu, 0)})  ` +
          `${signed(median(deltas), 1)} µs (${signed(Math.min(...deltas), 0)}…${signed(Math.max(...deltas), 0)})  ` +
          `${ratio.toFixed(3)}  ${median(r.mainThread).toFixed(1)}  ${median(r.rate).toFixed(0)} (${range(r.rate, 0)})\n`,
      );
    }
  } finally {
    for (const r of running) r.process.kill('SIGKILL');
    backend.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
