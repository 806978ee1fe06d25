// The running shape built from one Config: routes with their pool, router, metric children and loggers. Built
// on the slow path (start, reload), read by every connection.

import type { Config, RouteConfig } from '../config/types.js';
import type { Logger } from '../observe/log.js';
import type { Metrics, RouteStats } from '../observe/metrics.js';
import { Pool } from '../pool/pool.js';
import { PoolMetrics } from '../pool/pool-metrics.js';
import { Router, type RouteSpec } from '../routing/router.js';

export interface RouteRuntime extends RouteSpec {
  readonly config: RouteConfig;
  readonly pool: Pool;
  readonly stats: RouteStats;
  readonly log: Logger;
}

export class Runtime {
  readonly config: Config;
  readonly router: Router<RouteRuntime>;
  readonly routes: readonly RouteRuntime[];
  readonly pools: ReadonlyMap<string, Pool>;

  constructor(config: Config, metrics: Metrics, log: Logger) {
    this.config = config;
    const pools = new Map<string, Pool>();
    const poolMetrics = PoolMetrics.for(metrics.registry);
    for (const [name, poolConfig] of config.pools) {
      const poolLog = log.child({ pool: name });
      pools.set(name, new Pool(poolConfig, { log: poolLog, metrics: poolMetrics, drainMs: config.timeouts.drainMs }));
    }
    this.pools = pools;
    this.routes = config.routes.map((r) => {
      const pool = pools.get(r.pool);
      if (!pool) throw new Error(`route ${r.name} names unknown pool ${r.pool}`);
      const route: RouteRuntime = {
        name: r.name,
        pathPrefix: r.pathPrefix,
        ...(r.host === undefined ? {} : { host: r.host }),
        config: r,
        pool,
        stats: metrics.statsFor(r.name),
        log: log.child({ route: r.name, pool: r.pool }),
      };
      for (const m of pool.members) metrics.childrenFor(r.name, pool.name, m.backend.id);
      return route;
    });
    this.router = new Router(this.routes);
  }

  /**
   * Starts the pools' health checks and DNS discovery (kept pools are already running: start is idempotent) and
   * resolves once every discovery pool had its first lookup. After a reload, stop the pools no longer configured.
   */
  async start(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.start()));
  }

  /** Stops every pool timer (health checks, discovery, rebalancing); for the final shutdown. */
  stop(): void {
    for (const p of this.pools.values()) p.stop();
  }
}
