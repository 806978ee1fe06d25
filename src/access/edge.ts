// The edge stage: who may use a route and how fast new connections come (routes[].access, listeners[].tls.clientCert,
// limits.connectionRate), after routing and the origin check and before admission, so a refusal never touches a
// backend. `checkEdge` is the one entry both the upgrade and the plain HTTP paths call; a route is compiled into a
// RouteEdge once per config generation (proxy/runtime.ts), so a route without access lists pays two field reads.

import type { Duplex } from 'node:stream';
import type { Config, RouteConfig } from '../config/types.js';
import { type CatalogueEntry, Errors } from '../errors.js';
import type { ConnectionInfo } from '../listen/client-address.js';
import { AddressList } from './address-list.js';
import { clientCertVerdict, forwardedClientCert } from './client-cert.js';
import type { ConnectionRate } from './connection-rate.js';
import type { AccessRefusal, EdgeMetrics } from './edge-metrics.js';

/** One route's edge settings, compiled. */
export class RouteEdge {
  readonly addresses: AddressList | undefined;
  readonly forwardClientCert: boolean;
  readonly metrics: EdgeMetrics;
  private readonly denied: Readonly<Record<AccessRefusal, { inc(): void }>>;

  constructor(route: RouteConfig, metrics: EdgeMetrics) {
    this.addresses = route.access === undefined ? undefined : new AddressList(route.access);
    this.forwardClientCert = route.forwardClientCert;
    this.metrics = metrics;
    this.denied = metrics.deniedFor(route.name);
  }

  deny(reason: AccessRefusal, detail?: string): EdgeResult {
    this.denied[reason].inc();
    const entry =
      reason === 'client_cert_missing'
        ? Errors.CLIENT_CERT_REQUIRED
        : reason === 'client_cert_invalid'
          ? Errors.CLIENT_CERT_INVALID
          : Errors.ADDRESS_DENIED;
    return { ok: false, entry, detail: detail ?? reason, headers: undefined };
  }
}

export type EdgeResult =
  /** Go on; `clientCert` is the X-Forwarded-Client-Cert value to send the backend, if the route forwards one. */
  | { readonly ok: true; readonly clientCert: string | undefined }
  /** Refuse with `entry` (and `headers`, e.g. Retry-After). */
  | {
      readonly ok: false;
      readonly entry: CatalogueEntry;
      readonly detail: string;
      readonly headers: Record<string, string> | undefined;
    };

const PASS: EdgeResult = Object.freeze({ ok: true, clientCert: undefined });

/**
 * The address list, then the client certificate, then the connection rate: a request refused for who it is does
 * not spend a rate token that someone allowed could have used.
 */
export function checkEdge(
  rate: ConnectionRate,
  config: Config,
  route: RouteEdge,
  connection: ConnectionInfo,
  socket: Duplex,
): EdgeResult {
  const ip = connection.client;
  if (route.addresses !== undefined) {
    const refused = route.addresses.check(ip);
    if (refused !== undefined) return route.deny(refused);
  }
  let clientCert: string | undefined;
  if (connection.clientCert !== 'none') {
    const verdict = clientCertVerdict(connection.clientCert, socket);
    if (!verdict.ok) return route.deny(verdict.reason, verdict.detail);
    if (route.forwardClientCert && verdict.cert !== undefined) clientCert = forwardedClientCert(verdict.cert);
  }
  const rateConfig = config.limits.connectionRate;
  if (rateConfig !== undefined) {
    const limited = rate.take(ip, rateConfig);
    if (limited !== undefined) {
      route.metrics.rateLimited[limited.scope].inc();
      return {
        ok: false,
        entry: limited.scope === 'ip' ? Errors.CONNECTION_RATE_PER_IP : Errors.CONNECTION_RATE,
        detail: limited.scope,
        headers: { 'Retry-After': String(limited.retryAfterSeconds) },
      };
    }
  }
  return clientCert === undefined ? PASS : { ok: true, clientCert };
}
