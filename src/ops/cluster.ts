// Cluster mode (`workers: N` > 1): the primary forks N workers (node:cluster) that share the listeners, restarts
// a crashed worker with back-off, and is the one place that owns the config. It validates every reload and hands
// the workers the validated text, coordinates the drain, serves the admin listener, and answers /metrics with
// the workers' registries aggregated (prom-client's AggregatorRegistry) plus its own ops metrics, so every
// sample is counted by exactly one process. Consistent hashing needs no coordination: every worker builds the
// same ring from the same config.

import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { type Aggregator, AggregatorRegistry, collectDefaultMetrics, Registry } from 'prom-client';
import { AdminServer } from '../admin/server.js';
import { parseConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { Gateway, type ReloadSummary } from '../gateway.js';
import { type CertificatePair, generateSelfSigned } from '../listen/tls.js';
import type { Logger } from '../observe/log.js';
import { OpsMetrics } from './metrics.js';
import type { ConfigTarget, ReloadController } from './reload.js';
import {
  composeStatus,
  type LastReload,
  mergeProcessStatus,
  type ProcessStatus,
  RateTracker,
  type Status,
  type WorkerStatus,
} from './status.js';

/** Worker restarts back off from this delay, doubling per crash in a row, up to RESTART_MAX_MS. */
export const RESTART_MIN_MS = 100;
export const RESTART_MAX_MS = 30_000;
/** A worker that ran this long resets the back-off. */
export const STABLE_AFTER_MS = 60_000;
/** How long the primary waits for workers to answer a request (metrics, status, reload). */
export const WORKER_REPLY_TIMEOUT_MS = 10_000;

export function resolveWorkers(workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

// ── Messages between primary and workers (JSON over the cluster IPC channel) ──────────────────────

type ToWorker =
  | {
      readonly type: 'wsgate:start';
      readonly file: string;
      readonly text: string;
      readonly generation: number;
      /** One generated certificate for every worker's TLS listeners without files (see GatewayOptions). */
      readonly fallbackCert: CertificatePair;
    }
  | { readonly type: 'wsgate:reload'; readonly id: number; readonly text: string; readonly generation: number }
  | { readonly type: 'wsgate:metrics'; readonly id: number }
  | { readonly type: 'wsgate:status'; readonly id: number }
  | { readonly type: 'wsgate:shutdown'; readonly acceptDelayMs: number; readonly drainMs: number };

type FromWorker =
  | { readonly type: 'wsgate:ready'; readonly generation: number }
  | { readonly type: 'wsgate:failed'; readonly error: string }
  | { readonly type: 'wsgate:reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'wsgate:reply'; readonly id: number; readonly ok: false; readonly error: string };

/** A registry metric as getMetricsAsJSON gives it (what AggregatorRegistry.aggregate takes). */
type MetricJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

/** Counters and histograms only grow; a dead worker's may stay in the totals. (prom-client's typings declare a
 * numeric enum for `type`; at run time it is the name.) */
function onlyGrows(metric: MetricJson): boolean {
  const type = String(metric.type);
  return type === 'counter' || type === 'histogram';
}

function isFromWorker(message: unknown): message is FromWorker {
  return (
    typeof message === 'object' &&
    message !== null &&
    String((message as { type?: unknown }).type).startsWith('wsgate:')
  );
}

// ── Primary ─────────────────────────────────────────────────────────────────────────────────────

interface WorkerSlot {
  readonly id: number;
  worker: Worker;
  state: 'starting' | 'ready' | 'stopping';
  startedAt: Date;
  generation: number;
  restarts: number;
  /** Crashes in a row without a stable run in between: the back-off exponent. */
  crashes: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** The worker's registry as its last scrape answered it; undefined before the first and after its death. */
  lastMetrics: MetricJson[] | undefined;
}

export interface PrimaryOptions {
  readonly file: string;
  readonly text: string;
  readonly config: Config;
  readonly workers: number;
  readonly log: Logger;
}

export class Primary implements ConfigTarget {
  readonly registry = new Registry();
  readonly ops: OpsMetrics;
  readonly slots: WorkerSlot[] = [];
  stopping = false;
  lastReload: LastReload | null = null;
  /** Set by the CLI once the controller exists; POST /reload goes there. */
  controller: ReloadController | undefined;
  private readonly log: Logger;
  private readonly file: string;
  private applied: { text: string; config: Config; generation: number };
  private readonly admin: AdminServer;
  private readonly startedAt = new Date();
  private readonly rates = new RateTracker();
  private nextRequestId = 1;
  private readonly pending = new Map<
    number,
    { slot: WorkerSlot; resolve: (value: unknown) => void; reject: (err: Error) => void }
  >();
  private shutdownPromise: Promise<void> | undefined;
  /**
   * Counters and histograms of workers that died, at their last scraped values, summed: kept in every /metrics so
   * that no counter total goes back when a worker is replaced (Prometheus would read that as a reset and rate()
   * would jump). A chain, so that deaths close together merge in order.
   */
  private retired: Promise<MetricJson[]> = Promise.resolve([]);
  /**
   * Made once and given to every worker (also to replacements, and kept across reloads), so that TLS listeners
   * without files serve one certificate whichever worker accepts, as a single process does.
   */
  private readonly fallbackCert: Promise<CertificatePair> = generateSelfSigned();

  constructor(options: PrimaryOptions) {
    this.log = options.log;
    this.file = options.file;
    this.applied = { text: options.text, config: options.config, generation: 1 };
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
    this.ops = new OpsMetrics(this.registry);
    this.ops.workers.set(0);
    this.admin = new AdminServer({
      ready: () => !this.stopping && this.slots.some((s) => s.state === 'ready'),
      metrics: () => this.metrics(),
      status: () => this.status(),
      reload: (trigger) =>
        this.controller
          ? this.controller.reload(trigger)
          : Promise.resolve({ ok: false, status: 501, errors: ['reload is not set up'] }),
      token: () => this.applied.config.admin.token,
    });
    // Node's default on Linux is round-robin: the primary accepts every connection and passes it to a worker over
    // IPC, which cost ~160 µs of CPU per WebSocket handshake here (334 vs 174 µs in total with 2 workers). With
    // "kernel" the workers accept from the shared socket themselves; the kernel spreads them (not exactly evenly).
    // Settable only before the first fork.
    cluster.schedulingPolicy = options.config.workersAccept === 'primary' ? cluster.SCHED_RR : cluster.SCHED_NONE;
    cluster.setupPrimary({ silent: false });
    cluster.on('message', (worker, message: unknown) => this.onMessage(worker, message));
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal));
    for (let i = 0; i < options.workers; i++) {
      const slot: WorkerSlot = {
        id: i + 1,
        worker: undefined as unknown as Worker,
        state: 'starting',
        startedAt: new Date(),
        generation: 0,
        restarts: 0,
        crashes: 0,
        restartTimer: undefined,
        lastMetrics: undefined,
      };
      this.slots.push(slot);
      this.fork(slot);
    }
  }

  get adminPort(): number {
    return this.admin.port;
  }

  /** Binds the admin listener and resolves once every worker is ready (rejects if one fails to start). */
  async start(): Promise<void> {
    const config = this.applied.config;
    const address = await this.admin.listen(config.admin.port, config.admin.address);
    this.log.info({ address: config.admin.address, port: address.port }, 'admin listening');
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (this.slots.every((s) => s.state === 'ready')) {
          cluster.removeListener('message', check);
          cluster.removeListener('message', failed);
          resolve();
        }
      };
      const failed = (_worker: Worker, message: unknown) => {
        if (isFromWorker(message) && message.type === 'wsgate:failed') reject(new Error(message.error));
      };
      cluster.on('message', check);
      cluster.on('message', failed);
    });
  }

  private fork(slot: WorkerSlot): void {
    slot.state = 'starting';
    slot.startedAt = new Date();
    slot.generation = 0;
    slot.worker = cluster.fork({ WSGATE_WORKER_ID: String(slot.id) });
    // A send racing the worker's death fails asynchronously; its exit handler does the rest.
    slot.worker.on('error', (err: Error) => this.log.warn({ worker: slot.id, err }, 'worker channel error'));
    slot.worker.once('online', async () => {
      const fallbackCert = await this.fallbackCert;
      const { text, generation } = this.applied;
      this.send(slot, { type: 'wsgate:start', file: this.file, text, generation, fallbackCert });
    });
  }

  private slotOf(worker: Worker): WorkerSlot | undefined {
    return this.slots.find((s) => s.worker === worker);
  }

  private send(slot: WorkerSlot, message: ToWorker): boolean {
    if (!slot.worker.isConnected()) return false;
    slot.worker.send(message);
    return true;
  }

  private onMessage(worker: Worker, message: unknown): void {
    if (!isFromWorker(message)) return;
    const slot = this.slotOf(worker);
    if (message.type === 'wsgate:ready' && slot) {
      slot.state = this.stopping ? 'stopping' : 'ready';
      slot.generation = message.generation;
      this.ops.workers.set(this.slots.filter((s) => s.state === 'ready').length);
      this.log.info({ worker: slot.id, workerPid: worker.process.pid, generation: message.generation }, 'worker ready');
      void this.sync(slot);
    } else if (message.type === 'wsgate:failed') {
      this.log.error({ worker: slot?.id, error: message.error }, 'worker failed to start');
    } else if (message.type === 'wsgate:reply') {
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.ok) waiter.resolve(message.value);
      else waiter.reject(new Error(message.error));
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slotOf(worker);
    if (!slot) return;
    this.retire(slot);
    // Whoever waits for this worker's answer (a scrape, a status call, a reload) learns now, not at the timeout.
    for (const [id, waiter] of this.pending) {
      if (waiter.slot !== slot) continue;
      this.pending.delete(id);
      waiter.reject(new Error(`worker ${slot.id} exited (${signal ?? code})`));
    }
    this.ops.workers.set(this.slots.filter((s) => s.state === 'ready' && s.worker !== worker).length);
    if (this.stopping) {
      this.log.info({ worker: slot.id, workerPid: worker.process.pid, code, signal }, 'worker exited');
      slot.state = 'stopping';
      return;
    }
    const ranMs = Date.now() - slot.startedAt.getTime();
    slot.crashes = ranMs >= STABLE_AFTER_MS ? 1 : slot.crashes + 1;
    const delayMs = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.crashes - 1));
    slot.restarts++;
    slot.state = 'starting';
    this.log.error(
      {
        worker: slot.id,
        workerPid: worker.process.pid,
        code,
        signal,
        ranMs,
        restartInMs: delayMs,
        restarts: slot.restarts,
      },
      'worker exited unexpectedly; restarting',
    );
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (!this.stopping) this.fork(slot);
    }, delayMs);
  }

  /** A worker that came up on an older generation (it started during a reload) gets the current config. */
  private async sync(slot: WorkerSlot): Promise<void> {
    const { text, generation } = this.applied;
    if (slot.state !== 'ready' || slot.generation === generation) return;
    try {
      await this.request(slot, (id) => ({ type: 'wsgate:reload', id, text, generation }));
      slot.generation = generation;
    } catch (err) {
      this.log.error({ worker: slot.id, err }, 'worker could not apply the current configuration; restarting it');
      slot.worker.kill('SIGKILL');
    }
  }

  private request(slot: WorkerSlot, make: (id: number) => ToWorker): Promise<unknown> {
    const id = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`worker ${slot.id} did not answer within ${WORKER_REPLY_TIMEOUT_MS} ms`));
      }, WORKER_REPLY_TIMEOUT_MS);
      this.pending.set(id, {
        slot,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      if (!this.send(slot, make(id))) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new Error(`worker ${slot.id} is not connected`));
      }
    });
  }

  private readySlots(): WorkerSlot[] {
    return this.slots.filter((s) => s.state === 'ready' && s.worker.isConnected());
  }

  /** ConfigTarget: every ready worker applies the config; if one cannot, the others go back to the old one. */
  async apply(text: string, config: Config, generation: number): Promise<unknown> {
    const previous = this.applied;
    const slots = this.readySlots();
    const results = await Promise.allSettled(
      slots.map((s) => this.request(s, (id) => ({ type: 'wsgate:reload', id, text, generation }))),
    );
    const failures = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`worker ${slots[i]?.id}: ${(r.reason as Error).message}`] : [],
    );
    if (failures.length > 0) {
      const applied = slots.filter((_s, i) => results[i]?.status === 'fulfilled');
      await Promise.allSettled(
        applied.map((s) =>
          this.request(s, (id) => ({
            type: 'wsgate:reload',
            id,
            text: previous.text,
            generation: previous.generation,
          })),
        ),
      );
      throw new Error(failures.join('; '));
    }
    for (const s of slots) s.generation = generation;
    this.applied = { text, config, generation };
    // Workers that became ready meanwhile started on the old text.
    for (const s of this.readySlots()) void this.sync(s);
    return {
      workers: slots.map((s, i) => ({
        worker: s.id,
        ...((results[i] as PromiseFulfilledResult<unknown>).value as ReloadSummary),
      })),
    };
  }

  recordReload(last: LastReload): void {
    this.lastReload = last;
  }

  /** /metrics: every ready worker's registry, dead workers' counters, and the primary's own, summed per series. */
  async metrics(): Promise<{ text: string; contentType: string }> {
    const slots = this.readySlots();
    const asked = slots.map((s) => s.worker);
    const answers = await Promise.allSettled(
      slots.map((s) => this.request(s, (id) => ({ type: 'wsgate:metrics', id }))),
    );
    const workerMetrics: MetricJson[][] = [];
    slots.forEach((slot, i) => {
      // A worker that died after answering is in `retired` already, with its answer before: counting this one
      // too would count it twice in this scrape, and the next scrape would go back.
      if (slot.worker !== asked[i] || slot.state !== 'ready') return;
      const answer = answers[i];
      if (answer?.status === 'fulfilled') slot.lastMetrics = answer.value as MetricJson[];
      // A worker too busy to answer in time counts with its last answer, so its counters do not seem to go back.
      if (slot.lastMetrics !== undefined) workerMetrics.push(slot.lastMetrics);
    });
    const own: MetricJson[] = await this.registry.getMetricsAsJSON();
    const all = [...workerMetrics, await this.retired, own].map((list) =>
      // The worst process's event-loop lag is what matters, not the average with an idle primary.
      list.map((m) => (m.name.startsWith('nodejs_eventloop_lag_') ? { ...m, aggregator: 'max' as Aggregator } : m)),
    );
    const aggregated = AggregatorRegistry.aggregate(all);
    return { text: await aggregated.metrics(), contentType: aggregated.contentType };
  }

  /** Moves a dead worker's last scraped counters and histograms into `retired`; its gauges go with it. */
  private retire(slot: WorkerSlot): void {
    const last = slot.lastMetrics;
    slot.lastMetrics = undefined;
    if (last === undefined) return;
    const kept = last.filter(onlyGrows);
    this.retired = this.retired.then(async (sofar) => {
      try {
        return await AggregatorRegistry.aggregate([sofar, kept]).getMetricsAsJSON();
      } catch (err) {
        this.log.warn({ worker: slot.id, err }, 'could not keep a dead worker’s counters; they leave the totals');
        return sofar;
      }
    });
  }

  async workerStatuses(): Promise<{ reports: ProcessStatus[]; list: WorkerStatus[] }> {
    const reports = new Map<WorkerSlot, ProcessStatus>();
    await Promise.all(
      this.readySlots().map(async (s) => {
        try {
          reports.set(s, (await this.request(s, (id) => ({ type: 'wsgate:status', id }))) as ProcessStatus);
        } catch (err) {
          this.log.warn({ worker: s.id, err }, 'worker did not report its status');
        }
      }),
    );
    const list = this.slots.map((s) => {
      const r = reports.get(s);
      return {
        id: s.id,
        pid: s.worker.process.pid ?? 0,
        state: s.state,
        startedAt: s.startedAt.toISOString(),
        restarts: s.restarts,
        generation: s.generation,
        connections: r?.connections.active ?? 0,
        connectionsTotal: r?.connections.total ?? 0,
      };
    });
    return { reports: [...reports.values()], list };
  }

  async status(): Promise<Status> {
    const { reports, list } = await this.workerStatuses();
    const merged = mergeProcessStatus(reports);
    const config = this.applied.config;
    return composeStatus({
      process: { ...merged, generation: this.applied.generation, draining: this.stopping || merged.draining },
      startedAt: this.startedAt,
      ready: !this.stopping && this.slots.some((s) => s.state === 'ready'),
      configFile: this.file,
      lastReload: this.lastReload,
      admin: { address: config.admin.address, port: this.adminPort, tokenRequired: config.admin.token !== undefined },
      workers: { configured: this.slots.length, live: list.filter((w) => w.state === 'ready').length, list },
      rates: this.rates,
    });
  }

  /**
   * Coordinated drain: readiness off now, every worker runs its own shutdown (accept delay, spread 1001s,
   * deadline) and exits; workers still alive well past the deadline are killed. Resolves when all are gone.
   */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= this.runShutdown();
    return this.shutdownPromise;
  }

  private async runShutdown(): Promise<void> {
    this.stopping = true;
    const config = this.applied.config;
    const acceptDelayMs = config.shutdown.acceptDelayMs;
    const drainMs = config.timeouts.drainMs;
    for (const s of this.slots) {
      clearTimeout(s.restartTimer);
      s.state = 'stopping';
      this.send(s, { type: 'wsgate:shutdown', acceptDelayMs, drainMs });
    }
    const alive = () => this.slots.filter((s) => !s.worker.isDead());
    const deadline = Date.now() + acceptDelayMs + drainMs + 5000;
    while (alive().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of alive()) {
      this.log.warn({ worker: s.id, workerPid: s.worker.process.pid }, 'worker did not finish draining; killing it');
      s.worker.kill('SIGKILL');
    }
    this.ops.workers.set(0);
    await this.admin.close();
  }

  /** Second signal: no more waiting. */
  killAll(): void {
    for (const s of this.slots) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
  }
}

