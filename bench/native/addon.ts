// Builds and loads the native pump of the issue-20 experiment (pump.cc): g++ straight against the Node-API headers
// of the `node-api-headers` package, no node-gyp, nothing downloaded. The Node-API symbols resolve from the node
// binary when it loads the library. Built on demand (by the bench and the test), never by `npm ci`.

import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository root, from bench/native (tests run the source) or dist/bench/native (the bench runs the build). */
export const REPO_ROOT = HERE.includes(`${join('dist', 'bench')}`)
  ? join(HERE, '..', '..', '..')
  : join(HERE, '..', '..');
const SOURCE = join(REPO_ROOT, 'bench', 'native', 'pump.cc');
const HEADERS = join(REPO_ROOT, 'node_modules', 'node-api-headers', 'include');
/** Where the library is built (WSGATE_NATIVE_ADDON overrides it, e.g. to try a build beside a running bench). */
export const ADDON_PATH =
  process.env.WSGATE_NATIVE_ADDON ?? join(REPO_ROOT, 'dist', 'bench', 'native', 'wsgate_pump.node');

const CXX = process.env.CXX ?? 'g++';
export const CXX_FLAGS = [
  '-O2',
  '-std=c++17',
  '-fPIC',
  '-shared',
  '-pthread',
  '-Wall',
  '-Wextra',
  '-fvisibility=hidden',
  '-DNODE_GYP_MODULE_NAME=wsgate_pump',
];

/** Why the addon cannot be built here (no compiler), or undefined when it can. */
export function compilerMissing(): string | undefined {
  const r = spawnSync(CXX, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${CXX} not found (apt-get install g++)`;
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** Compiles pump.cc unless the library is newer than it; returns the library's path. Throws with g++'s output. */
export function buildAddon(): string {
  if (mtime(ADDON_PATH) > mtime(SOURCE)) return ADDON_PATH;
  mkdirSync(dirname(ADDON_PATH), { recursive: true });
  // Written beside and renamed: a test and a bench building at once each load a complete file.
  const tmp = `${ADDON_PATH}.${process.pid}.tmp`;
  const r = spawnSync(CXX, [...CXX_FLAGS, '-I', HEADERS, SOURCE, '-o', tmp], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the native pump failed:\n${r.stderr || r.error?.message}`);
  renameSync(tmp, ADDON_PATH);
  return ADDON_PATH;
}

/** Direction limits as the addon takes them: 0 = unlimited. */
export interface NativeLimits {
  readonly messagesPerSecond: number;
  readonly burstMessages: number;
  readonly bytesPerSecond: number;
  readonly maxMessageBytes: number;
  readonly maxFramesPerMessage: number;
  readonly controlFramesPerSecond: number;
}

/** One ended tunnel, as the addon reports it. */
export interface NativeEnded {
  readonly id: number;
  readonly closeCode: number;
  readonly initiator: 'client' | 'backend' | 'proxy';
  readonly reason: string;
  readonly bytesClientToBackend: number;
  readonly bytesBackendToClient: number;
  readonly messagesClientToBackend: number;
  readonly messagesBackendToClient: number;
}

/** Counter slots of counters() (pump.cc, enum Counter). */
export const COUNTER = {
  active: 0,
  opened: 1,
  ended: 2,
  bytesC2B: 3,
  bytesB2C: 4,
  messagesC2B: 5,
  messagesB2C: 6,
  controlFrames: 7,
  violations: 8,
  limits: 9,
  queuedBytes: 10,
  accepted: 11,
  refused: 12,
  splicedBytes: 13,
} as const;

interface RawAddon {
  start(threads: number, onEnded: (records: Float64Array) => void, spliceMinBytes: number): void;
  add(
    clientFd: number,
    backendFd: number,
    limits: readonly number[],
    rsv1Allowed: boolean,
    earlyFromClient: Buffer | undefined,
    earlyFromBackend: Buffer | undefined,
  ): number;
  counters(): Float64Array;
  closeAll(code: number): void;
  listen(port: number, limits: readonly number[], decide?: (records: Float64Array, heads: Buffer) => void): number;
  setRoutes(routes: readonly NativeRoute[]): void;
  decide(id: number, thread: number, status: number, port: number, request?: Buffer, accept?: string): void;
  readonly reasons: readonly string[];
}

/** A route of the native accept path: longest `prefix` of the request target wins; the backend by IPv4 address. */
export interface NativeRoute {
  readonly prefix: string;
  readonly host: string;
  readonly port: number;
}

