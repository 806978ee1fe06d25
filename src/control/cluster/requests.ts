// Request/reply over the cluster IPC channel: each request carries an id, the worker's reply settles it. A request
// fails when the worker is not connected, does not answer within WORKER_REPLY_TIMEOUT_MS, or exits first.

import type { Worker } from 'node:cluster';
import type { FromWorker, WorkerRequest } from './messages.js';

/** How long the primary waits for a worker to answer a request (metrics, status, reload). */
export const WORKER_REPLY_TIMEOUT_MS = 10_000;

interface Waiter {
  readonly worker: Worker;
  readonly label: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
}

export class WorkerRequests {
  private nextId = 1;
  private readonly pending = new Map<number, Waiter>();

  /** Sends the request `make(id)` to `worker` (`label` names it in errors); resolves with the reply's value. */
  request(worker: Worker, label: string, make: (id: number) => WorkerRequest): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${label} did not answer within ${WORKER_REPLY_TIMEOUT_MS} ms`));
      }, WORKER_REPLY_TIMEOUT_MS);
      const settle =
        <T>(fn: (value: T) => void) =>
        (value: T) => {
          clearTimeout(timer);
          fn(value);
        };
      this.pending.set(id, { worker, label, resolve: settle(resolve), reject: settle(reject) });
      if (!worker.isConnected()) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new Error(`${label} is not connected`));
        return;
      }
      worker.send(make(id));
    });
  }

  /** Settles the request a reply answers (replies to forgotten requests are ignored). */
  settle(reply: Extract<FromWorker, { type: 'wsgate:reply' }>): void {
    const waiter = this.pending.get(reply.id);
    if (!waiter) return;
    this.pending.delete(reply.id);
    if (reply.ok) waiter.resolve(reply.value);
    else waiter.reject(new Error(reply.error));
  }

  /** `worker` exited: whoever waits for its answer (a scrape, a status call, a reload) learns now. */
  workerGone(worker: Worker, why: string): void {
    for (const [id, waiter] of this.pending) {
      if (waiter.worker !== worker) continue;
      this.pending.delete(id);
      waiter.reject(new Error(`${waiter.label} exited (${why})`));
    }
  }
}
