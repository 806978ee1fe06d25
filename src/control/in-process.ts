// The fleet of a single-process wsgate: one Gateway in this process, driven by direct calls.

import type { Registry } from 'prom-client';
import type { Config } from '../config/types.js';
import { type BackendControlResult, controlBackend } from '../gateway/backend-control.js';
import { type ConnectionFilter, type ConnectionList, listConnections } from '../gateway/connections.js';
import type { Gateway } from '../gateway/gateway.js';
import type { BoundListener } from '../gateway/listener-set.js';
import { newTicketKey } from '../listen/tls-sessions.js';
import type { BackendChange } from '../pool/admin-state.js';
import type { Fleet, FleetReports, MetricsText } from './fleet.js';

export class InProcessFleet implements Fleet {
  readonly gateway: Gateway;
  readonly liveProcesses = 1;

  constructor(gateway: Gateway) {
    this.gateway = gateway;
  }

  apply(_text: string, config: Config, generation: number): Promise<unknown> {
    return this.gateway.reload(config, generation);
  }

  get stopping(): boolean {
    return this.gateway.shuttingDown;
  }

  get generation(): number {
    return this.gateway.generation;
  }

  get ready(): boolean {
    return this.gateway.ready;
  }

  listeners(): Promise<readonly BoundListener[]> {
    return Promise.resolve(this.gateway.boundListeners);
  }

  async metrics(control: Registry): Promise<MetricsText> {
    const registry = this.gateway.metrics.registry;
    // Two registries with disjoint metric names: their expositions concatenate into one valid exposition.
    const [own, ops] = await Promise.all([registry.metrics(), control.metrics()]);
    return { text: own + ops, contentType: registry.contentType };
  }

  async reports(): Promise<FleetReports> {
    return {
      reports: [await this.gateway.processStatus()],
      workers: { configured: 1, live: 1, list: [] },
    };
  }

  controlBackend(pool: string, backend: string, change: BackendChange): Promise<BackendControlResult> {
    return Promise.resolve(controlBackend(this.gateway.runtime, pool, backend, change));
  }

  connections(filter: ConnectionFilter): Promise<ConnectionList> {
    return Promise.resolve(listConnections(this.gateway.tunnels, filter));
  }

  shutdown(): Promise<number> {
    return this.gateway.shutdown();
  }

  rotateTicketKey(): void {
    this.gateway.setTicketKey(newTicketKey());
  }

  kill(): void {}
}
