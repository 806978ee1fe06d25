// The data plane as the control plane sees it: what every operations feature (reload, /metrics, the status
// document, shutdown) needs from the processes that serve the listeners. Two implementations: one Gateway in this
// process (in-process.ts) and a cluster's workers driven over IPC (cluster/fleet.ts).

import type { Registry } from 'prom-client';
import type { BackendControlResult } from '../gateway/backend-control.js';
import type { ConnectionFilter, ConnectionList } from '../gateway/connections.js';
import type { BoundListener } from '../gateway/listener-set.js';
import type { ProcessStatus } from '../gateway/process-status.js';
import type { BackendChange } from '../pool/admin-state.js';
import type { ConfigTarget } from './reload.js';
import type { WorkersStatus } from './status.js';

export interface MetricsText {
  readonly text: string;
  readonly contentType: string;
}

export interface FleetReports {
  /** One report per serving process that answered. */
  readonly reports: readonly ProcessStatus[];
  readonly workers: WorkersStatus;
}

export interface Fleet extends ConfigTarget {
  /** Serving: every process has bound its listeners and no shutdown began (what /readyz reports). */
  readonly ready: boolean;
  /** The config generation the fleet serves (the last one applied everywhere). */
  readonly generation: number;
  /** Processes serving the listeners now (the wsgate_workers gauge). */
  readonly liveProcesses: number;
  /** The listeners as bound (ports resolved), for the start-up line. */
  listeners(): Promise<readonly BoundListener[]>;
  /** The Prometheus exposition of every serving process, with `control`'s metrics (counted once) added. */
  metrics(control: Registry): Promise<MetricsText>;
  reports(): Promise<FleetReports>;
  /**
   * An operator's change to one backend (admin state, runtime weight), applied in every serving process before
   * this resolves; the answer is the backend's new state (live connections summed over the processes).
   */
  controlBackend(pool: string, backend: string, change: BackendChange): Promise<BackendControlResult>;
  /** Live tunnels of every serving process (of one backend, if given), at most `filter.limit` of them. */
  connections(filter: ConnectionFilter): Promise<ConnectionList>;
  /**
   * Graceful stop: readiness off now, accept for the configured delay, drain, and resolve once nothing serves any
   * more, with the number of tunnels cut at the drain deadline where this process knows it (a cluster's workers
   * each log their own). Idempotent.
   */
  shutdown(): Promise<number | undefined>;
  /**
   * A new session ticket key for every TLS listener without a `sessionTicketKeys` file, in every process (the
   * control plane rotates it; sessions made with the old key get a full handshake once).
   */
  rotateTicketKey(): void;
  /** A second signal: stop serving at once, without waiting for tunnels. */
  kill(): void;
}
