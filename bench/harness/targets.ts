// The things the benchmark measures, each started fresh on loopback and stopped by the harness: the echo backend
// alone ("direct"), wsgate (limits on / off, one process; two workers when supported), nginx and HAProxy. A
// proxied target owns its own echo backend. The measured process runs on PROXY_CPUS; the backend behind a proxy
// and the load generators share LOAD_CPUS, so the proxy has one core to itself (see BENCHMARKS.md, "Method").

import { type ChildProcess, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../../src/control/node-flags.js';
import type { EchoBackendPorts } from '../backend/echo-server.js';
import type { Endpoint } from '../loadgen/protocol.js';
import type { BenchCerts } from './certs.js';
import { ensureInstalled } from './peers-install.js';
import { pickLoopbackPorts, waitForPorts } from './ports.js';
import { exited, processTree, sleep, startProcess, stopProcess, withSbinPath } from './processes.js';

/** dist/bench/harness → repository root. */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const DIST_BENCH = join(PACKAGE_ROOT, 'dist', 'bench');
const PEERS_DIR = join(PACKAGE_ROOT, 'bench', 'peers');

export const PROXY_CPUS = '1';
export const LOAD_CPUS = '0';
const ALL_CPUS = '0,1';

/** A target that fails to come up (e.g. its picked port was taken meanwhile) is started again with new ports. */
const START_ATTEMPTS = 3;
const START_TIMEOUT_MS = 20_000;
/** How long a freshly started target must stay alive after its ports answer (a bind failure kills it). */
const SETTLE_MS = 250;

export interface Endpoints {
  readonly ws: Endpoint;
  readonly wssRsa: Endpoint;
  readonly wssEcdsa: Endpoint;
}

export interface RunningTarget {
  readonly name: string;
  readonly endpoints: Endpoints;
  /** The processes whose CPU and memory are the target's figures (the proxy; for "direct", the backend). */
  measuredPids(): number[];
  stop(): Promise<void>;
}

export interface TargetContext {
  readonly dir: string;
  readonly certs: BenchCerts;
  readonly pin: boolean;
  readonly fdLimit: number;
  readonly log: (line: string) => void;
}

export interface StartOptions {
  /** Start wsgate under `node --cpu-prof` writing into this directory. */
  readonly cpuProfileDir?: string;
}

export interface TargetSpec {
  readonly name: string;
  readonly description: string;
  /** Why the target cannot run here, or undefined when it can. */
  unavailable(ctx: TargetContext): string | undefined;
  start(ctx: TargetContext, options?: StartOptions): Promise<RunningTarget>;
}

function endpoints(ws: number, wssRsa: number, wssEcdsa: number): Endpoints {
  const at = (port: number, tls: boolean): Endpoint => ({ host: '127.0.0.1', port, path: '/', tls });
  return { ws: at(ws, false), wssRsa: at(wssRsa, true), wssEcdsa: at(wssEcdsa, true) };
}

let startCount = 0;

function logFile(ctx: TargetContext, name: string): string {
  return join(ctx.dir, `${name}-${++startCount}.log`);
}

/** The echo backend in its own process; with `tls`, also on an RSA and an ECDSA TLS port. */
export async function startEchoBackend(
  ctx: TargetContext,
  cpus: string | undefined,
  tls: boolean,
): Promise<{ child: ChildProcess; ports: EchoBackendPorts }> {
  const args = [join(DIST_BENCH, 'backend', 'echo-server.js')];
  if (tls) {
    args.push('--rsa-cert', ctx.certs.rsa.cert, '--rsa-key', ctx.certs.rsa.key);
    args.push('--ecdsa-cert', ctx.certs.ecdsa.cert, '--ecdsa-key', ctx.certs.ecdsa.key);
  }
  const file = logFile(ctx, 'echo-backend');
  const child = startProcess(process.execPath, args, { cpus: ctx.pin ? cpus : undefined, logFile: file, ipc: true });
  const { ports } = await firstMessage<{ ports: EchoBackendPorts }>(child, 'echo backend', file);
  return { child, ports };
}

/** The first IPC message of a child that reports where it listens; rejects if it exits or says nothing in time. */
export function firstMessage<M>(child: ChildProcess, what: string, log: string): Promise<M> {
  return new Promise<M>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start (log: ${log})`)), START_TIMEOUT_MS);
    child.once('message', (msg: M) => {
      clearTimeout(timer);
      resolve(msg);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code} (log: ${log})`));
    });
  });
}

