// The fleet of a cluster (`workers: N` > 1), seen from the primary: N workers (supervisor.ts) that each run a
// Gateway on the same listeners. A validated config goes to every worker, or back to the previous one everywhere
// if one cannot apply it; /metrics sums the workers' registries (prom-client's AggregatorRegistry) with the dead
// workers' counters and the primary's own; the status document merges the workers' reports. Consistent hashing
// needs no coordination: every worker builds the same ring from the same config. An operator's change to a backend
// (admin API) goes to every worker before the answer, and is replayed to workers that start later, so all agree.

import { availableParallelism } from 'node:os';
import { type Aggregator, AggregatorRegistry, Registry } from 'prom-client';
import type { Config } from '../../config/types.js';
import type { BackendControlResult } from '../../gateway/backend-control.js';
import { type ConnectionFilter, type ConnectionList, mergeConnectionLists } from '../../gateway/connections.js';
import type { ReloadSummary } from '../../gateway/gateway.js';
import type { BoundListener } from '../../gateway/listener-set.js';
import type { ProcessStatus } from '../../gateway/process-status.js';
import { type CertificatePair, generateSelfSigned } from '../../listen/tls.js';
import { newTicketKey } from '../../listen/tls-sessions.js';
import type { Logger } from '../../observe/log.js';
import { collectProcessMetrics } from '../../observe/metrics.js';
import { type BackendChange, backendAddress } from '../../pool/admin-state.js';
import type { Fleet, FleetReports, MetricsText } from '../fleet.js';
import type { WorkerStatus } from '../status.js';
import { WorkerRequests } from './requests.js';
import { type MetricJson, RetiredMetrics } from './retired-metrics.js';
import { Supervisor, send, type WorkerSlot } from './supervisor.js';

