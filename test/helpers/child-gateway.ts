// A gateway in a child process, two ways. spawnGateway runs the TypeScript sources through gateway-process.ts
// (optionally under `prlimit --nofile`) and talks to it over IPC, so a test can starve it of file descriptors,
// watch it crash or not, and read its own fd/handle/heap numbers. runCli runs the built CLI
// (`node dist/src/cli.js --config FILE`) as an operator does, so a test can send it signals and read its logs.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { ConfigObject } from './gateway.js';
import type { ChildReady, ChildStats, StatsError } from './gateway-process.js';
import { NODE_BIN, ROOT } from './paths.js';
import { delay, waitFor } from './wait.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Writes `config` as YAML to config.yaml in a fresh temporary directory; returns the file's path. */
export function writeConfig(config: ConfigObject): string {
  const file = join(mkdtempSync(join(tmpdir(), 'wsgate-child-')), 'config.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

// ── The sources, over IPC ───────────────────────────────────────────────────────────────────────

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
  /** Extra environment variables for the child. */
  env?: Record<string, string>;
}

export async function spawnGateway(config: ConfigObject, options: ChildOptions = {}): Promise<ChildGateway> {
  const nodeArgs = [
    ...(options.exposeGc ? ['--expose-gc'] : []),
    '--import',
    join(here, 'ts-hooks.ts'),
    join(here, 'gateway-process.ts'),
    writeConfig(config),
  ];
  const [command, args] =
    options.nofile === undefined
      ? [NODE_BIN, nodeArgs]
      : ['prlimit', [`--nofile=${options.nofile}:${options.nofile}`, '--', NODE_BIN, ...nodeArgs]];
  const child: ChildProcess = spawn(command, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, WSGATE_CHILD_LOG: options.logLevel ?? 'info', NODE_NO_WARNINGS: '1', ...options.env },
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  onLines(child.stdout, (line) => stdout.push(line));
  onLines(child.stderr, (line) => stderr.push(line));
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
  // Replies come in request order; each waiting stats() gets the next one (a report or an error).
  const pending: { resolve: (s: ChildStats) => void; reject: (err: Error) => void }[] = [];
  child.on('message', (m: ChildStats | ChildReady | StatsError) => {
    if (m.type === 'stats') pending.shift()?.resolve(m);
    else if (m.type === 'stats-error')
      pending.shift()?.reject(new Error(`gateway child could not report: ${m.message}`));
  });
  void exited.then(() => {
    for (const p of pending.splice(0)) p.reject(new Error('gateway child exited before reporting'));
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
        pending.push({ resolve, reject });
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

/** Calls `onLine` with each complete, non-empty line of `stream`. */
function onLines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  if (!stream) return;
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line !== '') onLine(line);
  });
}

// ── The built CLI ───────────────────────────────────────────────────────────────────────────────

/** Newest modification time under `dir` (recursively), for "is dist/ older than src/?". */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Builds dist/ with tsc when it is missing or older than src/ (`npm test` builds first; a direct vitest run may
 * not have). A lock directory keeps two test files from building at once.
 */
export async function ensureBuilt(): Promise<void> {
  const cli = join(ROOT, 'dist', 'src', 'cli.js');
  const fresh = () => {
    try {
      return statSync(cli).mtimeMs >= newestMtime(join(ROOT, 'src'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // no build yet
      throw err;
    }
  };
  if (fresh()) return;
  const lock = join(ROOT, 'dist', '.ops-test-build.lock');
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Another test file is building: wait for it.
      await delay(200);
      if (fresh()) return;
    }
  }
  try {
    const result = spawnSync(
      NODE_BIN,
      [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
      {
        cwd: ROOT,
        encoding: 'utf8',
      },
    );
    if (!fresh()) throw new Error(`build failed:\n${result.stdout}${result.stderr}`);
  } finally {
    rmdirSync(lock);
  }
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly lines: string[];
  /** Parsed pino JSON lines. */
  readonly logs: Record<string, unknown>[];
  readonly exited: Promise<{ code: number | null; signal: string | null; atMs: number }>;
  /** Resolves with the first log line whose msg is `msg` (and that matches `where`). */
  logLine(
    msg: string,
    where?: (line: Record<string, unknown>) => boolean,
    ms?: number,
  ): Promise<Record<string, unknown>>;
  /** Waits for the 'wsgate ready' log line: the first listener's port and the admin port. */
  ready(): Promise<{ port: number; adminPort: number }>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Runs the built CLI on `configFile`; `wrap` runs it through another command (`ip netns exec NAME`), `env` adds
 * environment variables.
 */
export function runCli(
  configFile: string,
  extraArgs: string[] = [],
  options: { wrap?: string[]; env?: Record<string, string> } = {},
): CliProcess {
  const command = [...(options.wrap ?? []), NODE_BIN, join(ROOT, 'dist', 'src', 'cli.js'), '--config', configFile];
  const child = spawn(command[0] as string, [...command.slice(1), ...extraArgs], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_NO_WARNINGS: '1', ...options.env },
  });
  const lines: string[] = [];
  const logs: Record<string, unknown>[] = [];
  onLines(child.stdout, (line) => {
    lines.push(line);
    if (line.startsWith('{')) logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  onLines(child.stderr, (line) => lines.push(`stderr: ${line}`));
  const exited = new Promise<{ code: number | null; signal: string | null; atMs: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, atMs: performance.now() })),
  );
  const logLine: CliProcess['logLine'] = async (msg, where = () => true, ms = 15_000) => {
    let found: Record<string, unknown> | undefined;
    await waitFor(
      () => {
        found = logs.find((l) => l.msg === msg && where(l));
        return found !== undefined;
      },
      ms,
      `log line "${msg}" (output so far:\n${lines.join('\n')})`,
    );
    return found as Record<string, unknown>;
  };
  return {
    child,
    lines,
    logs,
    exited,
    logLine,
    ready: async () => {
      const line = await logLine('wsgate ready');
      const listeners = line.listeners as { port: number }[];
      return { port: listeners[0]?.port ?? 0, adminPort: line.adminPort as number };
    },
    kill: (signal = 'SIGTERM') => child.kill(signal),
  };
}