/**
 * Picks ports, lets `launch` write its config and start, and waits until every port answers and the process is
 * still alive a moment later; on failure starts again with fresh ports (see ports.ts for why this is tolerated).
 */
async function startOnPickedPorts(
  name: string,
  launch: (ports: number[]) => { child: ChildProcess; log: string },
): Promise<{ child: ChildProcess; ports: number[] }> {
  let lastLog = '';
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const ports = await pickLoopbackPorts(3);
    const { child, log } = launch(ports);
    lastLog = log;
    const up = await waitForPorts(ports, START_TIMEOUT_MS, () => exited(child));
    if (up) await sleep(SETTLE_MS);
    if (up && !exited(child)) return { child, ports };
    await stopProcess(child, 1000);
  }
  let tail = '';
  try {
    tail = readFileSync(lastLog, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    tail = '(no log)';
  }
  throw new Error(`${name} did not start after ${START_ATTEMPTS} attempts; last log ${lastLog}:\n${tail}`);
}

/**
 * Starts a proxy target in front of an echo backend of its own: the backend first, then `launch` on picked ports
 * (see startOnPickedPorts); stopping the target stops both, and a failed start stops the backend.
 */
async function startBehindProxy(
  ctx: TargetContext,
  name: string,
  launch: (ports: number[], backendPort: number) => { child: ChildProcess; log: string },
): Promise<RunningTarget> {
  const backend = await startEchoBackend(ctx, LOAD_CPUS, false);
  try {
    const { child, ports } = await startOnPickedPorts(name, (ports) => launch(ports, backend.ports.ws));
    return {
      name,
      endpoints: endpoints(ports[0] ?? 0, ports[1] ?? 0, ports[2] ?? 0),
      measuredPids: () => processTree(child.pid as number),
      async stop() {
        // SIGTERM: nginx's "fast shutdown" (the worker goes with the master), HAProxy's and wsgate's stop.
        await stopProcess(child);
        await stopProcess(backend.child);
      },
    };
  } catch (err) {
    await stopProcess(backend.child);
    throw err;
  }
}

function fill(template: string, values: Readonly<Record<string, string | number>>): string {
  return template.replace(/\{\{([A-Z_]+)\}\}/g, (_whole, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`template value ${key} missing`);
    return String(v);
  });
}

// ---- direct ----------------------------------------------------------------------------------------------------

const direct: TargetSpec = {
  name: 'direct',
  description: 'the echo backend alone (no proxy): the ceiling of this machine and load generator',
  unavailable: () => undefined,
  async start(ctx) {
    const backend = await startEchoBackend(ctx, PROXY_CPUS, true);
    const p = backend.ports;
    return {
      name: 'direct',
      endpoints: endpoints(p.ws, p.wssRsa ?? 0, p.wssEcdsa ?? 0),
      measuredPids: () => [backend.child.pid as number],
      stop: () => stopProcess(backend.child),
    };
  },
};

// ---- wsgate ----------------------------------------------------------------------------------------------------

/** Per-connection limits far above anything the benchmark sends: the code path runs, nothing ever trips. */
const UNREACHABLE_LIMITS = {
  messagesPerSecond: 1e9,
  burstMessages: 1e9,
  bytesPerSecond: 1e12,
  maxMessageBytes: '64MiB',
  maxFramesPerMessage: 1e6,
  controlFramesPerSecond: 1e6,
};

interface WsgateVariant {
  readonly name: string;
  readonly description: string;
  readonly limits: boolean;
  /** The route's `protocol`: "strict" scans every frame; "off" forwards bytes unscanned (no limits possible). */
  readonly protocol: 'strict' | 'off';
  readonly workers: number | undefined;
}

