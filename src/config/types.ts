// The normalised, deeply frozen configuration the rest of wsgate sees: ms, bytes, parsed URLs, no optional noise.

import type { RedactConfig } from '../observe/redact.js';
import type { HashKeySpec } from '../routing/hash-key.js';
import type { StickySpec } from '../routing/sticky.js';

export type { RedactConfig };

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

export interface TlsConfig {
  /** Undefined: a self-signed certificate is generated at start (demo, tests). */
  readonly files: TlsFiles | undefined;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  readonly ciphers: string | undefined;
  readonly sni: readonly (TlsFiles & { readonly serverName: string })[];
  readonly unknownSni: 'default' | 'refuse';
  /** The shared session ticket key (48 bytes, base64) and its file; undefined: one made for the process tree. */
  readonly sessionTicketKeys: { readonly file: string; readonly base64: string } | undefined;
  /** PEM of the CAs client certificates must chain to; set whenever clientCert is not `none`. */
  readonly clientCa: string | undefined;
  readonly clientCert: ClientCertMode;
}

/** Whether a TLS listener asks clients for a certificate, and whether one is needed (listeners[].tls.clientCert). */
export type ClientCertMode = 'none' | 'optional' | 'require';

/** routes[].access: CIDR blocks; deny is checked first, an absent allow lets every other address in. */
export interface AccessConfig {
  readonly allow: readonly string[] | undefined;
  readonly deny: readonly string[];
}

/** limits.connectionRate; Infinity: no limit of that scope. */
export interface ConnectionRateConfig {
  readonly perSecond: number;
  readonly perIpPerSecond: number;
  readonly perIpBurst: number;
}

export type ProxyProtocolIn = 'off' | 'v1' | 'v2' | 'any';
export type ProxyProtocolOut = 'off' | 'v1' | 'v2';

/** Who the client is behind load balancers (listeners[].clientAddress). */
export interface ClientAddressConfig {
  readonly proxyProtocol: ProxyProtocolIn;
  readonly forwardedFor: boolean;
  /** CIDR blocks; empty: none given (PROXY headers are then taken from any peer, forwarding headers from none). */
  readonly trustedProxies: readonly string[];
}

export interface ListenerConfig {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly tls: TlsConfig | undefined;
  readonly clientAddress: ClientAddressConfig;
}

/** Limits for one direction of a tunnel; Infinity means "no limit". */
export interface DirectionLimits {
  readonly messagesPerSecond: number;
  readonly burstMessages: number;
  readonly bytesPerSecond: number;
  readonly maxMessageBytes: number;
  readonly maxFramesPerMessage: number;
  readonly controlFramesPerSecond: number;
}

export interface ConnectionLimits {
  readonly clientToBackend: DirectionLimits;
  readonly backendToClient: DirectionLimits;
  readonly onExceed: 'close' | 'throttle';
}

export interface KeepaliveConfig {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly client: boolean;
  readonly backend: boolean;
}

export interface RouteConfig {
  readonly name: string;
  readonly host: string | undefined;
  readonly pathPrefix: string;
  readonly pool: string;
  /** Lower-cased allowed origins; undefined = any origin. */
  readonly origins: readonly string[] | undefined;
  readonly protocol: 'strict' | 'lenient' | 'off';
  readonly limits: ConnectionLimits;
  readonly keepalive: KeepaliveConfig | undefined;
  /** Plain (non-upgrade) HTTP requests: proxied to the pool, or refused with 404 (a WebSocket-only route). */
  readonly http: 'proxy' | 'refuse';
  /** Undefined: every client address may use the route. */
  readonly access: AccessConfig | undefined;
  readonly forwardClientCert: boolean;
  /** JWT verification (routes[].auth.jwt); undefined = anyone may connect. */
  readonly jwt: JwtConfig | undefined;
}

/** Where a request may carry its token (routes[].auth.jwt.from); header names lower-cased. */
export type TokenSource =
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'query'; readonly name: string }
  | { readonly kind: 'cookie'; readonly name: string }
  | { readonly kind: 'protocol' };

/** What verifies a route's tokens: a JWKS read from a file at load, a JWKS URL, or a shared secret (HS*). */
export type JwtKeys =
  | { readonly kind: 'file'; readonly file: string; readonly jwks: { readonly keys: readonly object[] } }
  | { readonly kind: 'url'; readonly url: string; readonly ca: string | undefined }
  | { readonly kind: 'secret'; readonly secret: string };

