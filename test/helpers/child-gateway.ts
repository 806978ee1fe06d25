// Runs a Gateway in a child process (optionally under `prlimit --nofile`), so a test can starve it of file
// descriptors, watch it crash or not, and read its own fd/handle/heap numbers. See gateway-process.ts.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { ConfigObject } from './gateway.js';
import type { ChildReady, ChildStats } from './gateway-process.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
/** Node 24 from node_modules (type stripping); the system node may be older. */
export const NODE_BIN = join(root, 'node_modules', '.bin', 'node');

export interface ChildGateway {
  readonly pid: number;
  readonly port: number;
  readonly tlsPort: number;
  readonly adminPort: number;
  /** stdout lines (pino JSON) and stderr lines, as they arrive. */
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  readonly alive: boolean;
  stats(): Promise<ChildStats>;
  stop(): Promise<void>;
}

export interface ChildOptions {
  /** Soft and hard RLIMIT_NOFILE for the child (via prlimit). */
  nofile?: number;
  /** pino level inside the child (default info). */
  logLevel?: string;
  /** Run with --expose-gc so stats() reports heap after GC. */
  exposeGc?: boolean;
}

export async function spawnGateway(config: ConfigObject, options: ChildOptions = {}): Promise<ChildGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-child-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, stringify(config));
  const nodeArgs = [
    ...(options.exposeGc ? ['--expose-gc'] : []),
    '--import',
    join(here, 'ts-hooks.ts'),
    join(here, 'gateway-process.ts'),
    file,
  ];
  const [command, args] =
    options.nofile === undefined
      ? [NODE_BIN, nodeArgs]
      : ['prlimit', [`--nofile=${options.nofile}:${options.nofile}`, '--', NODE_BIN, ...nodeArgs]];
  const child: ChildProcess = spawn(command, args, {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, WSGATE_CHILD_LOG: options.logLevel ?? 'info', NODE_NO_WARNINGS: '1' },
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  collectLines(child.stdout, stdout);
  collectLines(child.stderr, stderr);
  let alive = true;
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => {
      alive = false;
      resolve(code ?? signal ?? 'unknown');
    }),
  );
  const ready = await new Promise<ChildReady>((resolve, reject) => {
    const onMessage = (m: ChildReady) => {
      if (m.type === 'ready') resolve(m);
    };
    child.on('message', onMessage);
    void exited.then((code) => reject(new Error(`gateway child exited (${code}) before ready: ${stderr.join('\n')}`)));
  });
  const pending: ((s: ChildStats) => void)[] = [];
  child.on('message', (m: ChildStats | ChildReady) => {
    if (m.type === 'stats') pending.shift()?.(m);
  });
  return {
    pid: child.pid ?? 0,
    port: ready.port,
    tlsPort: ready.tlsPort,
    adminPort: ready.adminPort,
    stdout,
    stderr,
    exited,
    get alive() {
      return alive;
    },
    stats: () =>
      new Promise<ChildStats>((resolve, reject) => {
        if (!alive) return reject(new Error('gateway child is not running'));
        pending.push(resolve);
        child.send({ type: 'stats' });
      }),
    stop: async () => {
      if (!alive) return;
      child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function collectLines(stream: NodeJS.ReadableStream | null, into: string[]): void {
  if (!stream) return;
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line !== '') into.push(line);
  });
}
