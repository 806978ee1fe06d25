// The control plane, once per process tree: the admin listener (probes, /metrics, status page and API, POST
// /reload), the reload controller with its triggers (SIGHUP, file changes, the admin API), the operations metrics
// and the status document. It drives the data plane through a Fleet (one Gateway in process, or cluster workers)
// and never reaches into it otherwise.

import { Registry } from 'prom-client';
import { AdminServer, type ReloadAnswer } from '../admin/server.js';
import type { Config } from '../config/types.js';
import { TICKET_KEY_ROTATION_MS } from '../listen/tls-sessions.js';
import type { Logger } from '../observe/log.js';
import type { Fleet, MetricsText } from './fleet.js';
import { OpsMetrics } from './ops-metrics.js';
import { ReloadController, type ReloadOutcome, type ReloadTrigger } from './reload.js';
import { composeStatus, mergeProcessStatus, RateTracker, type Status } from './status.js';
import { FileWatcher } from './watch.js';

export interface ControlPlaneOptions {
  readonly fleet: Fleet;
  /** The configuration the fleet started with. */
  readonly config: Config;
  readonly log: Logger;
  /** The config file to reload from; without one there is nothing to reload (POST /reload answers 501). */
  readonly file?: string;
  /** Reload when the config file or its TLS files change (default true when there is a file). */
  readonly watch?: boolean;
  readonly watchIntervalMs?: number;
  readonly watchDebounceMs?: number;
  /** Environment for `${VAR}` references in the config (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
}

export class ControlPlane {
  readonly fleet: Fleet;
  /** The operations metrics' own registry: counted once per process tree, whatever the fleet. */
  readonly registry = new Registry();
  readonly ops: OpsMetrics;
  /** Undefined without a config file. */
  readonly controller: ReloadController | undefined;
  private readonly initialConfig: Config;
  private readonly log: Logger;
  private readonly admin: AdminServer;
  private readonly watcher: FileWatcher | undefined;
  private readonly startedAt = new Date();
  private readonly rates = new RateTracker();
  private shutdownPromise: Promise<number | undefined> | undefined;
  private readonly ticketKeyRotation: NodeJS.Timeout;

  private constructor(options: ControlPlaneOptions) {
    this.fleet = options.fleet;
    this.initialConfig = options.config;
    this.log = options.log;
    const fleet = options.fleet;
    this.ops = new OpsMetrics(this.registry, () => fleet.liveProcesses);
    const file = options.file;
    let watcher: FileWatcher | undefined;
    if (file !== undefined) {
      const controller = new ReloadController({
        file,
        config: options.config,
        target: fleet,
        ops: this.ops,
        log: options.log,
        ...(options.env ? { env: options.env } : {}),
        onApplied: () => watcher?.watch(controller.watchedFiles()),
      });
      this.controller = controller;
      if (options.watch !== false) {
        watcher = new FileWatcher(() => void controller.reload('watch'), {
          ...(options.watchIntervalMs === undefined ? {} : { intervalMs: options.watchIntervalMs }),
          ...(options.watchDebounceMs === undefined ? {} : { debounceMs: options.watchDebounceMs }),
        });
        watcher.watch(controller.watchedFiles());
      }
    }
    this.watcher = watcher;
    this.ticketKeyRotation = setInterval(() => fleet.rotateTicketKey(), TICKET_KEY_ROTATION_MS);
    this.ticketKeyRotation.unref();
    this.admin = new AdminServer({
      ready: () => fleet.ready,
      metrics: () => this.metrics(),
      status: () => this.status(),
      reload: () => this.reloadFromAdmin(),
      token: () => this.config.admin.token,
      pools: async () => ({ pools: mergeProcessStatus((await fleet.reports()).reports).pools }),
      controlBackend: (pool, backend, change) => fleet.controlBackend(pool, backend, change),
      connections: (filter) => fleet.connections(filter),
    });
  }

  /** Builds the control plane for `fleet` and binds the admin listener (rejects if it cannot). */
  static async start(options: ControlPlaneOptions): Promise<ControlPlane> {
    const control = new ControlPlane(options);
    const { address, port } = options.config.admin;
    try {
      const bound = await control.admin.listen(port, address);
      options.log.info({ address, port: bound.port }, 'admin listening');
    } catch (err) {
      control.stopTimers();
      throw err;
    }
    return control;
  }

  /** The configuration in force: the last one applied by a reload, or the one the fleet started with. */
  get config(): Config {
    return this.controller?.current ?? this.initialConfig;
  }

  get adminPort(): number {
    return this.admin.port;
  }

  /** Reloads the config file (SIGHUP, the watcher, POST /reload); resolves with the outcome, never rejects. */
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    if (!this.controller) {
      return Promise.resolve({
        ok: false,
        status: 501,
        errors: ['this gateway was started without a config file, so there is nothing to reload'],
      });
    }
    return this.controller.reload(trigger);
  }

  private reloadFromAdmin(): Promise<ReloadAnswer> {
    return this.reload('admin');
  }

  metrics(): Promise<MetricsText> {
    return this.fleet.metrics(this.registry);
  }

  /** The GET /api/status document. */
  async status(): Promise<Status> {
    const { reports, workers } = await this.fleet.reports();
    const merged = mergeProcessStatus(reports);
    const config = this.config;
    return composeStatus({
      process: { ...merged, generation: this.fleet.generation, draining: this.fleet.stopping || merged.draining },
      startedAt: this.startedAt,
      ready: this.fleet.ready,
      configFile: this.controller?.file ?? config.file,
      lastReload: this.controller?.lastReload ?? null,
      admin: { address: config.admin.address, port: this.adminPort, tokenRequired: config.admin.token !== undefined },
      workers,
      rates: this.rates,
    });
  }

  /**
   * Graceful stop of the whole tree: no more reloads from file changes, the fleet drains and stops, then the admin
   * listener closes (probes and scrapes answer until the end). Resolves as Fleet.shutdown does. Idempotent.
   */
  shutdown(): Promise<number | undefined> {
    this.shutdownPromise ??= (async () => {
      this.stopTimers();
      try {
        return await this.fleet.shutdown();
      } finally {
        await this.admin.close();
      }
    })();
    return this.shutdownPromise;
  }

  /** Stops the control plane alone (the watcher and the admin listener), leaving the fleet to its owner. */
  async close(): Promise<void> {
    this.stopTimers();
    await this.admin.close();
  }

  private stopTimers(): void {
    this.watcher?.close();
    clearInterval(this.ticketKeyRotation);
  }
}