export interface NativePump {
  add(
    clientFd: number,
    backendFd: number,
    clientToBackend: NativeLimits,
    backendToClient: NativeLimits,
    rsv1Allowed: boolean,
    earlyFromClient: Buffer | undefined,
    earlyFromBackend: Buffer | undefined,
  ): number;
  counters(): Float64Array;
  closeAll(code: number): void;
  /**
   * Accepts on 127.0.0.1:`port` (0: any) in every pump thread (SO_REUSEPORT) and does the upgrade natively with
   * the routes of setRoutes(); returns the port.
   */
  listen(port: number, clientToBackend: NativeLimits, backendToClient: NativeLimits, onHead?: OnHead): number;
  /** The answer to an onHead: refuse with an HTTP `status`, or (0) send `request` to 127.0.0.1:`port` and expect `accept`. */
  decide(head: HeadAsk, status: number, port: number, request?: Buffer, accept?: string): void;
  /** Publishes a new immutable routing table for the native accept path (a reload swaps it whole). */
  setRoutes(routes: readonly NativeRoute[]): void;
}

/** A complete upgrade head read natively, for the JS side to decide about (listen with onHead). */
export interface HeadAsk {
  readonly id: number;
  readonly thread: number;
  /** The client's IPv4 address, dotted. */
  readonly ip: string;
  /** The head up to and including its blank line (a view of the batch's buffer, valid during the call). */
  readonly head: Buffer;
}
export type OnHead = (ask: HeadAsk) => void;

const INITIATORS = ['client', 'backend', 'proxy'] as const;
const RECORD_SLOTS = 8;

function limitsArray(l: NativeLimits): number[] {
  const n = (v: number) => (Number.isFinite(v) && v > 0 ? v : 0);
  return [
    n(l.messagesPerSecond),
    n(l.burstMessages),
    n(l.bytesPerSecond),
    n(l.maxMessageBytes),
    n(l.maxFramesPerMessage),
    n(l.controlFramesPerSecond),
  ];
}

/**
 * Loads the library at `path` and starts `threads` pump threads; `onEnded` hears of every tunnel that ended. With
 * `spliceMinBytes` > 0, the payload of frames with at least that much left moves with splice(2).
 */
export function startNativePump(
  path: string,
  threads: number,
  onEnded: (end: NativeEnded) => void,
  spliceMinBytes = 0,
): NativePump {
  const module = { exports: {} as RawAddon };
  process.dlopen(module, path);
  const raw = module.exports;
  raw.start(
    threads,
    (records) => {
      for (let i = 0; i + RECORD_SLOTS <= records.length; i += RECORD_SLOTS) {
        onEnded({
          id: records[i]!,
          closeCode: records[i + 1]!,
          initiator: INITIATORS[records[i + 2]!] ?? 'proxy',
          reason: raw.reasons[records[i + 3]!] ?? 'unknown',
          bytesClientToBackend: records[i + 4]!,
          bytesBackendToClient: records[i + 5]!,
          messagesClientToBackend: records[i + 6]!,
          messagesBackendToClient: records[i + 7]!,
        });
      }
    },
    spliceMinBytes,
  );
  return {
    add: (clientFd, backendFd, c2b, b2c, rsv1Allowed, earlyFromClient, earlyFromBackend) =>
      raw.add(
        clientFd,
        backendFd,
        [...limitsArray(c2b), ...limitsArray(b2c)],
        rsv1Allowed,
        earlyFromClient,
        earlyFromBackend,
      ),
    counters: () => raw.counters(),
    closeAll: (code) => raw.closeAll(code),
    listen: (port, c2b, b2c, onHead) =>
      raw.listen(
        port,
        [...limitsArray(c2b), ...limitsArray(b2c)],
        onHead === undefined
          ? undefined
          : (records, heads) => {
              for (let i = 0; i + 5 <= records.length; i += 5) {
                const ip = records[i + 2]!;
                onHead({
                  id: records[i]!,
                  thread: records[i + 1]!,
                  ip: `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`,
                  head: heads.subarray(records[i + 3]!, records[i + 3]! + records[i + 4]!),
                });
              }
            },
      ),
    decide: (head, status, port, request, accept) => raw.decide(head.id, head.thread, status, port, request, accept),
    setRoutes: (routes) => raw.setRoutes(routes),
  };
}
