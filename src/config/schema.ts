// The YAML schema (zod), strict at every level, with transforms that normalise to the narrow runtime types:
// durations in ms, sizes in bytes, backend URLs parsed, hash-key specs parsed, defaults filled in. It is also the
// source of the JSON Schema editors use (json-schema.ts): descriptions and defaults live here, once. Defaults are
// given as the text a user would write (`prefault`), so the JSON Schema shows `5s`, not 5000.

import { z } from 'zod';
import { routeHostProblem } from '../routing/router.js';
import { authSchemaWith } from './auth-schema.js';
import {
  accessSchema,
  cidr,
  clientCertKeys,
  connectionRateSchema,
  forwardClientCertSchema,
  redactSchema,
} from './edge-schema.js';
import { poolSchema } from './pool-schema.js';
import { address, duration, fraction, name, pathPrefix, port, positiveDuration, size } from './schema-primitives.js';

/** The admin listener's port when `admin.port` is not set: no common tool's default (9090 is Prometheus's, 9901 Envoy's). */
export const DEFAULT_ADMIN_PORT = 8077;

const authSchema = authSchemaWith(duration);

const tlsVersion = z.enum(['TLSv1.2', 'TLSv1.3']);
const certPair = z.strictObject({
  cert: z.string().min(1).describe('PEM certificate chain for this name (path relative to the config file).'),
  key: z.string().min(1).describe('PEM private key for this name (path relative to the config file).'),
});
const tlsSchema = z
  .strictObject({
    cert: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM certificate chain (path relative to the config file). Omit cert and key for a generated self-signed certificate.',
      ),
    key: z.string().min(1).optional().describe('PEM private key (path relative to the config file); given with cert.'),
    minVersion: tlsVersion
      .default('TLSv1.2')
      .describe('Lowest TLS version offered; TLS 1.0 and 1.1 are never offered.'),
    ciphers: z
      .string()
      .min(1)
      .optional()
      .describe('OpenSSL cipher list for TLS 1.2 (default: forward-secret AEAD suites).'),
    sni: z
      .record(z.string().min(1), certPair)
      .default({})
      .describe('Extra certificates chosen by SNI server name (exact or "*.example.com"): name → { cert, key }.'),
    sessionTicketKeys: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A file holding one base64 line of 48 random bytes (`openssl rand 48 | base64 -w0`): the TLS session ticket key, shared by every worker and instance given the same file, so a client resumes wherever it reconnects; re-read on change. Absent: a key made at start for the process tree, rotated every 12 hours.',
      ),
    unknownSni: z
      .enum(['default', 'refuse'])
      .default('default')
      .describe(
        'A client whose SNI name matches no entry (or that names no host): `default` serves the main certificate, `refuse` fails the TLS handshake unless the main certificate covers the name.',
      ),
    ...clientCertKeys,
  })
  .refine((t) => (t.cert === undefined) === (t.key === undefined), {
    message: 'cert and key must be given together (omit both for a generated self-signed certificate)',
  });

const clientAddressSchema = z.strictObject({
  proxyProtocol: z
    .enum(['off', 'v1', 'v2', 'any'])
    .default('off')
    .describe(
      'Every connection must start with a PROXY protocol header of this version (an L4 load balancer in front: `send-proxy-v2`, a cloud NLB); it says who the client is. `off`: none expected.',
    ),
  forwardedFor: z
    .boolean()
    .default(false)
    .describe(
      'Take the client from X-Forwarded-For (or RFC 7239 Forwarded) added by trusted proxies, walked from the right; needs trustedProxies.',
    ),
  trustedProxies: z
    .array(cidr)
    .optional()
    .describe(
      'CIDR blocks (IPv4 and IPv6) of the balancers whose PROXY header or forwarding headers are believed; with proxyProtocol, a connection from anywhere else is closed.',
    ),
});

