// The chaos scheduler: a seeded PRNG (mulberry32, so a seed replays the same choices) picks the next event and
// the pause before it (every few seconds), fires it without waiting for the previous one to finish (so effects
// overlap: a worker dies during a rebalance, DNS changes while a drain runs), and keeps a timestamped log of
// everything it did, printed with the seed when a run fails.

import { EVENT_KINDS, type EventKind } from './ledger.js';

export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
}

export class EventLog {
  readonly lines: string[] = [];
  private readonly t0 = performance.now();

  add(text: string): void {
    this.lines.push(`${((performance.now() - this.t0) / 1000).toFixed(3).padStart(9)} s  ${text}`);
  }
}

/** Runs an event: resolves when its own work is done (its effects may last longer). */
export type Fire = (kind: EventKind, random: Random) => Promise<void>;

export interface SchedulerOptions {
  readonly seed: number;
  /** Pause between events: minMs + a random share of spreadMs. */
  readonly minMs: number;
  readonly spreadMs: number;
  readonly fire: Fire;
  readonly log: EventLog;
}

export class Scheduler {
  private readonly random: Random;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly running = new Set<Promise<void>>();
  private readonly options: SchedulerOptions;

  constructor(options: SchedulerOptions) {
    this.options = options;
    // The scheduler's own stream: the clients' choices do not shift the events a seed gives.
    this.random = new Random(options.seed ^ 0x5eed);
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      const kind = this.random.pick(EVENT_KINDS);
      // Each event gets its own stream, seeded from the scheduler's, so its inner choices replay too.
      const own = new Random(this.random.int(2 ** 32));
      const run = this.options
        .fire(kind, own)
        .catch((err: Error) => this.options.log.add(`${kind} failed: ${err.stack}`));
      this.running.add(run);
      void run.finally(() => this.running.delete(run));
      this.timer = setTimeout(tick, this.options.minMs + this.random.int(this.options.spreadMs));
    };
    this.timer = setTimeout(tick, this.options.minMs);
  }

  /** Fires no more events and waits for the running ones. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.all([...this.running]);
  }
}
