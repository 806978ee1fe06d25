// Client-side TLS for wss:// backends: one place that turns a backend's `tlsOptions` (pools.NAME.tls) into what
// node:tls and node:https take, for the upstream handshake, health checks and plain-HTTP proxying alike.

import type { BackendConfig } from '../config/types.js';

export interface UpstreamTlsOptions {
  /** SNI and the name the certificate must carry; undefined for an IP address without `serverName`. */
  readonly servername: string | undefined;
  readonly ca: string | undefined;
  readonly rejectUnauthorized: boolean;
  /** The client certificate and key wsgate presents (pools.NAME.tls.cert/.key, mutual TLS); undefined: none. */
  readonly cert: string | undefined;
  readonly key: string | undefined;
}

export function upstreamTlsOptions(backend: BackendConfig): UpstreamTlsOptions {
  const t = backend.tlsOptions;
  return {
    servername: t?.serverName ?? sniName(backend.host),
    ca: t?.ca,
    rejectUnauthorized: t?.rejectUnauthorized ?? true,
    cert: t?.cert,
    key: t?.key,
  };
}

/** SNI must not be an IP address (RFC 6066 §3). */
function sniName(host: string): string | undefined {
  return /^[\d.]+$/.test(host) || host.includes(':') ? undefined : host;
}
