// The catalogue of everything wsgate refuses or ends: one stable code per situation, with the HTTP status
// (before the 101) or WebSocket close code (after it) that the owner of the socket uses. README's table is tested against it.

export interface CatalogueEntry {
  /** Stable identifier, also used as the `reason` metric label (lower-cased, without the prefix). */
  readonly code: string;
  /** HTTP status answered before the upgrade completes. */
  readonly status?: number;
  /** WebSocket close code sent after the upgrade. */
  readonly closeCode?: number;
  readonly message: string;
}

function entry(code: string, message: string, codes: { status?: number; closeCode?: number }): CatalogueEntry {
  return Object.freeze({ code, message, ...codes });
}

export const Errors = Object.freeze({
  // Handshake validation (RFC 6455 §4.2.1) and request hygiene.
  BAD_METHOD: entry('WSG_BAD_METHOD', 'WebSocket upgrade must use GET', { status: 400 }),
  BAD_HTTP_VERSION: entry('WSG_BAD_HTTP_VERSION', 'WebSocket upgrade requires HTTP/1.1', { status: 400 }),
  BAD_UPGRADE: entry('WSG_BAD_UPGRADE', 'Upgrade header must be exactly "websocket"', { status: 400 }),
  BAD_CONNECTION: entry('WSG_BAD_CONNECTION', 'Connection header must contain "upgrade"', { status: 400 }),
  BAD_KEY: entry('WSG_BAD_KEY', 'Sec-WebSocket-Key must be base64 of 16 bytes', { status: 400 }),
  BAD_VERSION: entry('WSG_BAD_VERSION', 'Sec-WebSocket-Version must be 13', { status: 426 }),
  BODY_ON_UPGRADE: entry('WSG_BODY_ON_UPGRADE', 'an upgrade request must not carry a body', { status: 400 }),
  DUPLICATE_HEADER: entry('WSG_DUPLICATE_HEADER', 'header must appear once', { status: 400 }),
  MISSING_HOST: entry('WSG_MISSING_HOST', 'Host header is required', { status: 400 }),
  BAD_HOST: entry('WSG_BAD_HOST', 'Host header must be host[:port]', { status: 400 }),
  BAD_PATH: entry('WSG_BAD_PATH', 'request path has dot segments or is malformed', { status: 400 }),
  BAD_REQUEST: entry('WSG_BAD_REQUEST', 'malformed HTTP request', { status: 400 }),
  HEADERS_TOO_LARGE: entry('WSG_HEADERS_TOO_LARGE', 'request headers too large', { status: 431 }),
  HANDSHAKE_TIMEOUT: entry('WSG_HANDSHAKE_TIMEOUT', 'request headers not received in time', { status: 408 }),
  ORIGIN_NOT_ALLOWED: entry('WSG_ORIGIN_NOT_ALLOWED', 'Origin is not allowed for this route', { status: 403 }),
  NO_ROUTE: entry('WSG_NO_ROUTE', 'no route matches this host and path', { status: 404 }),
  TOO_MANY_CONNECTIONS: entry('WSG_TOO_MANY_CONNECTIONS', 'connection limit reached', { status: 503 }),
  TOO_MANY_FROM_IP: entry('WSG_TOO_MANY_FROM_IP', 'too many connections from this address', { status: 429 }),
  NO_HEALTHY_BACKEND: entry('WSG_NO_HEALTHY_BACKEND', 'no backend available in pool', { status: 503 }),
  SHUTTING_DOWN: entry('WSG_SHUTTING_DOWN', 'proxy is shutting down', { status: 503 }),

  // Plain (non-upgrade) HTTP requests on a route.
  WEBSOCKET_ONLY: entry('WSG_WEBSOCKET_ONLY', 'this route accepts WebSocket upgrades only', { status: 404 }),
  BAD_BODY: entry('WSG_BAD_BODY', 'malformed request body', { status: 400 }),
  BODY_TIMEOUT: entry('WSG_BODY_TIMEOUT', 'request body not received in time', { status: 408 }),

  // Upstream handshake.
  UPSTREAM_CONNECT_FAILED: entry('WSG_UPSTREAM_CONNECT_FAILED', 'could not connect to any backend', { status: 502 }),
  UPSTREAM_BAD_RESPONSE: entry('WSG_UPSTREAM_BAD_RESPONSE', 'backend sent an invalid handshake response', {
    status: 502,
  }),
  UPSTREAM_BAD_ACCEPT: entry('WSG_UPSTREAM_BAD_ACCEPT', 'backend sent a wrong Sec-WebSocket-Accept', { status: 502 }),
  UPSTREAM_TIMEOUT: entry('WSG_UPSTREAM_TIMEOUT', 'backend did not complete the handshake in time', { status: 504 }),

  // After the 101.
  GOING_AWAY: entry('WSG_GOING_AWAY', 'proxy is draining this connection', { closeCode: 1001 }),
  PROTOCOL_VIOLATION: entry('WSG_PROTOCOL_VIOLATION', 'WebSocket protocol violation', { closeCode: 1002 }),
  RATE_LIMITED: entry('WSG_RATE_LIMITED', 'rate limit exceeded', { closeCode: 1008 }),
  MESSAGE_TOO_BIG: entry('WSG_MESSAGE_TOO_BIG', 'message exceeds the size limit', { closeCode: 1009 }),
  INTERNAL: entry('WSG_INTERNAL', 'internal proxy error', { closeCode: 1011 }),
  REBALANCE: entry('WSG_REBALANCE', 'key moved to another backend, reconnect', { closeCode: 1012 }),
  BACKEND_LOST: entry('WSG_BACKEND_LOST', 'backend connection lost', { closeCode: 1014 }),
  IDLE_TIMEOUT: entry('WSG_IDLE_TIMEOUT', 'connection idle for too long', { closeCode: 1001 }),

  // Configuration.
  CONFIG_INVALID: entry('WSG_CONFIG_INVALID', 'configuration is invalid', {}),
});

export type ErrorName = keyof typeof Errors;

/** Metric label for a catalogue entry: `WSG_BAD_KEY` → `bad_key`. */
export function reasonLabel(e: CatalogueEntry): string {
  return e.code.slice(4).toLowerCase();
}

/** An error that carries its catalogue entry, so the stage that owns the socket decides what to write. */
export class WsgateError extends Error {
  readonly entry: CatalogueEntry;
  readonly detail: string | undefined;
  constructor(e: CatalogueEntry, detail?: string, options?: ErrorOptions) {
    super(detail ? `${e.message}: ${detail}` : e.message, options);
    this.name = 'WsgateError';
    this.entry = e;
    this.detail = detail;
  }
  get code(): string {
    return this.entry.code;
  }
}
