// What knowing the client behind a load balancer costs per WebSocket handshake: wsgate's CPU (its own process's
// user + system time, read from /proc) per handshake on a plain listener, on one expecting a PROXY v2 header, and
// on one walking X-Forwarded-For from a trusted peer; with --baseline DIR, also the plain listener of the build
// in DIR (e.g. a worktree of an earlier commit, built), to see that a listener without clientAddress pays nothing.
// Targets run in turns, every other round reversed, and each reports its median.
// Run: npm run build && node dist/bench/client-address.bench.js [--rounds 8] [--handshakes 2000] [--baseline DIR]

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { NODE_FLAGS } from '../src/control/node-flags.js';
import { proxyHeaderFor } from '../src/upstream/proxy-header.js';
import { PACKAGE_ROOT } from './harness/targets.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '8' },
    handshakes: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '16' },
    baseline: { type: 'string' },
  },
});
const ROUNDS = Number(values.rounds);
const HANDSHAKES = Number(values.handshakes);
const CONCURRENCY = Number(values.concurrency);

const REQUEST =
  'GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
/** A masked close frame (code 1000): the client ends each WebSocket properly. */
const CLOSE = Buffer.from([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]);

interface Target {
  readonly name: string;
  readonly cli: string;
  readonly clientAddress: Record<string, unknown> | undefined;
  /** What a client sends before its request (a PROXY header), and extra request headers. */
  readonly preamble: Buffer;
  readonly headers: string;
  process?: ChildProcess;
  port?: number;
  readonly samples: number[];
}

const proxyV2 = proxyHeaderFor('v2', { address: '203.0.113.5', port: 4242 }, { address: '127.0.0.1', port: 80 });

function targets(): Target[] {
  const cli = join(PACKAGE_ROOT, 'dist', 'src', 'cli.js');
  const list: Target[] = [
    { name: 'plain', cli, clientAddress: undefined, preamble: Buffer.alloc(0), headers: '', samples: [] },
    {
      name: 'proxy-v2',
      cli,
      clientAddress: { proxyProtocol: 'v2', trustedProxies: ['127.0.0.1/32'] },
      preamble: proxyV2,
      headers: '',
      samples: [],
    },
    {
      name: 'forwarded-for',
      cli,
      clientAddress: { forwardedFor: true, trustedProxies: ['127.0.0.1/32', '10.0.0.0/8'] },
      preamble: Buffer.alloc(0),
      headers: 'X-Forwarded-For: 203.0.113.5, 10.1.1.1\r\n',
      samples: [],
    },
  ];
  if (values.baseline) {
    list.push({
      name: 'plain (baseline build)',
      cli: join(values.baseline, 'dist', 'src', 'cli.js'),
      clientAddress: undefined,
      preamble: Buffer.alloc(0),
      headers: '',
      samples: [],
    });
  }
  return list;
}

async function start(target: Target, backendPort: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-ca-bench-'));
  const file = join(dir, 'wsgate.yaml');
  writeFileSync(
    file,
    stringify({
      listeners: [
        {
          name: 'public',
          address: '127.0.0.1',
          port: 0,
          ...(target.clientAddress ? { clientAddress: target.clientAddress } : {}),
        },
      ],
      admin: { address: '127.0.0.1', port: 0 },
      routes: [{ name: 'main', match: { path: '/' }, pool: 'main' }],
      pools: { main: { hashKey: 'ip', backends: [`ws://127.0.0.1:${backendPort}`] } },
      limits: { maxConnections: 100_000, maxConnectionsPerIp: 100_000 },
      log: { level: 'info' },
    }),
  );
  const child = spawn(process.execPath, [...NODE_FLAGS, target.cli, '--config', file, '--no-watch'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  target.process = child;
  target.port = await new Promise<number>((resolve, reject) => {
    let text = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      for (const line of text.split('\n')) {
        if (!line.includes('"wsgate ready"')) continue;
        const ready = JSON.parse(line) as { listeners: { port: number }[] };
        child.stdout?.removeAllListeners('data');
        child.stdout?.resume();
        resolve(ready.listeners[0]?.port ?? 0);
      }
    });
    child.once('exit', (code) => reject(new Error(`${target.name} exited (${code}) before it was ready`)));
  });
}

/** The benchmark's echo backend (bench/backend/echo-server.ts) in its own process. */
async function startBackend(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'dist', 'bench', 'backend', 'echo-server.js')], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { ports } = await new Promise<{ ports: { ws: number } }>((resolve) => child.once('message', resolve));
  return { child, port: ports.ws };
}

/** User + system CPU of `pid` in µs. */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1_000_000) / 100; // USER_HZ
}

function oneHandshake(target: Target): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port: target.port as number, host: '127.0.0.1' }, () => {
      socket.write(Buffer.concat([target.preamble, Buffer.from(`${REQUEST}${target.headers}\r\n`, 'latin1')]));
    });
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      if (seen === undefined) return;
      seen += chunk.toString('latin1');
      if (!seen.includes('\r\n\r\n')) return;
      if (!seen.startsWith('HTTP/1.1 101')) reject(new Error(`${target.name}: ${seen.slice(0, 40)}`));
      seen = '';
      socket.end(CLOSE);
    });
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
}

async function round(target: Target): Promise<void> {
  const pid = target.process?.pid as number;
  const before = cpuMicros(pid);
  let next = 0;
  const worker = async () => {
    while (next < HANDSHAKES) {
      next++;
      await oneHandshake(target);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  await new Promise((r) => setTimeout(r, 200)); // the last closes' CPU
  target.samples.push((cpuMicros(pid) - before) / HANDSHAKES);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? (s[(s.length - 1) / 2] as number)
    : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
}

async function main(): Promise<void> {
  const backend = await startBackend();
  const list = targets();
  for (const t of list) await start(t, backend.port);
  for (const t of list) for (let i = 0; i < 2; i++) await round(t); // warm-up
  for (const t of list) t.samples.length = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? list : [...list].reverse();
    for (const t of order) await round(t);
  }
  const base = list[0]?.samples ?? [];
  process.stdout.write(`CPU µs per ws handshake (wsgate's process), ${ROUNDS} rounds of ${HANDSHAKES}, in turns:\n`);
  for (const t of list) {
    const range = `${Math.min(...t.samples).toFixed(0)}–${Math.max(...t.samples).toFixed(0)}`;
    // Each round's difference to the first target: drift of the machine falls on both alike.
    const delta = median(t.samples.map((x, i) => x - (base[i] ?? x)));
    process.stdout.write(
      `  ${t.name.padEnd(24)} median ${median(t.samples).toFixed(1)} µs (${range}), ` +
        `paired difference ${delta >= 0 ? '+' : ''}${delta.toFixed(1)} µs\n`,
    );
  }
  for (const t of list) t.process?.kill('SIGKILL');
  backend.child.kill('SIGKILL');
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