export function resolveWorkers(workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

/** A backend named by `host:port` or by id is the same backend. */
function overrideKey(pool: string, backend: string): string {
  return `${pool}\u0000${backendAddress(backend)}`;
}

export interface ClusterFleetOptions {
  readonly file: string;
  readonly text: string;
  readonly config: Config;
  readonly workers: number;
  readonly log: Logger;
}

export class ClusterFleet implements Fleet {
  /** The primary process's own default metrics (its CPU, memory, event loop), summed into /metrics. */
  private readonly registry = new Registry();
  private readonly supervisor: Supervisor;
  private readonly requests = new WorkerRequests();
  private readonly retired: RetiredMetrics;
  private readonly log: Logger;
  private readonly file: string;
  private applied: { text: string; config: Config; generation: number };
  /**
   * Made once and given to every worker (also to replacements, and kept across reloads), so that TLS listeners
   * without files serve one certificate whichever worker accepts, as a single process does.
   */
  private readonly fallbackCert: Promise<CertificatePair> = generateSelfSigned();
  private shutdownPromise: Promise<undefined> | undefined;
  /** The session ticket key of every worker's TLS listeners without a key file; new workers get it at start. */
  private ticketKey = newTicketKey();
  /**
   * Operators' changes in force, by pool and backend id, merged: replayed to every worker that becomes ready, and
   * pruned by a reload to the backends still in their pool (the workers' own reload summaries say which).
   */
  private readonly overrides = new Map<string, { pool: string; backend: string; change: BackendChange }>();

  /** Forks the workers; `started()` resolves once all are ready. */
  constructor(options: ClusterFleetOptions) {
    this.log = options.log;
    this.file = options.file;
    this.retired = new RetiredMetrics(options.log);
    this.applied = { text: options.text, config: options.config, generation: 1 };
    collectProcessMetrics(this.registry);
    this.supervisor = new Supervisor({
      workers: options.workers,
      accept: options.config.workersAccept,
      log: options.log,
      startMessage: async () => {
        const { text, generation } = this.applied;
        return {
          type: 'wsgate:start',
          file: this.file,
          text,
          generation,
          fallbackCert: await this.fallbackCert,
          ticketKey: this.ticketKey.toString('base64'),
        };
      },
      onReady: (slot) => void this.sync(slot).then(() => this.replayOverrides(slot)),
      onExit: (slot, why) => {
        const last = slot.lastMetrics;
        slot.lastMetrics = undefined;
        if (last !== undefined) this.retired.retire(slot.id, last);
        this.requests.workerGone(slot.worker, why);
      },
      onReply: (reply) => this.requests.settle(reply),
    });
  }

  /** Resolves once every worker is ready (rejects if one fails to start). */
  started(): Promise<void> {
    return this.supervisor.allReady();
  }

  get stopping(): boolean {
    return this.supervisor.stopping;
  }

  get generation(): number {
    return this.applied.generation;
  }

  get ready(): boolean {
    return !this.supervisor.stopping && this.supervisor.readyCount > 0;
  }

  get liveProcesses(): number {
    return this.supervisor.readyCount;
  }

  private request(slot: WorkerSlot, make: Parameters<WorkerRequests['request']>[2]): Promise<unknown> {
    return this.requests.request(slot.worker, `worker ${slot.id}`, make);
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

  /** A worker that became ready gets the operators' changes the others have. */
  private async replayOverrides(slot: WorkerSlot): Promise<void> {
    for (const { pool, backend, change } of this.overrides.values()) {
      if (slot.state !== 'ready') return;
      try {
        await this.request(slot, (id) => ({ type: 'wsgate:backend', id, pool, backend, change }));
      } catch (err) {
        this.log.error({ worker: slot.id, pool, backend, err }, 'worker could not take a backend admin state');
      }
    }
  }

  async controlBackend(pool: string, backend: string, change: BackendChange): Promise<BackendControlResult> {
    const slots = this.supervisor.readySlots();
    if (slots.length === 0) throw new Error('no worker is ready');
    // Recorded before the workers are asked: one that becomes ready meanwhile replays it.
    const key = overrideKey(pool, backend);
    const previous = this.overrides.get(key);
    this.overrides.set(key, { pool, backend, change: { ...previous?.change, ...change } });
    const results = (await Promise.all(
      slots.map((s) => this.request(s, (id) => ({ type: 'wsgate:backend', id, pool, backend, change }))),
    )) as BackendControlResult[];
    const first = results[0] as BackendControlResult;
    if (!first.ok) {
      if (previous) this.overrides.set(key, previous);
      else this.overrides.delete(key);
      return first;
    }
    let active = 0;
    for (const r of results) if (r.ok) active += r.backend.active;
    return { ok: true, backend: { ...first.backend, active } };
  }

  async connections(filter: ConnectionFilter): Promise<ConnectionList> {
    const lists = await Promise.all(
      this.supervisor.readySlots().map((s) => this.request(s, (id) => ({ type: 'wsgate:connections', id, filter }))),
    );
    return mergeConnectionLists(lists as ConnectionList[], filter.limit);
  }

  /** Every ready worker applies the config; if one cannot, the others go back to the old one. */
  async apply(text: string, config: Config, generation: number): Promise<unknown> {
    const previous = this.applied;
    const slots = this.supervisor.readySlots();
    const results = await Promise.allSettled(
      slots.map((s) => this.request(s, (id) => ({ type: 'wsgate:reload', id, text, generation }))),
    );
    const failures = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`worker ${slots[i]?.id}: ${(r.reason as Error).message}`] : [],
    );
    if (failures.length > 0) {
      const applied = slots.filter((_s, i) => results[i]?.status === 'fulfilled');
      const { text: oldText, generation: oldGeneration } = previous;
      await Promise.allSettled(
        applied.map((s) =>
          this.request(s, (id) => ({ type: 'wsgate:reload', id, text: oldText, generation: oldGeneration })),
        ),
      );
      throw new Error(failures.join('; '));
    }
    for (const s of slots) s.generation = generation;
    this.applied = { text, config, generation };
    const summaries = results.map((r) => (r as PromiseFulfilledResult<ReloadSummary>).value);
    this.pruneOverrides(summaries[0]);
    // Workers that became ready meanwhile started on the old text.
    for (const s of this.supervisor.readySlots()) void this.sync(s);
    return {
      workers: slots.map((s, i) => ({
        worker: s.id,
        ...((results[i] as PromiseFulfilledResult<unknown>).value as ReloadSummary),
      })),
    };
  }

  /** Keeps the operators' changes of the backends the reload kept (`summary.runtimeState`) and forgets the rest. */
  private pruneOverrides(summary: ReloadSummary | undefined): void {
    if (summary === undefined) return;
    const kept = new Set(summary.runtimeState.map((o) => overrideKey(o.pool, o.backend)));
    for (const key of this.overrides.keys()) if (!kept.has(key)) this.overrides.delete(key);
  }

  /** Every ready worker's registry, dead workers' counters, and the primary's own and `control`'s, summed per series. */
  async metrics(control: Registry): Promise<MetricsText> {
    const slots = this.supervisor.readySlots();
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
    const [retired, own, ops] = await Promise.all([
      this.retired.current(),
      this.registry.getMetricsAsJSON(),
      control.getMetricsAsJSON(),
    ]);
    const all = [...workerMetrics, retired, own, ops].map((list) =>
      // The worst process's event-loop lag is what matters, not the average with an idle primary.
      list.map((m) => (m.name.startsWith('nodejs_eventloop_lag_') ? { ...m, aggregator: 'max' as Aggregator } : m)),
    );
    const aggregated = AggregatorRegistry.aggregate(all);
    return { text: await aggregated.metrics(), contentType: aggregated.contentType };
  }

  async reports(): Promise<FleetReports> {
    const reports = new Map<WorkerSlot, ProcessStatus>();
    await Promise.all(
      this.supervisor.readySlots().map(async (s) => {
        try {
          reports.set(s, (await this.request(s, (id) => ({ type: 'wsgate:status', id }))) as ProcessStatus);
        } catch (err) {
          this.log.warn({ worker: s.id, err }, 'worker did not report its status');
        }
      }),
    );
    const list: WorkerStatus[] = this.supervisor.slots.map((s) => {
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
    return {
      reports: [...reports.values()],
      workers: { configured: list.length, live: list.filter((w) => w.state === 'ready').length, list },
    };
  }

  async listeners(): Promise<readonly BoundListener[]> {
    const first = (await this.reports()).reports[0];
    return (first?.listeners ?? []).map(({ name, address, port, tls, selfSigned }) => ({
      name,
      address,
      port,
      secure: tls,
      selfSigned,
    }));
  }

  rotateTicketKey(): void {
    this.ticketKey = newTicketKey();
    const key = this.ticketKey.toString('base64');
    for (const slot of this.supervisor.slots) send(slot, { type: 'wsgate:ticketKey', key });
  }

  /** Coordinated drain: every worker runs its own shutdown and exits; stragglers are killed. */
  shutdown(): Promise<undefined> {
    const config = this.applied.config;
    this.shutdownPromise ??= this.supervisor
      .stop(config.shutdown.acceptDelayMs, config.timeouts.drainMs)
      .then(() => undefined);
    return this.shutdownPromise;
  }

  kill(): void {
    this.supervisor.killAll();
  }
}
