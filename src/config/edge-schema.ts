// The schema of the edge controls (who may connect and how fast, what the logs keep of secrets), kept apart from
// schema.ts so its keys read together: routes[].access, routes[].forwardClientCert, listeners[].tls.clientCa and
// .clientCert, limits.connectionRate, log.redact.

import { z } from 'zod';
import { parseCidr } from '../net/cidr.js';

export const cidr = z.string().superRefine((text, ctx) => {
  const parsed = parseCidr(text);
  if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.error });
});

export const accessSchema = z
  .strictObject({
    allow: z
      .array(cidr)
      .optional()
      .describe('CIDR blocks (IPv4 and IPv6) of the client addresses let in; absent = every address not denied.'),
    deny: z.array(cidr).default([]).describe('CIDR blocks refused (403), checked before allow.'),
  })
  .describe(
    'Who may use the route, by the real client address (listeners[].clientAddress); an IPv4-mapped IPv6 address matches its IPv4 form.',
  );

export const forwardClientCertSchema = z
  .boolean()
  .default(false)
  .describe(
    "Send the client certificate's Hash, Subject, URI and DNS names to the backend in X-Forwarded-Client-Cert (Envoy's format); a client's own copy is always removed.",
  );

/** Keys added to listeners[].tls. */
export const clientCertKeys = {
  clientCa: z
    .string()
    .min(1)
    .optional()
    .describe('PEM CA bundle that client certificates must chain to (path relative to the config file).'),
  clientCert: z
    .enum(['none', 'optional', 'require'])
    .default('none')
    .describe(
      '`require`: a client without a valid certificate gets 403 WSG_CLIENT_CERT_REQUIRED / WSG_CLIENT_CERT_INVALID; `optional`: one is asked for, and one that does not verify gets 403; `none`: none asked for.',
    ),
};

export const connectionRateSchema = z
  .strictObject({
    perSecond: z
      .number()
      .positive()
      .optional()
      .describe(
        'New connections per second per process (token bucket, burst = one second); beyond: 503 + Retry-After.',
      ),
    perIpPerSecond: z
      .number()
      .positive()
      .optional()
      .describe('New connections per second per client address; beyond: 429 + Retry-After.'),
    perIpBurst: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('Bucket size per client address (default: 2 × perIpPerSecond).'),
  })
  .describe(
    'New connections (upgrades and plain requests) per second, checked before any backend is touched; per process with workers > 1.',
  );

export const REDACTABLE = ['query', 'cookie', 'authorization'] as const;

export const redactSchema = z
  .array(z.enum(REDACTABLE))
  .default([...REDACTABLE])
  .describe(
    'What log lines hide: `query` replaces query values with "…" (names kept), `cookie` and `authorization` keep those header values out; [] hides nothing.',
  );
