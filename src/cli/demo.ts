// Demo mode: the demo backends in a child process, and the banner that says where to connect. The banner's
// client lines work on a stock machine from the wsgate folder: npm (whatever the system Node; `npm run` puts the
// bundled Node on PATH) and curl.

import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import type { Config } from '../config/types.js';
import type { DemoBackendsMessage } from '../demo/backends.js';
import { demoBackendId } from '../demo/names.js';

type DemoFailure = Extract<DemoBackendsMessage, { failed: unknown }>['failed'];

/** A demo backend could not listen (the port is busy, say). */
export class DemoBackendsFailed extends Error {
  readonly failure: DemoFailure;
  constructor(failure: DemoFailure) {
    super(`demo backend on port ${failure.port}: ${failure.message}`);
    this.name = 'DemoBackendsFailed';
    this.failure = failure;
  }
}

/** The loopback ports the config's pools point at: where the demo backends listen. */
export function demoBackendPorts(config: Config): number[] {
  const ports = new Set<number>();
  for (const pool of config.pools.values()) {
    for (const b of pool.backends) if (b.host === '127.0.0.1' || b.host === 'localhost') ports.add(b.port);
  }
  return [...ports];
}

/** Forks the demo backends (dist/src/demo/backends.js under `packageRoot`); they exit with us. */
export function startDemoBackends(packageRoot: string, ports: readonly number[]): Promise<ChildProcess> {
  const child = fork(join(packageRoot, 'dist', 'src', 'demo', 'backends.js'), ports.map(String), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (msg: DemoBackendsMessage) => {
      if ('failed' in msg) reject(new DemoBackendsFailed(msg.failed));
      else resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`demo backends exited with ${code}`)));
  });
}

export interface BannerInput {
  readonly backendPorts: readonly number[];
  /** The first plain and the first TLS listener, as bound. */
  readonly plainPort: number | undefined;
  readonly tls: { readonly port: number; readonly selfSigned: boolean } | undefined;
  readonly adminPort: number;
  /** Which demo backend each user's key picks (single process only; empty otherwise). */
  readonly picks: readonly { readonly user: string; readonly port: number }[];
}

/** The demo banner: where to connect, which backend each user lands on, and client lines to paste. */
export function demoBanner(input: BannerInput): string {
  const backends = `127.0.0.1:${input.backendPorts.join(', ')}`;
  const lines = [
    '',
    `wsgate demo is running. Demo backends on ${backends} answer each message (echo) and pass it to everyone`,
    'else connected to the same room (?room=, default lobby) on that backend.',
    '',
  ];
  const path = '/chat?user=alice';
  if (input.plainPort !== undefined) lines.push(`  ws://   ws://127.0.0.1:${input.plainPort}${path}`);
  if (input.tls) {
    const note = input.tls.selfSigned ? '   (self-signed certificate)' : '';
    lines.push(`  wss://  wss://127.0.0.1:${input.tls.port}${path}${note}`);
  }
  lines.push(
    `  status  http://127.0.0.1:${input.adminPort}/  (/api/status, /metrics, /healthz, /readyz, POST /reload)`,
  );
  if (input.picks.length > 0) {
    lines.push('', 'Consistent hashing on ?user= picks these backends (the same user always lands on the same one):');
    for (const { user, port } of input.picks) lines.push(`  ${user.padEnd(6)} → ${demoBackendId(port)}`);
  }
  lines.push('', 'Try it from the wsgate folder (type a line to send it; Ctrl-D closes):');
  if (input.plainPort !== undefined) lines.push(`  npm run connect -- 'ws://127.0.0.1:${input.plainPort}${path}'`);
  if (input.tls) lines.push(`  npm run connect -- --insecure 'wss://127.0.0.1:${input.tls.port}${path}'`);
  if (input.plainPort !== undefined) lines.push(`  curl 'http://127.0.0.1:${input.plainPort}${path}'`);
  lines.push('', 'Stop with Ctrl-C.', '');
  return `${lines.join('\n')}\n`;
}

/** The client lines of a banner, as printed: what a user would paste into a shell. */
export function bannerCommands(banner: string): string[] {
  const lines = banner.split('\n');
  const start = lines.findIndex((l) => l.startsWith('Try it'));
  if (start < 0) return [];
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end < 0 ? undefined : end).map((l) => l.trim());
}
