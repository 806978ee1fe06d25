// Operations metrics: config reloads, the running config generation, and the worker count. The control plane owns
// them (the single process, or the cluster primary), never a cluster worker, so /metrics counts each reload once.

import { Counter, Gauge, type Registry } from 'prom-client';

export type ReloadResult = 'success' | 'failure';

export class OpsMetrics {
  readonly reloads: Counter<'result'>;
  readonly generation: Gauge;
  readonly lastReloadSuccess: Gauge;
  readonly workers: Gauge;

  /** `liveProcesses` is read at each scrape for wsgate_workers. */
  constructor(registry: Registry, liveProcesses: () => number) {
    const registers = [registry];
    this.reloads = new Counter({
      name: 'wsgate_config_reload_total',
      help: 'Configuration reload attempts (SIGHUP, file change, POST /reload), by result.',
      labelNames: ['result'],
      registers,
    });
    this.generation = new Gauge({
      name: 'wsgate_config_generation',
      help: 'Generation of the running configuration: 1 at start, +1 per applied reload.',
      registers,
    });
    this.lastReloadSuccess = new Gauge({
      name: 'wsgate_config_last_reload_success_timestamp_seconds',
      help: 'Unix time the running configuration was loaded (start or last successful reload).',
      registers,
    });
    this.workers = new Gauge({
      name: 'wsgate_workers',
      help: 'Worker processes serving the listeners (1 without cluster mode).',
      registers,
      collect() {
        this.set(liveProcesses());
      },
    });
    // Both results exist from the start, so increase() sees the first failure.
    this.reloads.inc({ result: 'success' }, 0);
    this.reloads.inc({ result: 'failure' }, 0);
    this.generation.set(1);
    this.lastReloadSuccess.set(Date.now() / 1000);
  }

  applied(generation: number): void {
    this.reloads.inc({ result: 'success' });
    this.generation.set(generation);
    this.lastReloadSuccess.set(Date.now() / 1000);
  }

  failed(): void {
    this.reloads.inc({ result: 'failure' });
  }
}
