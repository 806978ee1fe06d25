// The cluster's process supervisor: forks N workers (node:cluster) that share the listeners, tells each its start
// message, restarts a crashed worker with back-off, and stops them all (drain, then SIGKILL for stragglers).
// What the workers serve and report is the fleet's business (fleet.ts).

import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '../../observe/log.js';
import { type FromWorker, isFromWorker, type ToWorker } from './messages.js';
import type { MetricJson } from './retired-metrics.js';

/** Worker restarts back off from this delay, doubling per crash in a row, up to RESTART_MAX_MS. */
export const RESTART_MIN_MS = 100;
export const RESTART_MAX_MS = 30_000;
/** A worker that ran this long resets the back-off. */
export const STABLE_AFTER_MS = 60_000;
/** Workers still alive this long past their drain deadline are killed. */
const STOP_GRACE_MS = 5000;

export interface WorkerSlot {
  /** 1..N, stable across restarts (WSGATE_WORKER_ID in the worker). */
  readonly id: number;
  worker: Worker;
  state: 'starting' | 'ready' | 'stopping';
  startedAt: Date;
  /** The config generation the worker runs. */
  generation: number;
  restarts: number;
  /** Crashes in a row without a stable run in between: the back-off exponent. */
  crashes: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** The worker's registry as its last scrape answered it; undefined before the first and after its death. */
  lastMetrics: MetricJson[] | undefined;
}

export interface SupervisorOptions {
  readonly workers: number;
  /** 'primary': the primary accepts and hands connections over (round-robin); 'kernel': workers accept. */
  readonly accept: 'primary' | 'kernel';
  readonly log: Logger;
  /** The start message for a (re)started worker: the config in force now. */
  startMessage(): Promise<Extract<ToWorker, { type: 'wsgate:start' }>>;
  /** A worker reported ready (on the generation in `slot.generation`). */
  onReady(slot: WorkerSlot): void;
  /** A worker exited (before its restart is scheduled). */
  onExit(slot: WorkerSlot, why: string): void;
  onReply(reply: Extract<FromWorker, { type: 'wsgate:reply' }>): void;
}

export class Supervisor {
  readonly slots: WorkerSlot[] = [];
  stopping = false;
  private readonly options: SupervisorOptions;
  private readonly log: Logger;

  constructor(options: SupervisorOptions) {
    this.options = options;
    this.log = options.log;
    // With "kernel" the workers accept from the shared socket themselves and the kernel spreads connections (not
    // exactly evenly); round-robin passes every connection through the primary. Settable only before the first fork.
    cluster.schedulingPolicy = options.accept === 'primary' ? cluster.SCHED_RR : cluster.SCHED_NONE;
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

  /** Resolves once every worker is ready; rejects if one fails to start. */
  allReady(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (_worker: Worker, message: unknown) => {
        if (isFromWorker(message) && message.type === 'wsgate:failed') {
          done();
          reject(new Error(message.error));
        } else if (this.slots.every((s) => s.state === 'ready')) {
          done();
          resolve();
        }
      };
      const done = () => cluster.removeListener('message', check);
      cluster.on('message', check);
    });
  }

  /** Workers that are ready and reachable. */
  readySlots(): WorkerSlot[] {
    return this.slots.filter((s) => s.state === 'ready' && s.worker.isConnected());
  }

  get readyCount(): number {
    return this.slots.filter((s) => s.state === 'ready').length;
  }

  /**
   * Tells every worker to drain (accept delay, spread 1001s, deadline) and exit; kills those still alive well past
   * the deadline. Resolves when all are gone.
   */
  async stop(acceptDelayMs: number, drainMs: number): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) {
      clearTimeout(s.restartTimer);
      s.state = 'stopping';
      send(s, { type: 'wsgate:shutdown', acceptDelayMs, drainMs });
    }
    const alive = () => this.slots.filter((s) => !s.worker.isDead());
    const deadline = Date.now() + acceptDelayMs + drainMs + STOP_GRACE_MS;
    while (alive().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of alive()) {
      this.log.warn({ worker: s.id, workerPid: s.worker.process.pid }, 'worker did not finish draining; killing it');
      s.worker.kill('SIGKILL');
    }
  }

  /** Second signal: no more waiting. */
  killAll(): void {
    for (const s of this.slots) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
  }

  private fork(slot: WorkerSlot): void {
    slot.state = 'starting';
    slot.startedAt = new Date();
    slot.generation = 0;
    slot.worker = cluster.fork({ WSGATE_WORKER_ID: String(slot.id) });
    // A send racing the worker's death fails asynchronously; its exit handler does the rest.
    slot.worker.on('error', (err: Error) => this.log.warn({ worker: slot.id, err }, 'worker channel error'));
    slot.worker.once('online', async () => send(slot, await this.options.startMessage()));
  }

  private slotOf(worker: Worker): WorkerSlot | undefined {
    return this.slots.find((s) => s.worker === worker);
  }

  private onMessage(worker: Worker, message: unknown): void {
    if (!isFromWorker(message)) return;
    const slot = this.slotOf(worker);
    if (message.type === 'wsgate:ready' && slot) {
      slot.state = this.stopping ? 'stopping' : 'ready';
      slot.generation = message.generation;
      this.log.info({ worker: slot.id, workerPid: worker.process.pid, generation: message.generation }, 'worker ready');
      this.options.onReady(slot);
    } else if (message.type === 'wsgate:failed') {
      this.log.error({ worker: slot?.id, error: message.error }, 'worker failed to start');
    } else if (message.type === 'wsgate:reply') {
      this.options.onReply(message);
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slotOf(worker);
    if (!slot) return;
    if (this.stopping) {
      slot.state = 'stopping';
      this.options.onExit(slot, String(signal ?? code));
      this.log.info({ worker: slot.id, workerPid: worker.process.pid, code, signal }, 'worker exited');
      return;
    }
    const ranMs = Date.now() - slot.startedAt.getTime();
    slot.crashes = ranMs >= STABLE_AFTER_MS ? 1 : slot.crashes + 1;
    const delayMs = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.crashes - 1));
    slot.restarts++;
    slot.state = 'starting';
    this.options.onExit(slot, String(signal ?? code));
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
}

/** Sends `message` if the worker's channel is open; false otherwise (its exit handler follows). */
export function send(slot: WorkerSlot, message: ToWorker): boolean {
  if (!slot.worker.isConnected()) return false;
  slot.worker.send(message);
  return true;
}
