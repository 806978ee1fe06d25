// The pool's pinned metrics, registered on the gateway's registry: backend up/down, health checks, ejections,
// rebalance closes and backends per state. Label children are resolved once per backend, not per event.

import { Counter, Gauge, type Registry } from 'prom-client';
import { ADMIN_STATES, type AdminState } from './admin-state.js';
import { MEMBER_STATES, type MemberState } from './member.js';
import { PROBE_RESULTS, type ProbeResult } from './probe.js';

/** Series of one (pool, backend), made when the backend joins and removed when it leaves. */
export interface BackendSeries {
  readonly up: { set(value: number): void };
  readonly checks: Readonly<Record<ProbeResult, { inc(): void }>>;
  readonly ejections: { inc(): void };
  /** Sets wsgate_backend_admin_state: 1 for `state`, 0 for the others. */
  adminState(state: AdminState): void;
}

// prom-client refuses a second metric of the same name on one registry, and a reload builds new runtimes on the
// same registry: so the metrics exist once per registry and every pool of every runtime shares them.
const byRegistry = new WeakMap<Registry, PoolMetrics>();

export class PoolMetrics {
  readonly backendUp: Gauge<'pool' | 'backend'>;
  readonly healthChecks: Counter<'pool' | 'backend' | 'result'>;
  readonly ejections: Counter<'pool' | 'backend'>;
  readonly rebalanceCloses: Counter<'pool'>;
  readonly poolBackends: Gauge<'pool' | 'state'>;
  readonly adminStates: Gauge<'pool' | 'backend' | 'state'>;

  static for(registry: Registry): PoolMetrics {
    let metrics = byRegistry.get(registry);
    if (!metrics) {
      metrics = new PoolMetrics(registry);
      byRegistry.set(registry, metrics);
    }
    return metrics;
  }

  private constructor(registry: Registry) {
    const registers = [registry];
    this.backendUp = new Gauge({
      name: 'wsgate_backend_up',
      help: 'Whether a backend is healthy and not ejected (1) or not (0).',
      labelNames: ['pool', 'backend'],
      registers,
      // With workers, every worker keeps its own pool: /metrics shows one worker's view, not the sum (which read 2
      // for "up"). The workers check on their own and agree within a check or two.
      aggregator: 'first',
    });
    this.healthChecks = new Counter({
      name: 'wsgate_backend_health_checks_total',
      help: 'Active health checks by result (success, failure, timeout).',
      labelNames: ['pool', 'backend', 'result'],
      registers,
    });
    this.ejections = new Counter({
      name: 'wsgate_backend_ejections_total',
      help: 'Times a backend was ejected after consecutive failed connects or handshakes.',
      labelNames: ['pool', 'backend'],
      registers,
    });
    this.rebalanceCloses = new Counter({
      name: 'wsgate_rebalance_closes_total',
      help: 'Connections closed with 1012 so they reconnect to their key’s new owner (rebalance or removal).',
      labelNames: ['pool'],
      registers,
    });
    this.poolBackends = new Gauge({
      name: 'wsgate_pool_backends',
      help: 'Backends in a pool by state (healthy, unhealthy, ejected).',
      labelNames: ['pool', 'state'],
      registers,
      aggregator: 'first', // one worker's count, as for wsgate_backend_up
    });
    this.adminStates = new Gauge({
      name: 'wsgate_backend_admin_state',
      help: 'A backend’s admin state (admin API): 1 for the current one of active, drain and disabled, 0 for the others.',
      labelNames: ['pool', 'backend', 'state'],
      registers,
      aggregator: 'first', // every worker applies the change before the API answers
    });
  }

  /** Makes the pool's series visible at 0 before anything happens. */
  addPool(pool: string): { inc(): void } {
    for (const state of MEMBER_STATES) this.poolBackends.set({ pool, state }, 0);
    const closes = this.rebalanceCloses.labels({ pool });
    closes.inc(0);
    return closes;
  }

  /** Drops a pool's series (a pool removed by reload must not keep reporting its last state). */
  removePool(pool: string): void {
    for (const state of MEMBER_STATES) this.poolBackends.remove({ pool, state });
    this.rebalanceCloses.remove({ pool });
  }

  setStates(pool: string, counts: Readonly<Record<MemberState, number>>): void {
    for (const state of MEMBER_STATES) this.poolBackends.set({ pool, state }, counts[state]);
  }

  addBackend(pool: string, backend: string): BackendSeries {
    const check = (result: ProbeResult) => {
      const child = this.healthChecks.labels({ pool, backend, result });
      child.inc(0);
      return child;
    };
    const checks = { success: check('success'), failure: check('failure'), timeout: check('timeout') };
    const ejections = this.ejections.labels({ pool, backend });
    ejections.inc(0);
    const states = ADMIN_STATES.map((state) => [state, this.adminStates.labels({ pool, backend, state })] as const);
    const adminState = (current: AdminState) => {
      for (const [state, child] of states) child.set(state === current ? 1 : 0);
    };
    adminState('active');
    return { up: this.backendUp.labels({ pool, backend }), checks, ejections, adminState };
  }

  removeBackend(pool: string, backend: string): void {
    this.backendUp.remove({ pool, backend });
    this.ejections.remove({ pool, backend });
    for (const result of PROBE_RESULTS) this.healthChecks.remove({ pool, backend, result });
    for (const state of ADMIN_STATES) this.adminStates.remove({ pool, backend, state });
  }
}