export interface JwtConfig {
  readonly keys: JwtKeys;
  readonly issuer: string | undefined;
  readonly audience: readonly string[] | undefined;
  readonly algorithms: readonly string[];
  readonly from: readonly TokenSource[];
  readonly clockSkewMs: number;
  /** Claim → header name (as configured), in config order. */
  readonly forwardClaims: readonly { readonly claim: string; readonly header: string }[];
  readonly closeOnExpiry: boolean;
  /** Overrides the pool's hashKey for this route: a claim of the token. */
  readonly hashKey: { readonly kind: 'claim'; readonly name: string } | undefined;
}

/** How a wss:// backend's certificate is checked (pools.NAME.tls). */
export interface UpstreamTls {
  /** PEM of the CA(s) to trust instead of the system store. */
  readonly ca: string | undefined;
  /** Name to send in SNI and to verify the certificate against, instead of the backend's host. */
  readonly serverName: string | undefined;
  readonly rejectUnauthorized: boolean;
  /** PEM client certificate and key presented to the backend (mutual TLS); undefined: none. */
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
}

export interface BackendConfig {
  /** Stable identity, also the metric label: "ws://host:port". */
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly weight: number;
  /** For wss:// backends of a pool with `tls`: how to verify them (default: system CAs, the host's name). */
  readonly tlsOptions?: UpstreamTls;
  /** pools.NAME.proxyProtocol: the PROXY header sent first on each connection; absent: none. */
  readonly proxyProtocol?: 'v1' | 'v2';
}

export interface HealthCheckConfig {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
  /** Full WebSocket handshake and close instead of an HTTP GET. */
  readonly websocket: boolean;
}

export interface OutlierConfig {
  readonly consecutiveFailures: number;
  readonly ejectForMs: number;
  readonly maxEjectForMs: number;
}

export interface DiscoveryConfig {
  readonly dns: string;
  readonly port: number;
  readonly scheme: 'ws' | 'wss';
  /**
   * For `wss`: how discovered backends are verified. An address cannot be checked against itself, so the name
   * defaults to `dns` (what a headless Service's certificates carry) unless pools.NAME.tls.serverName says otherwise.
   */
  readonly tlsOptions: UpstreamTls | undefined;
  /** Given to every discovered backend (BackendConfig.proxyProtocol). */
  readonly proxyProtocol: 'v1' | 'v2' | undefined;
  readonly intervalMs: number;
  /** "host" or "host:port" nameservers; undefined = the system's. */
  readonly nameservers: readonly string[] | undefined;
}

export interface RebalanceConfig {
  readonly mode: 'off' | 'gradual';
  readonly maxClosesPerSecond: number;
}

export interface PoolConfig {
  readonly name: string;
  readonly hashKey: HashKeySpec;
  readonly balanceFactor: number | undefined;
  /** Static members; empty when `discovery` supplies them. */
  readonly backends: readonly BackendConfig[];
  readonly discovery: DiscoveryConfig | undefined;
  /** Undefined: no active checks, members count as healthy. */
  readonly healthCheck: HealthCheckConfig | undefined;
  readonly outlier: OutlierConfig;
  readonly rebalance: RebalanceConfig;
  /** Largest fraction (0–1) of members that may be out of the ring for health or ejection at once. */
  readonly panicThreshold: number;
  /** A cookie the proxy sets to keep a client on its backend; undefined: none. */
  readonly sticky: StickySpec | undefined;
  readonly proxyProtocol: ProxyProtocolOut;
}

export interface Config {
  /** Absolute path of the file this came from (for reload and messages). */
  readonly file: string;
  readonly listeners: readonly ListenerConfig[];
  readonly admin: { readonly address: string; readonly port: number; readonly token: string | undefined };
  readonly routes: readonly RouteConfig[];
  readonly pools: ReadonlyMap<string, PoolConfig>;
  readonly limits: {
    readonly maxConnections: number;
    readonly maxConnectionsPerIp: number;
    /** Undefined: new connections are not rate limited. */
    readonly connectionRate: ConnectionRateConfig | undefined;
  };
  readonly timeouts: {
    readonly handshakeMs: number;
    readonly idleMs: number;
    readonly drainMs: number;
    /** A plain request's body may pause this long between two reads before it is cut (408). */
    readonly bodyMs: number;
    /** A tunnel is closed (1001) after at most this long; 0 = never. */
    readonly maxLifetimeMs: number;
    /** Fraction below maxLifetimeMs within which each tunnel's own deadline is drawn. */
    readonly maxLifetimeJitter: number;
  };
  readonly log: { readonly level: string; readonly redact: RedactConfig };
  /** Worker processes: a count, or 'auto' (one per available CPU, resolved at start). */
  readonly workers: number | 'auto';
  /** With workers > 1: the workers accept from the shared socket ('kernel'), or the primary hands them out. */
  readonly workersAccept: 'kernel' | 'primary';
  readonly shutdown: { readonly acceptDelayMs: number };
}