function wsgateConfig(ctx: TargetContext, v: WsgateVariant, ports: readonly number[], backendPort: number): object {
  const tls = (files: { cert: string; key: string }) => ({ cert: files.cert, key: files.key });
  return {
    ...(v.workers !== undefined ? { workers: v.workers } : {}),
    listeners: [
      { name: 'ws', address: '127.0.0.1', port: ports[0] },
      { name: 'wss-rsa', address: '127.0.0.1', port: ports[1], tls: tls(ctx.certs.rsa) },
      { name: 'wss-ecdsa', address: '127.0.0.1', port: ports[2], tls: tls(ctx.certs.ecdsa) },
    ],
    admin: { address: '127.0.0.1', port: 0 },
    routes: [{ name: 'echo', match: { path: '/' }, pool: 'echo', protocol: v.protocol }],
    pools: { echo: { backends: [`ws://127.0.0.1:${backendPort}`] } },
    limits: {
      maxConnections: 1_000_000,
      maxConnectionsPerIp: 1_000_000,
      ...(v.limits ? { perConnection: UNREACHABLE_LIMITS } : {}),
    },
    timeouts: { handshake: '10s', idle: '1h', drain: '1s' },
    log: { level: 'warn' },
  };
}

const WSGATE_CLI = join(PACKAGE_ROOT, 'dist', 'src', 'cli.js');

