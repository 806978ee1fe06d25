// The YAML schema (zod), strict at every level, with transforms that normalise to the narrow runtime types:
// durations in ms, sizes in bytes, backend URLs parsed, hash-key specs parsed, defaults filled in.

import { z } from 'zod';
import { isToken } from '../handshake/token.js';
import { parseHashKeySpec } from '../routing/hash-key.js';
import { routeHostProblem } from '../routing/router.js';
import { parseDuration, parseSize } from './units.js';

const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (typeof ms === 'number') return ms;
  ctx.addIssue({ code: 'custom', message: ms.error });
  return z.NEVER;
});

/** A duration of at least `minMs`: timeouts and intervals where 0 would mean "at once" or "in a tight loop". */
function durationAtLeast(minMs: number, why: string) {
  return duration.refine((ms) => ms >= minMs, { message: why });
}
const positiveDuration = durationAtLeast(1, 'must be more than 0');
/** Probes every few ms would be a load of their own on backends and nameservers. */
const probeInterval = durationAtLeast(100, 'must be at least 100ms');

const size = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const bytes = parseSize(v);
  if (typeof bytes === 'number') return bytes;
  ctx.addIssue({ code: 'custom', message: bytes.error });
  return z.NEVER;
});

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be 1-63 letters, digits, "-", "_" or "."');
const port = z.number().int().min(0).max(65535);
const address = z.string().min(1);

const tlsVersion = z.enum(['TLSv1.2', 'TLSv1.3']);
const certPair = z.strictObject({ cert: z.string().min(1), key: z.string().min(1) });
const tlsSchema = z
  .strictObject({
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    minVersion: tlsVersion.default('TLSv1.2'),
    ciphers: z.string().min(1).optional(),
    /** Extra certificates chosen by SNI server name (exact or "*.example.com"). */
    sni: z.record(z.string().min(1), certPair).default({}),
    /** What a client gets when its SNI name matches no entry: the default certificate, or a refused handshake. */
    unknownSni: z.enum(['default', 'refuse']).default('default'),
  })
  .refine((t) => (t.cert === undefined) === (t.key === undefined), {
    message: 'cert and key must be given together (omit both for a generated self-signed certificate)',
  });

const listenerSchema = z.strictObject({
  name,
  address: address.default('0.0.0.0'),
  port,
  tls: tlsSchema.optional(),
});

const limitKeys = {
  messagesPerSecond: z.number().positive().optional(),
  burstMessages: z.number().int().positive().optional(),
  bytesPerSecond: size.optional(),
  maxMessageBytes: size.optional(),
  maxFramesPerMessage: z.number().int().positive().optional(),
  controlFramesPerSecond: z.number().positive().optional(),
};
const directionLimits = z.strictObject(limitKeys);
const perConnectionSchema = z.strictObject({
  ...limitKeys,
  onExceed: z.enum(['close', 'throttle']).optional(),
  backendToClient: directionLimits.optional(),
});

const keepaliveSchema = z.strictObject({
  interval: positiveDuration,
  timeout: positiveDuration.default(10_000),
  peers: z.enum(['client', 'backend', 'both']).default('both'),
});

const routeSchema = z.strictObject({
  name,
  /** Absent: any host, any path. */
  match: z
    .strictObject({
      host: z
        .string()
        .min(1)
        .superRefine((host, ctx) => {
          const problem = routeHostProblem(host);
          if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
        })
        .optional(),
      path: z.string().startsWith('/', 'must start with "/"').default('/'),
    })
    .default({ path: '/' }),
  pool: name,
  origins: z.array(z.string().min(1)).optional(),
  /** strict: RFC 6455 violations close the connection; lenient: counted and passed; off: no frame scanning. */
  protocol: z.enum(['strict', 'lenient', 'off']).default('strict'),
  limits: z.strictObject({ perConnection: perConnectionSchema }).optional(),
  keepalive: keepaliveSchema.optional(),
  /** Plain (non-upgrade) HTTP requests: proxied to the pool (Socket.IO polling), or refused with 404. */
  http: z.enum(['proxy', 'refuse']).default('proxy'),
});

const backendUrl = z.string().transform((text, ctx) => {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a URL (use ws://host:port)` });
    return z.NEVER;
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    ctx.addIssue({ code: 'custom', message: `"${text}" must use ws:// or wss://` });
    return z.NEVER;
  }
  const tls = url.protocol === 'wss:';
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return {
    id: `${url.protocol}//${url.host}`,
    host: hostname,
    port: url.port === '' ? (tls ? 443 : 80) : Number(url.port),
    tls,
  };
});

const backendSchema = z.union([
  backendUrl.transform((u) => ({ ...u, weight: 1 })),
  z.strictObject({ url: backendUrl, weight: z.number().positive().max(100).default(1) }).transform((b) => ({
    ...b.url,
    weight: b.weight,
  })),
]);

const hashKey = z.string().transform((text, ctx) => {
  const spec = parseHashKeySpec(text);
  if ('error' in spec) {
    ctx.addIssue({ code: 'custom', message: spec.error });
    return z.NEVER;
  }
  return spec;
});

/** Active checks: an HTTP GET (2xx = pass) or, with `websocket`, a full upgrade and close on `path`. */
const healthCheckSchema = z.strictObject({
  path: z.string().startsWith('/', 'must start with "/"').default('/'),
  interval: probeInterval.default(5000),
  timeout: positiveDuration.default(2000),
  healthyThreshold: z.number().int().min(1).max(100).default(2),
  unhealthyThreshold: z.number().int().min(1).max(100).default(3),
  websocket: z.boolean().default(false),
});

