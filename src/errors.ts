// The catalogue of every way wsgate refuses or ends a connection. Before the 101, a refusal (`Errors`): a stable code,
// the HTTP status and the message of the answer. After it, an ending (`Endings`): the close codes and reasons the
// proxy sends, who ended the tunnel, its metric label and the `reason` of the close log line. Stages return
// entries; the owner of the socket acts on them. docs/errors.md's table is tested against both.

export interface CatalogueEntry {
  /** Stable identifier, sent as X-Wsgate-Error; also the `reason` metric label (lower-cased, without the prefix). */
  readonly code: string;
  /** HTTP status answered before the upgrade completes (none: the backend's own is relayed, or the process exits). */
  readonly status?: number;
  readonly message: string;
}

function entry(code: string, message: string, status?: number): CatalogueEntry {
  return Object.freeze(status === undefined ? { code, message } : { code, message, status });
}

export const Errors = Object.freeze({
  // Handshake validation (RFC 6455 §4.2.1) and request hygiene.
  BAD_METHOD: entry('WSG_BAD_METHOD', 'WebSocket upgrade must use GET', 400),
  BAD_HTTP_VERSION: entry('WSG_BAD_HTTP_VERSION', 'WebSocket upgrade requires HTTP/1.1', 400),
  BAD_UPGRADE: entry('WSG_BAD_UPGRADE', 'Upgrade header must be exactly "websocket"', 400),
  BAD_CONNECTION: entry('WSG_BAD_CONNECTION', 'Connection header must contain "upgrade"', 400),
  BAD_KEY: entry('WSG_BAD_KEY', 'Sec-WebSocket-Key must be base64 of 16 bytes', 400),
  BAD_VERSION: entry('WSG_BAD_VERSION', 'Sec-WebSocket-Version must be 13', 426),
  BODY_ON_UPGRADE: entry('WSG_BODY_ON_UPGRADE', 'an upgrade request must not carry a body', 400),
  DUPLICATE_HEADER: entry('WSG_DUPLICATE_HEADER', 'header must appear once', 400),
  MISSING_HOST: entry('WSG_MISSING_HOST', 'Host header is required', 400),
  BAD_HOST: entry('WSG_BAD_HOST', 'Host header must be host[:port]', 400),
  BAD_PATH: entry('WSG_BAD_PATH', 'request path has dot segments or is malformed', 400),
  BAD_REQUEST: entry('WSG_BAD_REQUEST', 'malformed HTTP request', 400),
  HEADERS_TOO_LARGE: entry('WSG_HEADERS_TOO_LARGE', 'request headers too large', 431),
  HANDSHAKE_TIMEOUT: entry('WSG_HANDSHAKE_TIMEOUT', 'request headers not received in time', 408),
  ORIGIN_NOT_ALLOWED: entry('WSG_ORIGIN_NOT_ALLOWED', 'Origin is not allowed for this route', 403),
  NO_ROUTE: entry('WSG_NO_ROUTE', 'no route matches this host and path', 404),
  TOO_MANY_CONNECTIONS: entry('WSG_TOO_MANY_CONNECTIONS', 'connection limit reached', 503),
  TOO_MANY_FROM_IP: entry('WSG_TOO_MANY_FROM_IP', 'too many connections from this address', 429),
  NO_HEALTHY_BACKEND: entry('WSG_NO_HEALTHY_BACKEND', 'no backend available in pool', 503),
  SHUTTING_DOWN: entry('WSG_SHUTTING_DOWN', 'proxy is shutting down', 503),

  // Edge controls (src/access/): who may use a route, and how fast new connections may come.
  ADDRESS_DENIED: entry('WSG_ADDRESS_DENIED', 'client address is not allowed on this route', 403),
  CLIENT_CERT_REQUIRED: entry('WSG_CLIENT_CERT_REQUIRED', 'a client certificate is required', 403),
  CLIENT_CERT_INVALID: entry('WSG_CLIENT_CERT_INVALID', 'client certificate is not valid', 403),
  CONNECTION_RATE: entry('WSG_CONNECTION_RATE', 'too many new connections, retry later', 503),
  CONNECTION_RATE_PER_IP: entry('WSG_CONNECTION_RATE_PER_IP', 'too many new connections from this address', 429),

  // routes[].auth.jwt: answered with WWW-Authenticate (RFC 6750 §3); the log line says which check failed.
  AUTH_REQUIRED: entry('WSG_AUTH_REQUIRED', 'a bearer token is required', 401),
  AUTH_AMBIGUOUS: entry('WSG_AUTH_AMBIGUOUS', 'the token must be given once', 401),
  AUTH_INVALID: entry('WSG_AUTH_INVALID', 'the token is not valid', 401),

  // Plain (non-upgrade) HTTP requests on a route.
  WEBSOCKET_ONLY: entry('WSG_WEBSOCKET_ONLY', 'this route accepts WebSocket upgrades only', 404),
  BAD_BODY: entry('WSG_BAD_BODY', 'malformed request body', 400),
  BODY_TIMEOUT: entry('WSG_BODY_TIMEOUT', 'request body not received in time', 408),

  // Upstream handshake.
  UPSTREAM_CONNECT_FAILED: entry('WSG_UPSTREAM_CONNECT_FAILED', 'could not connect to any backend', 502),
  UPSTREAM_BAD_RESPONSE: entry('WSG_UPSTREAM_BAD_RESPONSE', 'backend sent an invalid handshake response', 502),
  UPSTREAM_BAD_ACCEPT: entry('WSG_UPSTREAM_BAD_ACCEPT', 'backend sent a wrong Sec-WebSocket-Accept', 502),
  UPSTREAM_TIMEOUT: entry('WSG_UPSTREAM_TIMEOUT', 'backend did not complete the handshake in time', 504),
  /** The backend's own answer (not a 101) goes to the client as it came, with the backend's status. */
  BACKEND_REFUSED: entry('WSG_BACKEND_REFUSED', 'backend refused the upgrade'),

  // Configuration.
  CONFIG_INVALID: entry('WSG_CONFIG_INVALID', 'configuration is invalid'),
});

