// The schema of routes[].auth (JWT verification at the edge), kept apart from schema.ts: which keys verify tokens,
// which claims they must carry, and where a request carries its token. Built from schema.ts's duration type (a
// factory, so the two files do not import each other).

import { z } from 'zod';
import { isToken } from '../handshake/token.js';
import { parseHashKeySpec } from '../routing/hash-key.js';
import type { TokenSource } from './types.js';

/** Every algorithm jose verifies with a key of its own; "none" is not one, and never accepted. */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
/** Algorithms keyed with a shared secret (`secret:`), never with `keys`. */
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;

/** `header:NAME`, `query:NAME`, `cookie:NAME` or `protocol`. */
export function parseTokenSource(text: string): TokenSource | { error: string } {
  if (text === 'protocol') return { kind: 'protocol' };
  const colon = text.indexOf(':');
  const kind = text.slice(0, Math.max(colon, 0));
  const name = text.slice(colon + 1);
  if (kind === 'header' || kind === 'cookie') {
    if (!isToken(name)) return { error: `${kind} name must be an HTTP token, got '${name}'` };
    return kind === 'header' ? { kind, name: name.toLowerCase() } : { kind, name };
  }
  if (kind === 'query') {
    if (name === '' || /[&=#?%+\s]/.test(name)) return { error: `query parameter name must be plain, got '${name}'` };
    return { kind, name };
  }
  return { error: `token source must be 'header:NAME', 'query:NAME', 'cookie:NAME' or 'protocol', got '${text}'` };
}

const tokenSource = z
  .string()
  .transform((text, ctx) => {
    const source = parseTokenSource(text);
    if ('error' in source) {
      ctx.addIssue({ code: 'custom', message: source.error });
      return z.NEVER;
    }
    return source;
  })
  .meta({ pattern: '^(protocol|(header|query|cookie):.+)$' });

const claimHashKey = z
  .string()
  .transform((text, ctx) => {
    const spec = parseHashKeySpec(text);
    if ('error' in spec || spec.kind !== 'claim') {
      ctx.addIssue({ code: 'custom', message: `must be 'claim:NAME', got '${text}'` });
      return z.NEVER;
    }
    return spec;
  })
  .meta({ pattern: '^claim:.+$' });

export function authSchemaWith(duration: z.ZodType<number, number | string>) {
  const jwt = z
    .strictObject({
      keys: z
        .string()
        .min(1)
        .optional()
        .describe(
          'A JWKS file (re-read on reload and when it changes) or an https:// JWKS URL (fetched off the handshake path, cached, refetched for an unknown kid at most once per 30s, kept when a fetch fails).',
        ),
      keysCa: z
        .string()
        .min(1)
        .optional()
        .describe('PEM CA bundle to verify an https:// `keys` URL with, instead of the system store.'),
      secret: z
        .string()
        .min(32, 'use a secret of at least 32 characters')
        .optional()
        .describe('Shared secret for HS256/HS384/HS512 tokens, instead of `keys`.'),
      issuer: z.string().min(1).optional().describe('Required `iss` claim; absent = any issuer.'),
      audience: z
        .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
        .optional()
        .describe('Required `aud` (one of a list); absent = any audience.'),
      algorithms: z
        .array(z.enum([...ASYMMETRIC_ALGORITHMS, ...HMAC_ALGORITHMS]))
        .min(1)
        .describe('Accepted `alg` values (required; "none" is never accepted; HS* only with `secret`).'),
      from: z
        .array(tokenSource)
        .min(1)
        .prefault(['header:Authorization'])
        .describe(
          'Where the token is looked for: `header:Authorization` (Bearer), `header:NAME`, `query:NAME`, `cookie:NAME`, `protocol` (the Sec-WebSocket-Protocol entry after `access_token`). A token found in two places is refused.',
        ),
      clockSkew: duration.prefault('30s').describe('Leeway for `exp` and `nbf` against this clock.'),
      forwardClaims: z
        .record(
          z.string().min(1),
          z.string().refine(isToken, 'must be a header name (an HTTP token)').describe('Header name.'),
        )
        .optional()
        .describe(
          'Claims sent to the backend as request headers; client-sent copies of these headers are always removed.',
        ),
      closeOnExpiry: z
        .boolean()
        .default(false)
        .describe('Close an open tunnel with 1008 "token expired" when the token\'s `exp` (plus clockSkew) passes.'),
      hashKey: claimHashKey
        .optional()
        .describe("`claim:NAME`: this route's connections hash on that claim instead of the pool's hashKey."),
    })
    .superRefine((j, ctx) => {
      if ((j.keys === undefined) === (j.secret === undefined)) {
        ctx.addIssue({ code: 'custom', message: 'give exactly one of `keys` and `secret`', path: ['keys'] });
      }
      const hmac = j.algorithms.filter((a) => (HMAC_ALGORITHMS as readonly string[]).includes(a));
      if (j.secret !== undefined && hmac.length !== j.algorithms.length) {
        ctx.addIssue({ code: 'custom', message: '`secret` verifies HS256/HS384/HS512 only', path: ['algorithms'] });
      }
      if (j.keys !== undefined && hmac.length > 0) {
        ctx.addIssue({
          code: 'custom',
          message: `${hmac.join(', ')} need \`secret\`, not \`keys\``,
          path: ['algorithms'],
        });
      }
      if (j.keys?.startsWith('http://')) {
        ctx.addIssue({ code: 'custom', message: 'a JWKS URL must use https://', path: ['keys'] });
      }
      if (j.keysCa !== undefined && !j.keys?.startsWith('https://')) {
        ctx.addIssue({ code: 'custom', message: '`keysCa` goes with an https:// `keys` URL', path: ['keysCa'] });
      }
    });
  return z.strictObject({ jwt: jwt.describe('JSON Web Tokens: a request without a valid one gets 401.') });
}