const listenerSchema = z.strictObject({
  name: name.describe('Listener name, unique; a label in logs.'),
  address: address.default('0.0.0.0').describe('Bind address (`::` for IPv6).'),
  port: port.describe('Port; 0 picks a free one (the `listening` log line says which).'),
  tls: tlsSchema.optional().describe('Makes the listener wss:// and https://.'),
  clientAddress: clientAddressSchema
    .prefault({})
    .describe('Who the client is behind a load balancer: PROXY protocol, trusted X-Forwarded-For.'),
});

const limitKeys = {
  messagesPerSecond: z.number().positive().optional().describe('Data messages per second (token bucket).'),
  burstMessages: z.number().int().positive().optional().describe('Token bucket size (default: 2 × messagesPerSecond).'),
  bytesPerSecond: size.optional().describe('Payload bytes per second (token bucket, burst = one second).'),
  maxMessageBytes: size
    .optional()
    .describe('Largest message across its fragments; 1009 as soon as a frame header declares more.'),
  maxFramesPerMessage: z.number().int().positive().optional().describe('Most fragments in one message.'),
  controlFramesPerSecond: z
    .number()
    .positive()
    .optional()
    .describe('Pings and pongs per second (a close frame and the answer to a proxy keepalive ping never count).'),
};
const directionLimits = z.strictObject(limitKeys);
const perConnectionSchema = z.strictObject({
  ...limitKeys,
  // No zod default: a route's limits inherit the global onExceed unless they set their own (load.ts merges them).
  onExceed: z.enum(['close', 'throttle']).optional().meta({
    default: 'close',
    description: '`close`: 1008 to the client at a frame boundary; `throttle`: stop reading until tokens refill.',
  }),
  backendToClient: directionLimits
    .optional()
    .describe('The same rate and size keys for backend → client (the others apply to client → backend).'),
});

const keepaliveSchema = z.strictObject({
  interval: positiveDuration.describe('Proxy pings toward the peers this often.'),
  timeout: positiveDuration
    .prefault('10s')
    .describe('A peer that does not pong in time is closed (client: 1001; backend: the client gets 1011).'),
  peers: z.enum(['client', 'backend', 'both']).default('both').describe('Who is pinged.'),
});

const routeSchema = z.strictObject({
  name: name.describe('Route name, unique; the `route` metric label.'),
  match: z
    .strictObject({
      host: z
        .string()
        .min(1)
        .superRefine((host, ctx) => {
          const problem = routeHostProblem(host);
          if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
        })
        .optional()
        .describe('Exact host or "*.example.com"; case-insensitive, port ignored; absent = any host.'),
      path: pathPrefix
        .default('/')
        .describe('Path prefix on a segment boundary (`/chat` matches /chat, /chat/x, /chat?x, not /chatty).'),
    })
    .prefault({})
    .describe('What the route takes; absent = any host, any path.'),
  pool: name.describe('The pool (a key of `pools`) connections go to.'),
  origins: z
    .array(z.string().min(1))
    .optional()
    .describe('Origin allowlist; absent = any origin, present = upgrades without an allowed Origin get 403.'),
  protocol: z
    .enum(['strict', 'lenient', 'off'])
    .default('strict')
    .describe(
      '`strict`: RFC 6455 violations close with 1002; `lenient`: counted and passed; `off`: no frame scanning (no message metrics, limits or keepalive).',
    ),
  limits: z
    .strictObject({
      perConnection: perConnectionSchema.describe('Overrides limits.perConnection key by key for this route.'),
    })
    .optional()
    .describe('Limits for the tunnels of this route.'),
  keepalive: keepaliveSchema.optional().describe('Proxy pings toward clients and/or backends.'),
  auth: authSchema.optional().describe('Who may connect: absent = anyone (see also origins).'),
  http: z
    .enum(['proxy', 'refuse'])
    .default('proxy')
    .describe(
      'Plain (non-upgrade) HTTP requests on the route: `proxy` sends them to the pool (Socket.IO polling), `refuse` answers 404 WSG_WEBSOCKET_ONLY.',
    ),
  access: accessSchema.optional(),
  forwardClientCert: forwardClientCertSchema,
});