/** Metric label for a catalogue entry: `WSG_BAD_KEY` → `bad_key`. */
export function reasonLabel(e: CatalogueEntry): string {
  return e.code.slice(4).toLowerCase();
}

/** Who ended a tunnel: the `initiator` of the close log line and of wsgate_closes_total. */
export const CLOSE_INITIATORS = ['client', 'backend', 'proxy'] as const;
export type CloseInitiator = (typeof CLOSE_INITIATORS)[number];

/**
 * One way a tunnel ends after the 101. The client hears `closeCode` with `reason`, the backend `backendCloseCode`
 * with `backendReason` (0: no close frame that way). A fault committed by the backend reverses the roles: the
 * backend hears the client's half, and the client hears 1014 with `reason` (closing.ts states the rules).
 */
export interface Ending {
  /** Stable identifier of the documented situation; several endings may share one (every protocol violation). */
  readonly code: string;
  readonly closeCode: number;
  readonly reason: string;
  readonly backendCloseCode: number;
  readonly backendReason: string;
  readonly initiator: CloseInitiator;
  /** The close log line's `reason`; an ending with a detail (a socket error's code) appends it: `client_error:EPIPE`. */
  readonly logReason: string;
  /** Value of the ending's own metric label: `kind` of a violation, `limit` of a limit, `peer` of a keepalive timeout. */
  readonly label: string;
}

interface EndingSpec {
  readonly closeCode?: number;
  readonly reason?: string;
  readonly backendCloseCode?: number;
  readonly backendReason?: string;
  readonly label?: string;
}

function ending(code: string, initiator: CloseInitiator, logReason: string, spec: EndingSpec): Ending {
  return Object.freeze({
    code,
    closeCode: spec.closeCode ?? 0,
    reason: spec.reason ?? '',
    backendCloseCode: spec.backendCloseCode ?? 0,
    backendReason: spec.backendReason ?? '',
    initiator,
    logReason,
    label: spec.label ?? '',
  });
}

/** The proxy ends the tunnel on its own account: the client hears `closeCode`, the backend 1001, both `reason`. */
function byProxy(code: string, closeCode: number, reason: string, label?: string): Ending {
  return ending(code, 'proxy', reason, { closeCode, reason, backendCloseCode: 1001, backendReason: reason, label });
}

/** What the backend hears when its client is closed for a fault. */
const CLIENT_CLOSED_BY_PROXY = 'client closed by proxy';

/** A frame broke RFC 6455 (counted in wsgate_protocol_violations_total{kind}); a backend whose client did hears 1011. */
function violation(kind: string, closeCode = 1002, code = 'WSG_PROTOCOL_VIOLATION'): Ending {
  return ending(code, 'proxy', `violation:${kind}`, {
    closeCode,
    reason: `protocol error: ${kind}`,
    backendCloseCode: 1011,
    backendReason: CLIENT_CLOSED_BY_PROXY,
    label: kind,
  });
}

/** A per-connection limit closed the peer (wsgate_limit_exceeded_total{limit}); a backend whose client did hears 1000. */
function limit(name: string): Ending {
  return ending('WSG_RATE_LIMITED', 'proxy', `limit:${name}`, {
    closeCode: 1008,
    reason: `limit exceeded: ${name}`,
    backendCloseCode: 1000,
    backendReason: CLIENT_CLOSED_BY_PROXY,
    label: name,
  });
}

