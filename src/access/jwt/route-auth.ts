// One route's JWT check (routes[].auth.jwt), built once per config generation (proxy/runtime.ts): its keys, its
// claim rules and its metric children. check() finds the token, verifies it with jose (or finds it verified
// recently, verified-tokens.ts), and on success rewrites
// the request for the backend: the token out of the query string and Sec-WebSocket-Protocol, the client's copies
// of the forwarded-claim headers out, the claims in. A refusal says only what RFC 6750 §3 lets it say; the log
// line gets the detail (never the token).

import { errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import type { JwtConfig } from '../../config/types.js';
import { type CatalogueEntry, Errors } from '../../errors.js';
import type { Logger } from '../../observe/log.js';
import type { Metrics } from '../../observe/metrics.js';
import { remoteJwksFor } from './jwks-remote.js';
import { keySetOf } from './key-set.js';
import {
  findToken,
  MAX_TOKEN_CHARS,
  PROTOCOL_MARKER,
  protocolsWithoutToken,
  type TokenRequest,
  withoutQueryParameter,
} from './token-source.js';
import { VerifiedTokens } from './verified-tokens.js';

/** Values of wsgate_auth_results_total's `result` label. */
export const AUTH_RESULTS = [
  'ok',
  'missing',
  'duplicate',
  'invalid',
  'expired',
  'not_yet_valid',
  'wrong_issuer_or_audience',
  'unknown_key',
] as const;
export type AuthResult = (typeof AUTH_RESULTS)[number];

/** The request as check() reads and rewrites it: an IncomingMessage, or the upgrade fast path's parsed head. */
export interface AuthRequest extends TokenRequest {
  headers: Record<string, string | string[] | undefined>;
}

export type AuthVerdict =
  | {
      readonly ok: true;
      readonly claims: JWTPayload;
      /** The 101 must name this protocol if the backend names none: the client offered only the token's entries. */
      readonly protocolReply: string | undefined;
      /** Milliseconds from now until the tunnel must close (closeOnExpiry and an `exp`); undefined: never. */
      readonly expiresInMs: number | undefined;
    }
  | {
      readonly ok: false;
      readonly entry: CatalogueEntry;
      readonly headers: Readonly<Record<string, string>>;
      readonly detail: string;
    };

const CHALLENGE_MISSING = Object.freeze({ 'WWW-Authenticate': 'Bearer' });
const CHALLENGE_REQUEST = Object.freeze({ 'WWW-Authenticate': 'Bearer error="invalid_request"' });
const CHALLENGE_TOKEN = Object.freeze({ 'WWW-Authenticate': 'Bearer error="invalid_token"' });

type Counter = { inc(): void };

export class RouteAuth {
  readonly config: JwtConfig;
  private readonly key: JWTVerifyGetKey | Uint8Array;
  private readonly counts: Readonly<Record<AuthResult, Counter>>;
  /** Lower-cased names of the headers forwardClaims sets: the client's own copies never pass. */
  private readonly claimHeaders: ReadonlySet<string>;
  private readonly verifyOptions: Parameters<typeof jwtVerify>[2];
  /** Tokens verified recently, so a reconnect with the same token skips the signature check. */
  private readonly verified = new VerifiedTokens();

  constructor(route: string, config: JwtConfig, metrics: Metrics, log: Logger) {
    this.config = config;
    const keys = config.keys;
    if (keys.kind === 'secret') this.key = new TextEncoder().encode(keys.secret);
    else if (keys.kind === 'file') this.key = keySetOf(keys.jwks.keys);
    else this.key = remoteJwksFor(keys.url, keys.ca, log).getKey;
    const counts = {} as Record<AuthResult, Counter>;
    for (const result of AUTH_RESULTS) {
      counts[result] = metrics.authResults.labels({ route, result });
      metrics.authResults.inc({ route, result }, 0);
    }
    this.counts = counts;
    this.claimHeaders = new Set(config.forwardClaims.map((f) => f.header.toLowerCase()));
    this.verifyOptions = {
      algorithms: [...config.algorithms],
      clockTolerance: config.clockSkewMs / 1000,
      ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
      ...(config.audience === undefined ? {} : { audience: [...config.audience] }),
    };
  }

  /** Verifies the request's token; on success the request is rewritten for the backend (see the file's comment). */
  async check(req: AuthRequest): Promise<AuthVerdict> {
    const found = findToken(req, this.config.from);
    if (found.kind === 'missing') return this.refused('missing', Errors.AUTH_REQUIRED, CHALLENGE_MISSING, 'no token');
    if (found.kind === 'duplicate') {
      return this.refused('duplicate', Errors.AUTH_AMBIGUOUS, CHALLENGE_REQUEST, 'token given more than once');
    }
    if (found.token.length > MAX_TOKEN_CHARS) {
      return this.refused('invalid', Errors.AUTH_INVALID, CHALLENGE_TOKEN, `token longer than ${MAX_TOKEN_CHARS}`);
    }
    let claims = this.verified.get(found.token, Date.now());
    if (claims === undefined) {
      try {
        // Both jose overloads take the key or a getter; the union is narrowed by the call's own typing only.
        claims = (await jwtVerify(found.token, this.key as Uint8Array, this.verifyOptions)).payload;
      } catch (err) {
        const result = resultOf(err);
        return this.refused(result, Errors.AUTH_INVALID, CHALLENGE_TOKEN, `${result}: ${(err as Error).message}`);
      }
      this.verified.remember(found.token, claims, Date.now(), this.config.clockSkewMs);
    }
    this.counts.ok.inc();
    const protocolReply = this.rewrite(req, found.source.kind, claims);
    const exp = claims.exp;
    const expiresInMs =
      this.config.closeOnExpiry && typeof exp === 'number'
        ? exp * 1000 + this.config.clockSkewMs - Date.now()
        : undefined;
    return { ok: true, claims, protocolReply, expiresInMs };
  }

  private refused(
    result: AuthResult,
    entry: CatalogueEntry,
    headers: Readonly<Record<string, string>>,
    detail: string,
  ): AuthVerdict {
    this.counts[result].inc();
    return { ok: false, entry, headers, detail };
  }

  /** Takes the token out of the request and sets the forwarded claims; returns the 101's protocol, if it needs one. */
  private rewrite(req: AuthRequest, from: string, claims: JWTPayload): string | undefined {
    let protocolReply: string | undefined;
    const raw = req.rawHeaders;
    const out: string[] = [];
    let protocols: string | undefined;
    if (from === 'query') {
      const name = (this.config.from.find((s) => s.kind === 'query') as { name: string }).name;
      req.url = withoutQueryParameter(req.url ?? '/', name);
    } else if (from === 'protocol') {
      protocols = protocolsWithoutToken(raw);
      if (protocols === undefined) protocolReply = PROTOCOL_MARKER;
    }
    let protocolWritten = false;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] as string;
      const lower = name.toLowerCase();
      if (this.claimHeaders.has(lower)) continue;
      if (from === 'protocol' && lower === 'sec-websocket-protocol') {
        // The remaining entries go on the first line: later lines are folded into it.
        if (!protocolWritten && protocols !== undefined) out.push(name, protocols);
        protocolWritten = true;
        continue;
      }
      out.push(name, raw[i + 1] as string);
    }
    for (const header of this.claimHeaders) delete req.headers[header];
    if (from === 'protocol') {
      if (protocols === undefined) delete req.headers['sec-websocket-protocol'];
      else req.headers['sec-websocket-protocol'] = protocols;
    }
    for (const { claim, header } of this.config.forwardClaims) {
      const value = headerValueOf(claims[claim]);
      if (value === undefined) continue;
      out.push(header, value);
      req.headers[header.toLowerCase()] = value;
    }
    req.rawHeaders = out;
    return protocolReply;
  }
}

/** A claim as a header value: strings, numbers and booleans; other bytes than visible ASCII are percent-encoded. */
function headerValueOf(claim: unknown): string | undefined {
  let text: string;
  if (typeof claim === 'string') text = claim;
  else if (typeof claim === 'number' || typeof claim === 'boolean') text = String(claim);
  else return undefined;
  // Header injection: a claim is the token issuer's text, but CR, LF and the like must never reach a head.
  return /^[\x20-\x7e]*$/.test(text) ? text : encodeURIComponent(text);
}

function resultOf(err: unknown): AuthResult {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'not_yet_valid';
    if (err.claim === 'iss' || err.claim === 'aud') return 'wrong_issuer_or_audience';
    return 'invalid';
  }
  if (err instanceof errors.JWKSNoMatchingKey) return 'unknown_key';
  return 'invalid';
}