export const configSchema = z
  .strictObject({
    listeners: z.array(listenerSchema).min(1, 'at least one listener is required').describe('Where clients connect.'),
    admin: z
      .strictObject({
        address: address.default('127.0.0.1').describe('Bind address of the admin listener.'),
        port: port.default(DEFAULT_ADMIN_PORT).describe('Port of the admin listener; changes need a restart.'),
        token: z
          .string()
          .min(16, 'use a token of at least 16 characters')
          .optional()
          .describe('Bearer token required for POST /reload and /api/* (probes and /metrics stay open).'),
      })
      .prefault({})
      .describe('Status page /, /api/status, POST /reload, /metrics, /healthz, /readyz.'),
    routes: z
      .array(routeSchema)
      .min(1, 'at least one route is required')
      .describe('Host and path → pool; the first match wins.'),
    pools: z.record(name, poolSchema).describe('Backends by pool name.'),
    limits: z
      .strictObject({
        maxConnections: z
          .number()
          .int()
          .positive()
          .default(50_000)
          .describe('Cap on what holds a backend connection (503 beyond); per process with workers > 1.'),
        maxConnectionsPerIp: z.number().int().positive().default(1000).describe('The same per client IP (429 beyond).'),
        perConnection: perConnectionSchema.optional().describe('Limits on every tunnel (routes may override them).'),
        connectionRate: connectionRateSchema.optional(),
      })
      .prefault({})
      .describe('Connection caps, and limits on every tunnel.'),
    timeouts: z
      .strictObject({
        handshake: positiveDuration
          .prefault('5s')
          .describe('Request headers, TLS handshake, and each backend handshake attempt.'),
        idle: duration.prefault('60s').describe('Close (1001) after no data message in either direction; 0: never.'),
        drain: duration
          .prefault('30s')
          .describe(
            'Shutdown, and a reload removing a route or pool: how long tunnels have to close (1001) before the rest are cut.',
          ),
        body: positiveDuration
          .prefault('10s')
          .describe("How long a plain request's body may pause between two reads before it is cut (408)."),
        maxLifetime: duration
          .prefault('0s')
          .describe('Close (1001) a tunnel older than this, so clients reconnect to the current backends; 0: never.'),
        maxLifetimeJitter: fraction
          .prefault('10%')
          .describe("Each tunnel's lifetime is drawn at random within this fraction below maxLifetime."),
      })
      .prefault({})
      .describe('How long handshakes, idle tunnels and drains may take.'),
    log: z
      .strictObject({
        level: z
          .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
          .default('info')
          .describe(
            'pino level; JSON lines on stdout (pretty in a terminal). `debug` adds stack traces to start-up errors.',
          ),
        redact: redactSchema,
      })
      .prefault({})
      .describe('Logging.'),
    workers: z
      .union([z.number().int().min(1).max(1024), z.literal('auto')])
      .default(1)
      .describe(
        'Processes serving the listeners: a number, or `auto` for one per available CPU. Changes need a restart.',
      ),
    workersAccept: z
      .enum(['kernel', 'primary'])
      .default('kernel')
      .describe(
        'With workers > 1, who accepts connections: `kernel` (every worker accepts from the shared socket) or `primary` (the primary hands them out in turn). Changes need a restart.',
      ),
    shutdown: z
      .strictObject({
        acceptDelay: duration
          .prefault('0s')
          .describe(
            'After SIGTERM/SIGINT, /readyz answers 503 at once but the listeners keep accepting this long; then the drain starts.',
          ),
      })
      .prefault({})
      .describe('What SIGTERM/SIGINT do before the drain.'),
  })
  .meta({ title: 'wsgate configuration' });

export type RawConfig = z.output<typeof configSchema>;