export const Endings = Object.freeze({
  // The proxy's own endings.
  SHUTDOWN: byProxy('WSG_GOING_AWAY', 1001, 'server shutting down'),
  ROUTE_REMOVED: byProxy('WSG_GOING_AWAY', 1001, 'route removed'),
  IDLE_TIMEOUT: byProxy('WSG_IDLE_TIMEOUT', 1001, 'idle timeout'),
  CLIENT_KEEPALIVE_TIMEOUT: byProxy('WSG_KEEPALIVE_TIMEOUT', 1001, 'keepalive timeout', 'client'),
  BACKEND_KEEPALIVE_TIMEOUT: byProxy('WSG_BACKEND_KEEPALIVE_TIMEOUT', 1011, 'backend keepalive timeout', 'backend'),
  /** The key's owner moved (rebalancing), or the backend left its pool. */
  REBALANCE: byProxy('WSG_REBALANCE', 1012, 'reconnect'),
  BACKEND_UNHEALTHY: byProxy('WSG_BACKEND_LOST', 1014, 'backend unhealthy'),
  /** An operator disabled the backend (admin API): its clients reconnect to the rest of the pool. */
  BACKEND_DISABLED: byProxy('WSG_BACKEND_DISABLED', 1012, 'backend disabled'),
  /** The tunnel reached its deadline: timeouts.maxLifetime (jittered), or its token's exp (closeOnExpiry). */
  MAX_LIFETIME: byProxy('WSG_MAX_LIFETIME', 1001, 'max lifetime', 'max_lifetime'),
  TOKEN_EXPIRED: byProxy('WSG_TOKEN_EXPIRED', 1008, 'token expired', 'token_expired'),

  // Frame violations, named like the scanner's Violation codes (frame-scanner.ts maps one to the other).
  UNMASKED_CLIENT_FRAME: violation('unmasked_client_frame'),
  MASKED_SERVER_FRAME: violation('masked_server_frame'),
  RESERVED_OPCODE: violation('reserved_opcode'),
  CONTROL_TOO_LONG: violation('control_too_long'),
  CONTROL_FRAGMENTED: violation('control_fragmented'),
  UNEXPECTED_CONTINUATION: violation('unexpected_continuation'),
  DATA_INSIDE_MESSAGE: violation('data_inside_message'),
  LENGTH_TOP_BIT: violation('length_top_bit'),
  RSV_WITHOUT_EXTENSION: violation('rsv_without_extension'),
  NON_MINIMAL_LENGTH: violation('non_minimal_length'),
  INVALID_CLOSE_PAYLOAD: violation('invalid_close_payload'),
  /** A 64-bit length of 2^53 or more, which the scanner cannot count exactly. */
  FRAME_TOO_BIG: violation('frame_too_big', 1009, 'WSG_MESSAGE_TOO_BIG'),

  // Per-connection limits (routes[].limits.perConnection).
  MAX_MESSAGE_BYTES: ending('WSG_MESSAGE_TOO_BIG', 'proxy', 'message_too_big', {
    closeCode: 1009,
    reason: 'message too big',
    backendCloseCode: 1000,
    backendReason: CLIENT_CLOSED_BY_PROXY,
    label: 'max_message_bytes',
  }),
  MAX_FRAMES_PER_MESSAGE: limit('max_frames_per_message'),
  MESSAGES_PER_SECOND: limit('messages_per_second'),
  BYTES_PER_SECOND: limit('bytes_per_second'),
  CONTROL_FRAMES_PER_SECOND: limit('control_frames_per_second'),

  // A peer's connection ended without a close frame (FIN, close or a socket error): the survivor hears why.
  CLIENT_GONE: ending('WSG_GOING_AWAY', 'client', 'client_closed', {
    backendCloseCode: 1001,
    backendReason: 'client went away',
  }),
  CLIENT_ERROR: ending('WSG_GOING_AWAY', 'client', 'client_error', {
    backendCloseCode: 1001,
    backendReason: 'client went away',
  }),
  BACKEND_GONE: ending('WSG_BACKEND_LOST', 'backend', 'backend_closed', {
    closeCode: 1014,
    reason: 'backend connection lost',
  }),
  BACKEND_ERROR: ending('WSG_BACKEND_LOST', 'backend', 'backend_error', {
    closeCode: 1014,
    reason: 'backend connection lost',
  }),

  // A peer's own close frame went through to the other peer: its code is the one that ends the WebSocket.
  CLIENT_CLOSE_FRAME: ending('WSG_CLIENT_CLOSED', 'client', 'client_close_frame', {}),
  BACKEND_CLOSE_FRAME: ending('WSG_BACKEND_CLOSED', 'backend', 'backend_close_frame', {}),

  // Cut: both connections destroyed, without (more) close frames.
  /** A close frame waited CLOSE_FRAME_DEADLINE_MS for the frame in flight to end. */
  CLOSE_DEADLINE: ending('WSG_CLOSE_TIMEOUT', 'proxy', 'close_deadline', {}),
  /** One peer's close went through and the other neither answered nor closed within CLOSE_REPLY_TIMEOUT_MS. */
  CLOSE_REPLY_TIMEOUT: ending('WSG_CLOSE_TIMEOUT', 'proxy', 'close_reply_timeout', {}),
  /** Still open when a drain's deadline passed. */
  DRAIN_DEADLINE: ending('WSG_DRAIN_DEADLINE', 'proxy', 'drain_deadline', {}),
});

/** The close log line's `reason`: the ending's, with the detail (a socket error's code) appended if there is one. */
export function logReasonOf(e: Ending, detail: string | undefined): string {
  return detail === undefined ? e.logReason : `${e.logReason}:${detail}`;
}