/** Does this build of wsgate accept the config? (`--check`; used to detect features such as `workers`.) */
function wsgateAccepts(ctx: TargetContext, config: object, name: string): boolean {
  const file = join(ctx.dir, `${name}-probe.yaml`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  try {
    execFileSync(process.execPath, [WSGATE_CLI, '--config', file, '--check'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function wsgateTarget(v: WsgateVariant): TargetSpec {
  return {
    name: v.name,
    description: v.description,
    unavailable(ctx) {
      if (v.workers === undefined) return undefined;
      return wsgateAccepts(ctx, wsgateConfig(ctx, v, [1, 2, 3], 4), v.name)
        ? undefined
        : `this build of wsgate does not accept "workers: ${v.workers}" (multi-process support not landed yet)`;
    },
    start(ctx, options) {
      return startBehindProxy(ctx, v.name, (picked, backendPort) => {
        const file = join(ctx.dir, `${v.name}.yaml`);
        // JSON is YAML: the config loader reads it as is.
        writeFileSync(file, JSON.stringify(wsgateConfig(ctx, v, picked, backendPort), null, 2));
        // As shipped (npm start, the bin, Docker); WSGATE_NODE_FLAGS overrides them for experiments.
        const override = process.env.WSGATE_NODE_FLAGS;
        const flags = override === undefined ? NODE_FLAGS : override.split(' ').filter((f) => f !== '');
        const args = options?.cpuProfileDir
          ? [...flags, '--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, WSGATE_CLI, '--config', file]
          : [...flags, WSGATE_CLI, '--config', file];
        const log = logFile(ctx, v.name);
        const cpus = v.workers !== undefined && v.workers > 1 ? ALL_CPUS : PROXY_CPUS;
        const started = startProcess(process.execPath, args, { cpus: ctx.pin ? cpus : undefined, logFile: log });
        return { child: started, log };
      });
    },
  };
}

// ---- nginx -----------------------------------------------------------------------------------------------------

/** The template values naming the echo backend's port and the proxy's three listening ports. */
function portValues(ports: readonly number[], backendPort: number): Record<string, number> {
  return {
    BACKEND_PORT: backendPort,
    PORT_WS: ports[0] ?? 0,
    PORT_WSS_RSA: ports[1] ?? 0,
    PORT_WSS_ECDSA: ports[2] ?? 0,
  };
}

function proxyFdBudget(ctx: TargetContext): { nofile: number; maxConnections: number } {
  // Every proxied connection holds two descriptors in the proxy; leave room for listeners, logs and libraries.
  return { nofile: ctx.fdLimit, maxConnections: Math.floor((ctx.fdLimit - 500) / 2) };
}

const nginx: TargetSpec = {
  name: 'nginx',
  description: 'nginx (worker_processes 1), proxy_http_version 1.1 with Upgrade/Connection, proxy_buffering off',
  unavailable: (ctx) => ensureInstalled('nginx', 'nginx-light', ctx.log),
  start(ctx) {
    const budget = proxyFdBudget(ctx);
    return startBehindProxy(ctx, 'nginx', (ports, backendPort) => {
      const prefix = join(ctx.dir, `nginx-${++startCount}`);
      for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs']) {
        mkdirSync(join(prefix, d), { recursive: true });
      }
      const values = {
        PREFIX: prefix,
        NOFILE: budget.nofile,
        WORKER_CONNECTIONS: budget.nofile - 100,
        ...portValues(ports, backendPort),
        CERT_RSA: ctx.certs.rsa.cert,
        KEY_RSA: ctx.certs.rsa.key,
        CERT_ECDSA: ctx.certs.ecdsa.cert,
        KEY_ECDSA: ctx.certs.ecdsa.key,
      };
      writeFileSync(
        join(prefix, 'nginx.conf'),
        fill(readFileSync(join(PEERS_DIR, 'nginx.conf.template'), 'utf8'), values),
      );
      writeFileSync(
        join(prefix, 'proxy.inc'),
        fill(readFileSync(join(PEERS_DIR, 'nginx-proxy.inc.template'), 'utf8'), values),
      );
      const log = join(prefix, 'stdout.log');
      const started = startProcess(
        'nginx',
        ['-p', `${prefix}/`, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log'), '-g', 'daemon off;'],
        { cpus: ctx.pin ? PROXY_CPUS : undefined, logFile: log },
      );
      return { child: started, log: join(prefix, 'error.log') };
    });
  },
};

// ---- HAProxy ---------------------------------------------------------------------------------------------------

const haproxy: TargetSpec = {
  name: 'haproxy',
  description: 'HAProxy (nbthread 1), mode http, timeout tunnel',
  unavailable: (ctx) => ensureInstalled('haproxy', 'haproxy', ctx.log),
  start(ctx) {
    const budget = proxyFdBudget(ctx);
    return startBehindProxy(ctx, 'haproxy', (ports, backendPort) => {
      const file = join(ctx.dir, `haproxy-${++startCount}.cfg`);
      const values = {
        MAXCONN: budget.maxConnections,
        ...portValues(ports, backendPort),
        PEM_RSA: ctx.certs.rsa.pem,
        PEM_ECDSA: ctx.certs.ecdsa.pem,
      };
      writeFileSync(file, fill(readFileSync(join(PEERS_DIR, 'haproxy.cfg.template'), 'utf8'), values));
      const log = logFile(ctx, 'haproxy');
      const started = startProcess('haproxy', ['-f', file, '-db'], {
        cpus: ctx.pin ? PROXY_CPUS : undefined,
        logFile: log,
      });
      return { child: started, log };
    });
  },
};

export const TARGETS: readonly TargetSpec[] = [
  direct,
  wsgateTarget({
    name: 'wsgate',
    description: 'wsgate, one process, frame scanning (protocol: strict) and per-connection limits on (never reached)',
    limits: true,
    protocol: 'strict',
    workers: undefined,
  }),
  wsgateTarget({
    name: 'wsgate-nolimits',
    description: 'wsgate, one process, frame scanning on, no per-connection limits',
    limits: false,
    protocol: 'strict',
    workers: undefined,
  }),
  wsgateTarget({
    name: 'wsgate-off',
    description: 'wsgate, one process, frame scanning off (protocol: off) and no limits: the bare pump',
    limits: false,
    protocol: 'off',
    workers: undefined,
  }),
  wsgateTarget({
    name: 'wsgate-2w',
    description: 'wsgate with workers: 2, scanning and limits on (may use both cores: not a single-core figure)',
    limits: true,
    protocol: 'strict',
    workers: 2,
  }),
  nginx,
  haproxy,
];

/** Versions of the peers, for the machine section of the report. */
export function peerVersions(): { nginx: string | null; haproxy: string | null; openssl: string | null } {
  const run = (cmd: string, args: string[]): string | null => {
    try {
      const out = execFileSync(cmd, args, { encoding: 'utf8', env: withSbinPath(), stdio: ['ignore', 'pipe', 'pipe'] });
      return out.split('\n')[0]?.trim() || null;
    } catch (err) {
      // nginx -v prints to stderr
      const stderr = (err as { stderr?: string }).stderr;
      return stderr?.split('\n')[0]?.trim() || null;
    }
  };
  const nginxVersion = (() => {
    try {
      return execFileSync('sh', ['-c', 'nginx -v 2>&1'], { encoding: 'utf8', env: withSbinPath() }).trim() || null;
    } catch {
      return null;
    }
  })();
  return { nginx: nginxVersion, haproxy: run('haproxy', ['-v']), openssl: run('openssl', ['version']) };
}
