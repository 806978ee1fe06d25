// The running shape built from one Config: routes with their pool, router, metric children and loggers. Built
// on the slow path (start, reload), read by every connection. A reload builds a new Runtime from the previous
// one: pools are kept by name (updated in place when their config changed), and a route whose config and pool
// are unchanged keeps its RouteRuntime object, which its live tunnels reference.

import { isDeepStrictEqual } from 'node:util';
import { RouteEdge } from '../access/edge.js';
import { EdgeMetrics } from '../access/edge-metrics.js';
import { RouteAuth } from '../access/jwt/route-auth.js';
import type { Config, RouteConfig } from '../config/types.js';
import type { RouteStats } from '../observe/hot-counts.js';
import type { Logger } from '../observe/log.js';
import { backendKey, type Metrics } from '../observe/metrics.js';
import { Pool } from '../pool/pool.js';
import { PoolMetrics } from '../pool/pool-metrics.js';
import { Router, type RouteSpec } from '../routing/router.js';

export interface RouteRuntime extends RouteSpec {
  readonly config: RouteConfig;
  readonly pool: Pool;
  readonly stats: RouteStats;
  readonly log: Logger;
  /** Access lists and client-certificate forwarding, compiled (access/edge.ts). */
  readonly edge: RouteEdge;
  /** The route's JWT check (auth.jwt) with this generation's keys; undefined: anyone may connect. */
  readonly auth: RouteAuth | undefined;
}

export class Runtime {
  readonly config: Config;
  readonly router: Router<RouteRuntime>;
  readonly routes: readonly RouteRuntime[];
  readonly pools: ReadonlyMap<string, Pool>;

  /** What changed relative to the previous runtime (everything is "added" for the first one). */
  readonly diff: RuntimeDiff;

  constructor(config: Config, metrics: Metrics, log: Logger, previous?: Runtime) {
    // Everything that can throw comes before the first change to a live pool (kept pools are updated in place
    // below): a runtime that fails to build must leave the running one as it was. Config validation has checked
    // the routes already; this is the Router's own word on them.
    for (const r of config.routes) {
      if (!config.pools.has(r.pool)) throw new Error(`route ${r.name} names unknown pool ${r.pool}`);
    }
    new Router(config.routes);
    this.config = config;
    const diff: RuntimeDiff = {
      routes: { added: [], removed: [], changed: [], unchanged: [] },
      pools: { added: [], removed: [], changed: [], unchanged: [] },
    };
    const pools = new Map<string, Pool>();
    const poolMetrics = PoolMetrics.for(metrics.registry);
    const edgeMetrics = EdgeMetrics.for(metrics.registry);
    for (const [name, poolConfig] of config.pools) {
      const old = previous?.pools.get(name);
      if (!old) {
        const poolLog = log.child({ pool: name });
        pools.set(name, new Pool(poolConfig, { log: poolLog, metrics: poolMetrics, drainMs: config.timeouts.drainMs }));
        diff.pools.added.push(name);
      } else {
        // Same Pool object: members that stay keep their tunnels; rebalancing decides about moved keys.
        old.setDrainTime(config.timeouts.drainMs);
        if (isDeepStrictEqual(old.config, poolConfig)) diff.pools.unchanged.push(name);
        else {
          old.update(poolConfig);
          diff.pools.changed.push(name);
        }
        pools.set(name, old);
      }
    }
    for (const name of previous?.pools.keys() ?? []) if (!pools.has(name)) diff.pools.removed.push(name);
    this.pools = pools;
    const oldRoutes = new Map(previous?.routes.map((r) => [r.name, r]));
    this.routes = config.routes.map((r) => {
      const pool = pools.get(r.pool);
      if (!pool) throw new Error(`route ${r.name} names unknown pool ${r.pool}`);
      // Members a pool update added need their metric children too, also for unchanged routes.
      for (const m of pool.members) metrics.childrenFor(r.name, pool.name, m.backend.id);
      const old = oldRoutes.get(r.name);
      if (old && old.pool === pool && isDeepStrictEqual(old.config, r)) {
        diff.routes.unchanged.push(r.name);
        return old;
      }
      diff.routes[old ? 'changed' : 'added'].push(r.name);
      const routeLog = log.child({ route: r.name, pool: r.pool });
      const route: RouteRuntime = {
        name: r.name,
        pathPrefix: r.pathPrefix,
        ...(r.host === undefined ? {} : { host: r.host }),
        config: r,
        pool,
        stats: metrics.statsFor(r.name),
        log: routeLog,
        edge: new RouteEdge(r, edgeMetrics),
        auth: r.jwt && new RouteAuth(r.name, r.jwt, metrics, routeLog),
      };
      return route;
    });
    for (const name of oldRoutes.keys())
      if (!config.routes.some((r) => r.name === name)) diff.routes.removed.push(name);
    this.diff = diff;
    this.router = new Router(this.routes);
  }

  /**
   * Starts the pools' health checks and DNS discovery (kept pools are already running: start is idempotent) and
   * resolves once every discovery pool had its first lookup. After a reload, stop the pools no longer configured.
   */
  async start(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.start()));
  }

  /**
   * Whether connections opened on `route` (possibly from an earlier runtime) may live on under this one: the route
   * is still here, or a route of the same name still sends to the same pool. Otherwise they are drained (1001).
   */
  keepsConnectionsOf(route: RouteRuntime): boolean {
    if (this.routes.includes(route)) return true;
    return this.routes.find((r) => r.name === route.name)?.pool === route.pool;
  }

  /** Metric keys (backendKey) of every (route, pool, backend) this runtime routes to now. */
  configuredBackendKeys(): Set<string> {
    const keys = new Set<string>();
    for (const r of this.routes)
      for (const m of r.pool.members) keys.add(backendKey(r.name, r.pool.name, m.backend.id));
    return keys;
  }

  /** Stops every pool timer (health checks, discovery, rebalancing); for the final shutdown. */
  stop(): void {
    for (const p of this.pools.values()) p.stop();
  }
}

export interface NameDiff {
  readonly added: string[];
  readonly removed: string[];
  readonly changed: string[];
  readonly unchanged: string[];
}

export interface RuntimeDiff {
  readonly routes: NameDiff;
  readonly pools: NameDiff;
}
