// The schema of pools.NAME: backends (URLs or DNS discovery), the hash key, health checks, passive ejection,
// rebalancing, sticky cookies and TLS toward wss:// backends.

import { z } from 'zod';
import { isToken } from '../handshake/token.js';
import { parseHashKeySpec } from '../routing/hash-key.js';
import { duration, pathPrefix, port, positiveDuration, probeInterval } from './schema-primitives.js';

const backendUrl = z
  .string()
  .transform((text, ctx) => {
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
  })
  .meta({ pattern: '^[wW][sS][sS]?://' });

const backendSchema = z
  .union(
    [
      backendUrl.transform((u) => ({ ...u, weight: 1 })),
      z
        .strictObject({
          url: backendUrl.describe('ws://host:port or wss://host:port.'),
          weight: z.number().positive().max(100).default(1).describe("Scales the backend's share of the ring."),
        })
        .transform((b) => ({ ...b.url, weight: b.weight })),
    ],
    { error: 'must be a ws:// or wss:// URL, or { url, weight }' },
  )
  .describe('ws://host:port or wss://host:port, or { url, weight }.');

const hashKey = z
  .string()
  .transform((text, ctx) => {
    const spec = parseHashKeySpec(text);
    if ('error' in spec) {
      ctx.addIssue({ code: 'custom', message: spec.error });
      return z.NEVER;
    }
    return spec;
  })
  .meta({ pattern: '^(ip|path|(header|cookie|query|claim):.+)$' });

const healthCheckSchema = z.strictObject({
  path: pathPrefix.default('/').describe('Checked path: an HTTP GET (2xx = healthy), or a WebSocket upgrade.'),
  interval: probeInterval.prefault('5s').describe('Per backend, jittered, never overlapping.'),
  timeout: positiveDuration.prefault('2s').describe('A check not answered in time fails.'),
  healthyThreshold: z
    .number()
    .int()
    .min(1)
    .max(100)
    .default(2)
    .describe('Passed checks in a row that make a backend healthy.'),
  unhealthyThreshold: z
    .number()
    .int()
    .min(1)
    .max(100)
    .default(3)
    .describe('Failed checks in a row that take it out of the ring (its clients get 1014).'),
  websocket: z.boolean().default(false).describe('Check with a full WebSocket handshake and close instead of a GET.'),
});

const outlierSchema = z.strictObject({
  consecutiveFailures: z
    .number()
    .int()
    .min(1)
    .default(5)
    .describe('Failed connects or handshakes in a row that eject a backend.'),
  ejectFor: duration.prefault('30s').describe('How long an ejection lasts; doubles on repeated ejections.'),
  maxEjectFor: duration.prefault('5m').describe('The longest an ejection may last.'),
});

const discoverySchema = z.strictObject({
  dns: z
    .string()
    .min(1)
    .describe('Name whose A/AAAA records are the backends (a Kubernetes headless Service), weight 1 each.'),
  port: port.min(1).describe('Backend port of the discovered addresses.'),
  scheme: z
    .enum(['ws', 'wss'])
    .default('ws')
    .describe(
      '`wss` dials discovered backends with TLS, verified as pools.NAME.tls says (the certificate must name tls.serverName, or else the dns name).',
    ),
  interval: probeInterval
    .prefault('10s')
    .describe('How often to resolve again; a failed or empty lookup keeps the last good set.'),
  nameservers: z
    .array(z.string().min(1))
    .min(1)
    .optional()
    .describe('host[:port] DNS servers instead of the system resolver.'),
});

const rebalanceSchema = z.strictObject({
  mode: z
    .enum(['off', 'gradual'])
    .default('gradual')
    .describe(
      'When the ring changes, `gradual` closes connections whose key now maps elsewhere with 1012 so they reconnect to the new owner; `off` leaves them.',
    ),
  maxClosesPerSecond: z
    .number()
    .positive()
    .max(100_000)
    .default(50)
    .describe('Pace of those closes (also used to drain a removed backend).'),
});

const stickySchema = z.strictObject({
  cookie: z
    .string()
    .refine(isToken, "must be a cookie name (an HTTP token: letters, digits, !#$%&'*+-.^_`|~)")
    .describe('Name of the affinity cookie the proxy sets on the first answer and honours afterwards.'),
  maxAge: duration.prefault(0).describe('Cookie lifetime; 0 = a session cookie.'),
  sameSite: z.enum(['Lax', 'Strict', 'None']).default('Lax').describe('SameSite attribute (None implies Secure).'),
  secure: z
    .union([z.literal('auto'), z.boolean()])
    .default('auto')
    .describe('Secure attribute; `auto` = on TLS listeners.'),
  secret: z
    .string()
    .min(16, 'use a secret of at least 16 characters')
    .optional()
    .describe('Keys the cookie values; without it anyone who knows the pool name can compute them.'),
});

export const poolSchema = z.strictObject({
  hashKey: hashKey
    .prefault('ip')
    .describe(
      'What keeps a user on one backend: `ip`, `header:NAME`, `cookie:NAME`, `query:NAME`, `path`, or `claim:NAME` (a claim of the JWT of routes[].auth.jwt); a missing key falls back to the client IP.',
    ),
  balanceFactor: z
    .number()
    .min(1)
    .max(10)
    .optional()
    .describe(
      'Bounded loads: a backend holding more than ⌈c × average⌉ connections is skipped; absent = plain consistent hashing.',
    ),
  /** Exactly one of `backends` and `discovery` (checked in load.ts, where the error can name the pool). */
  backends: z
    .array(backendSchema)
    .min(1, 'a pool needs at least one backend')
    .optional()
    .describe('Static members (give either backends or discovery).'),
  discovery: discoverySchema.optional().describe('Members from DNS instead of `backends`.'),
  healthCheck: healthCheckSchema.optional().describe('Active checks; absent = none, members count as healthy.'),
  outlier: outlierSchema.prefault({}).describe('Passive ejection after failed connects or handshakes.'),
  rebalance: rebalanceSchema.prefault({}).describe('What happens to connections whose key moved to another backend.'),
  panicThreshold: z
    .number()
    .min(0)
    .max(1)
    .default(0.5)
    .describe(
      'At most this fraction of the pool may be out of the ring (unhealthy or ejected); past it the rest stay in.',
    ),
  proxyProtocol: z
    .enum(['off', 'v1', 'v2'])
    .default('off')
    .describe(
      "Send a PROXY protocol header first on every backend connection, naming the client (health checks send LOCAL); backends' plain HTTP connections then serve one client each.",
    ),
  sticky: stickySchema
    .optional()
    .describe('A proxy-set cookie pins each client to its backend (Socket.IO long polling); absent = none.'),
  tls: z
    .strictObject({
      ca: z
        .string()
        .min(1)
        .optional()
        .describe('PEM CA bundle to verify wss:// backends with, instead of the system store.'),
      serverName: z
        .string()
        .min(1)
        .optional()
        .describe('Name sent as SNI and checked in the backend certificate (default: the backend host).'),
      insecureSkipVerify: z.boolean().default(false).describe('Accept any backend certificate (labs and tests only).'),
      cert: z
        .string()
        .min(1)
        .optional()
        .describe('PEM client certificate wsgate presents to wss:// backends (mutual TLS); given with key.'),
      key: z.string().min(1).optional().describe('PEM private key of that client certificate; given with cert.'),
    })
    .optional()
    .describe('How wss:// backends are verified.'),
});
