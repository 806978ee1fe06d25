// The shape of bench/results/latest.json: everything one run measured, plus the machine it ran on.

export type Transport = 'ws' | 'wss';
/** `max`: closed loop at saturation; `rate`: the same fixed offered rate for every target. */
export type EchoLoad = 'max' | 'rate';
export type HandshakeKind = 'ws' | 'wss-rsa2048' | 'wss-ecdsa-p256';

export interface EchoResult {
  readonly target: string;
  readonly transport: Transport;
  readonly load: EchoLoad;
  /** Offered messages/s of a fixed-rate run; null for `max`. */
  readonly offeredPerSecond: number | null;
  readonly connections: number;
  readonly payloadBytes: number;
  readonly window: number;
  readonly seconds: number;
  readonly messages: number;
  readonly messagesPerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  /** CPU seconds (utime + stime, all threads, process tree) of the measured process during the interval. */
  readonly cpuSeconds: number;
  /** CPU seconds per 1,000 echoed messages (each message crosses the proxy twice: there and back). */
  readonly cpuSecondsPer1kMessages: number;
  /** Share of one core the measured process used (1.0 = a full core: it was the bottleneck). */
  readonly cpuCoreShare: number;
  /** `perf stat -e instructions` per message, when the kernel lets us count them. */
  readonly instructionsPerMessage: number | null;
  readonly errors: number;
  readonly dropped: number;
  readonly failedToOpen: number;
  readonly firstError: string | null;
}

export interface HandshakeResult {
  readonly target: string;
  readonly kind: HandshakeKind;
  readonly concurrency: number;
  readonly seconds: number;
  readonly handshakes: number;
  readonly handshakesPerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly cpuSeconds: number;
  readonly cpuSecondsPer1kHandshakes: number;
  readonly cpuCoreShare: number;
  readonly errors: number;
  readonly firstError: string | null;
}

/** Plain HTTP GETs through the target (autocannon, kept-alive connections): the Socket.IO long-poll path. */
export interface HttpResult {
  readonly target: string;
  readonly connections: number;
  readonly seconds: number;
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly cpuSeconds: number;
  /** CPU seconds of the target's processes per 1,000 requests. */
  readonly cpuSecondsPer1kRequests: number;
  readonly cpuCoreShare: number;
  /** Socket errors, timeouts and non-2xx answers. */
  readonly errors: number;
}

export interface IdleResult {
  readonly target: string;
  readonly transport: Transport;
  readonly requested: number;
  readonly opened: number;
  readonly failed: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  readonly bytesPerConnection: number;
  /** Connections that closed while being held. */
  readonly dropped: number;
  readonly firstError: string | null;
}

export interface ProfileRow {
  readonly functionName: string;
  readonly location: string;
  readonly selfMs: number;
  /** Share of the non-idle samples. */
  readonly selfShare: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  readonly idleMs: number;
  readonly top: readonly ProfileRow[];
  readonly byCategory: readonly { readonly category: string; readonly selfMs: number; readonly selfShare: number }[];
  readonly messagesPerSecond: number;
}

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly nginx: string | null;
  readonly haproxy: string | null;
  readonly openssl: string | null;
  readonly fdLimit: number;
  readonly perfInstructions: 'supported' | 'not supported';
  readonly pinned: boolean;
}

export interface WsgateFeatures {
  /** The built tunnel runs the frame scanner (read from dist/src/tunnel/tunnel.js). */
  readonly frameScanningInTunnel: boolean;
  /** The built tunnel applies per-connection token buckets. */
  readonly limitsInTunnel: boolean;
  /** "workers: N" is accepted by the config. */
  readonly workers: boolean;
}

export interface TargetCheck {
  readonly goal: string;
  readonly wsgate: number | null;
  readonly peer: number | null;
  readonly ratio: number | null;
  readonly bound: string;
  readonly met: boolean | null;
}

export interface BenchResults {
  readonly startedAt: string;
  readonly smoke: boolean;
  readonly machine: Machine;
  readonly settings: Readonly<Record<string, unknown>>;
  readonly wsgate: WsgateFeatures;
  readonly targets: readonly { readonly name: string; readonly description: string }[];
  readonly skipped: readonly { readonly target: string; readonly reason: string }[];
  readonly echo: readonly EchoResult[];
  readonly handshake: readonly HandshakeResult[];
  readonly idle: readonly IdleResult[];
  /** Absent in results written before the http mode existed. */
  readonly http?: readonly HttpResult[];
  readonly profile: ProfileSummary | null;
  readonly checks: readonly TargetCheck[];
}