/** Passive ejection after consecutive failed upstream connects/handshakes; repeats double up to maxEjectFor. */
const outlierDefaults = { consecutiveFailures: 5, ejectFor: 30_000, maxEjectFor: 300_000 };
const outlierSchema = z.strictObject({
  consecutiveFailures: z.number().int().min(1).default(outlierDefaults.consecutiveFailures),
  ejectFor: duration.default(outlierDefaults.ejectFor),
  maxEjectFor: duration.default(outlierDefaults.maxEjectFor),
});

/** DNS A/AAAA discovery (the Kubernetes headless-Service pattern); `nameservers` overrides the system resolver. */
const discoverySchema = z.strictObject({
  dns: z.string().min(1),
  port: port.min(1),
  /** wss: discovered backends are dialled with TLS, verified as pools.NAME.tls says (the name: the dns name). */
  scheme: z.enum(['ws', 'wss']).default('ws'),
  interval: probeInterval.default(10_000),
  nameservers: z.array(z.string().min(1)).min(1).optional(),
});

const rebalanceDefaults = { mode: 'gradual' as const, maxClosesPerSecond: 50 };
const rebalanceSchema = z.strictObject({
  mode: z.enum(['off', 'gradual']).default(rebalanceDefaults.mode),
  maxClosesPerSecond: z.number().positive().max(100_000).default(rebalanceDefaults.maxClosesPerSecond),
});

/** A cookie the proxy sets on the first answer and honours afterwards, pinning the client to its backend. */
const stickySchema = z.strictObject({
  cookie: z.string().refine(isToken, "must be a cookie name (an HTTP token: letters, digits, !#$%&'*+-.^_`|~)"),
  /** 0: a session cookie. */
  maxAge: duration.default(0),
  sameSite: z.enum(['Lax', 'Strict', 'None']).default('Lax'),
  /** auto: Secure on TLS listeners. */
  secure: z.union([z.literal('auto'), z.boolean()]).default('auto'),
  /** Keys the cookie values: without it they can be computed by anyone who knows the pool name. */
  secret: z.string().min(16, 'use a secret of at least 16 characters').optional(),
});

const poolSchema = z.strictObject({
  hashKey: hashKey.default({ kind: 'ip' }),
  balanceFactor: z.number().min(1).max(10).optional(),
  /** Exactly one of `backends` and `discovery` (checked in load.ts, where the error can name the pool). */
  backends: z.array(backendSchema).min(1, 'a pool needs at least one backend').optional(),
  discovery: discoverySchema.optional(),
  healthCheck: healthCheckSchema.optional(),
  outlier: outlierSchema.default(outlierDefaults),
  rebalance: rebalanceSchema.default(rebalanceDefaults),
  /** Largest fraction of a pool that may be out of the ring for health or ejection at once (Envoy's panic mode). */
  panicThreshold: z.number().min(0).max(1).default(0.5),
  sticky: stickySchema.optional(),
  /** How wss:// backends are verified: a private CA, the name to check, or (for tests only) no verification. */
  tls: z
    .strictObject({
      ca: z.string().min(1).optional(),
      serverName: z.string().min(1).optional(),
      insecureSkipVerify: z.boolean().default(false),
    })
    .optional(),
});

export const configSchema = z.strictObject({
  listeners: z.array(listenerSchema).min(1, 'at least one listener is required'),
  admin: z
    .strictObject({
      address: address.default('127.0.0.1'),
      port: port.default(9090),
      token: z.string().min(16, 'use a token of at least 16 characters').optional(),
    })
    .default({ address: '127.0.0.1', port: 9090 }),
  routes: z.array(routeSchema).min(1, 'at least one route is required'),
  pools: z.record(name, poolSchema),
  limits: z
    .strictObject({
      maxConnections: z.number().int().positive().default(50_000),
      maxConnectionsPerIp: z.number().int().positive().default(1000),
      perConnection: perConnectionSchema.optional(),
    })
    .default({ maxConnections: 50_000, maxConnectionsPerIp: 1000 }),
  timeouts: z
    .strictObject({
      handshake: positiveDuration.default(5000),
      idle: duration.default(60_000),
      drain: duration.default(30_000),
      /** How long a plain request's body may pause between two reads before it is cut (408). */
      body: positiveDuration.default(10_000),
    })
    .default({ handshake: 5000, idle: 60_000, drain: 30_000, body: 10_000 }),
  log: z
    .strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
    .default({ level: 'info' }),
  /** Processes serving the listeners: a count, or "auto" for one per available CPU. Changing it needs a restart. */
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(1024)]).default(1),
  /**
   * With workers > 1, who accepts connections: "kernel" (every worker accepts from the shared listening socket) or
   * "primary" (the primary accepts and hands each one to the workers in turn). Changing it needs a restart.
   */
  workersAccept: z.enum(['kernel', 'primary']).default('kernel'),
  shutdown: z
    .strictObject({
      /**
       * After SIGTERM/SIGINT, /readyz answers 503 at once but the listeners keep accepting for this long, so
       * a load balancer polling /readyz stops sending before connections would be refused. Then the drain
       * (timeouts.drain) starts.
       */
      acceptDelay: duration.default(0),
    })
    .default({ acceptDelay: 0 }),
});

export type RawConfig = z.output<typeof configSchema>;
