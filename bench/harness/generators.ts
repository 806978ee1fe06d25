// Drives the load-generator processes (bench/loadgen/worker.ts): one job each, then ready → measure → stop, and
// merges what they report. Every wait is bounded; a generator that misbehaves is killed.

import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { build, decodeFromCompressedBase64, type Histogram } from 'hdr-histogram-js';
import type { Command, Job, Report } from '../loadgen/protocol.js';
import { hasTaskset } from './processes.js';
import { PACKAGE_ROOT } from './targets.js';

const WORKER_SCRIPT = join(PACKAGE_ROOT, 'dist', 'bench', 'loadgen', 'worker.js');
/** Opening thousands of TLS connections on a shared core takes a while; more than this is a failure. */
const READY_TIMEOUT_MS = 120_000;
const RESULT_TIMEOUT_MS = 20_000;

type Ready = Extract<Report, { type: 'ready' }>;
type Result = Extract<Report, { type: 'result' }>;

interface Generator {
  readonly child: ChildProcess;
  readonly ready: Promise<Ready>;
  readonly result: Promise<Result>;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function startGenerator(job: Job, cpus: string | undefined): Generator {
  const pinned = cpus !== undefined && hasTaskset();
  const command = pinned ? 'taskset' : process.execPath;
  const args = pinned ? ['-c', cpus, process.execPath, WORKER_SCRIPT] : [WORKER_SCRIPT];
  const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let onReady: (r: Ready) => void = () => {};
  let onResult: (r: Result) => void = () => {};
  let onFail: (e: Error) => void = () => {};
  const ready = new Promise<Ready>((resolve, reject) => {
    onReady = resolve;
    onFail = reject;
  });
  let failResult: (e: Error) => void = () => {};
  const result = new Promise<Result>((resolve, reject) => {
    onResult = resolve;
    failResult = reject;
  });
  // Avoid unhandled rejections for promises nobody awaits yet.
  ready.catch(() => {});
  result.catch(() => {});
  child.on('error', (err) => onFail(err));
  child.on('message', (report: Report) => {
    if (report.type === 'ready') onReady(report);
    else onResult(report);
  });
  child.once('exit', (code) => {
    const err = new Error(`load generator exited with ${code}`);
    onFail(err);
    failResult(err);
  });
  child.send({ type: 'job', job } satisfies Command);
  return { child, ready, result };
}

export interface LoadRun {
  readonly ready: readonly Ready[];
  /** Harness-side wall time of the measured interval. */
  readonly seconds: number;
  readonly results: readonly Result[];
  readonly histogram: Histogram;
  /** Whatever the caller measured at the start and end of the interval. */
  readonly probeStart: number;
  readonly probeEnd: number;
}

export interface LoadPlan {
  /** One job per generator process. */
  readonly jobs: readonly Job[];
  readonly cpus: string | undefined;
  /** Load runs this long before the measured interval starts. */
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Read at the start and at the end of the measured interval (e.g. target CPU seconds, RSS). */
  readonly probe: () => number;
  /** Called once all generators are ready, before the warmup (idle uses it to read RSS before). */
  readonly onReady?: (ready: readonly Ready[]) => void | Promise<void>;
}

function send(g: Generator, cmd: Command): void {
  // A generator that already left (it exits right after reporting) cannot be told anything: that is fine.
  if (g.child.connected) g.child.send(cmd, () => {});
}

export async function runLoad(plan: LoadPlan): Promise<LoadRun> {
  const generators = plan.jobs.map((job) => startGenerator(job, plan.cpus));
  try {
    const ready = await withTimeout(
      Promise.all(generators.map((g) => g.ready)),
      READY_TIMEOUT_MS,
      'load generators getting ready',
    );
    await plan.onReady?.(ready);
    await new Promise((r) => setTimeout(r, plan.warmupMs));
    const probeStart = plan.probe();
    const t0 = performance.now();
    for (const g of generators) send(g, { type: 'measure' });
    await new Promise((r) => setTimeout(r, plan.measureMs));
    const probeEnd = plan.probe();
    const seconds = (performance.now() - t0) / 1000;
    for (const g of generators) send(g, { type: 'stop' });
    const results = await withTimeout(
      Promise.all(generators.map((g) => g.result)),
      RESULT_TIMEOUT_MS,
      'load generators reporting',
    );
    const histogram = build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 60_000_000,
      numberOfSignificantValueDigits: 3,
    });
    for (const r of results) if (r.histogram) histogram.add(decodeFromCompressedBase64(r.histogram));
    return { ready, seconds, results, histogram, probeStart, probeEnd };
  } finally {
    await Promise.all(
      generators.map(
        (g) =>
          new Promise<void>((resolve) => {
            if (g.child.exitCode !== null || g.child.signalCode !== null) return resolve();
            const timer = setTimeout(() => g.child.kill('SIGKILL'), 15_000);
            g.child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            send(g, { type: 'stop' });
          }),
      ),
    );
  }
}

/** Splits `total` into `parts` near-equal positive shares (the last ones may be zero when total < parts). */
export function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}