// ── Worker ──────────────────────────────────────────────────────────────────────────────────────

/** Runs in a cluster worker: waits for the primary's config, serves the listeners, answers its requests. */
export function runWorker(makeLog: (level: string) => Logger): void {
  let log = makeLog('info');
  // The primary coordinates: a terminal's Ctrl-C and SIGHUP reach the whole process group, but only the primary
  // acts on them. SIGTERM sent to one worker drains just that worker (the primary then starts a fresh one).
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  let gateway: Gateway | undefined;
  let file = '';
  const reply = (id: number, work: () => Promise<unknown>) => {
    work().then(
      (value) => process.send?.({ type: 'wsgate:reply', id, ok: true, value }),
      (err: Error) => process.send?.({ type: 'wsgate:reply', id, ok: false, error: err.message }),
    );
  };
  const drainAndExit = (acceptDelayMs?: number, drainMs?: number) => {
    if (!gateway) process.exit(0);
    gateway.shutdown({ acceptDelayMs, drainMs }).then(
      (destroyed) => {
        log.info({ destroyed }, 'worker drained');
        process.exit(0);
      },
      (err: Error) => {
        log.error({ err }, 'worker drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => drainAndExit());
  process.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'wsgate:start': {
        file = message.file;
        let config: Config;
        try {
          config = parseConfig(message.text, file);
        } catch (err) {
          // The primary validated this text; only a TLS file vanishing in between can get here.
          process.send?.({ type: 'wsgate:failed', error: (err as Error).message }, undefined, undefined, () =>
            process.exit(1),
          );
          return;
        }
        log = makeLog(config.log.level);
        Gateway.start(config, {
          log,
          admin: false,
          generation: message.generation,
          fallbackCert: message.fallbackCert,
        }).then(
          (gw) => {
            gateway = gw;
            process.send?.({ type: 'wsgate:ready', generation: gw.generation });
          },
          (err: Error) => {
            log.error({ err }, 'worker could not start');
            process.send?.({ type: 'wsgate:failed', error: err.message }, undefined, undefined, () => process.exit(1));
          },
        );
        return;
      }
      case 'wsgate:reload':
        return reply(message.id, async () => {
          if (!gateway) throw new Error('not started');
          return gateway.reload(parseConfig(message.text, file), message.generation);
        });
      case 'wsgate:metrics':
        return reply(message.id, async () => {
          if (!gateway) throw new Error('not started');
          return gateway.metrics.registry.getMetricsAsJSON();
        });
      case 'wsgate:status':
        return reply(message.id, async () => {
          if (!gateway) throw new Error('not started');
          return gateway.processStatus();
        });
      case 'wsgate:shutdown':
        return drainAndExit(message.acceptDelayMs, message.drainMs);
    }
  });
}
