// The edge controls' metrics, registered once per registry (a reload builds new routes on the same registry):
// wsgate_access_denied_total{route,reason} and wsgate_connection_rate_limited_total{scope}. Label children are
// made when a route is compiled, not per refusal.

import { Counter, type Registry } from 'prom-client';
import type { AddressRefusal } from './address-list.js';
import type { CertRefusal } from './client-cert.js';
import type { RateScope } from './connection-rate.js';

export type AccessRefusal = AddressRefusal | CertRefusal;
export const ACCESS_REFUSALS: readonly AccessRefusal[] = [
  'denied_address',
  'not_allowed_address',
  'client_cert_missing',
  'client_cert_invalid',
];
export const RATE_SCOPES: readonly RateScope[] = ['process', 'ip'];

interface Increment {
  inc(): void;
}

const byRegistry = new WeakMap<Registry, EdgeMetrics>();

export class EdgeMetrics {
  readonly accessDenied: Counter<'route' | 'reason'>;
  readonly rateLimited: Readonly<Record<RateScope, Increment>>;

  static for(registry: Registry): EdgeMetrics {
    let metrics = byRegistry.get(registry);
    if (!metrics) {
      metrics = new EdgeMetrics(registry);
      byRegistry.set(registry, metrics);
    }
    return metrics;
  }

  private constructor(registry: Registry) {
    const registers = [registry];
    this.accessDenied = new Counter({
      name: 'wsgate_access_denied_total',
      help:
        'Requests refused 403 by routes[].access or the client certificate, by reason: denied_address, ' +
        'not_allowed_address, client_cert_missing, client_cert_invalid.',
      labelNames: ['route', 'reason'],
      registers,
    });
    const rateLimited = new Counter({
      name: 'wsgate_connection_rate_limited_total',
      help: 'New connections refused by limits.connectionRate, by scope: process (503) or ip (429).',
      labelNames: ['scope'],
      registers,
    });
    this.rateLimited = { process: rateLimited.labels({ scope: 'process' }), ip: rateLimited.labels({ scope: 'ip' }) };
    for (const scope of RATE_SCOPES) rateLimited.inc({ scope }, 0);
  }

  /** One route's denial counters, made once when the route is compiled (its series visible at 0). */
  deniedFor(route: string): Readonly<Record<AccessRefusal, Increment>> {
    const out = {} as Record<AccessRefusal, Increment>;
    for (const reason of ACCESS_REFUSALS) {
      out[reason] = this.accessDenied.labels({ route, reason });
      this.accessDenied.inc({ route, reason }, 0);
    }
    return out;
  }
}
