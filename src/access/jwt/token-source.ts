// Where a request carries its bearer token (routes[].auth.jwt.from), and how the token is taken out of the request
// before it goes to the backend. Every configured place is looked at, so a token given twice (two places, or
// twice in one) is noticed and refused rather than resolved by a precedence rule a client could play with.
//
// The `protocol` place follows the convention of browser clients, which cannot set headers: the token is the
// Sec-WebSocket-Protocol entry right after an `access_token` entry (`new WebSocket(url, ['access_token', jwt])`).
// Both entries are removed before the backend sees the list; a JWT is base64url and dots, so it is a valid entry.

import type { TokenSource } from '../../config/types.js';

/** The Sec-WebSocket-Protocol entry that announces the token as the next entry. */
export const PROTOCOL_MARKER = 'access_token';

/** A longer token is refused before any parsing: real ones are under 2 KiB, and each byte costs verification time. */
export const MAX_TOKEN_CHARS = 8192;

export interface TokenRequest {
  url?: string | undefined;
  rawHeaders: string[];
}

export type FoundToken =
  | { readonly kind: 'found'; readonly token: string; readonly source: TokenSource }
  | { readonly kind: 'missing' }
  | { readonly kind: 'duplicate' };

const MISSING: FoundToken = Object.freeze({ kind: 'missing' });
const DUPLICATE: FoundToken = Object.freeze({ kind: 'duplicate' });

export function findToken(req: TokenRequest, sources: readonly TokenSource[]): FoundToken {
  let found: FoundToken = MISSING;
  for (const source of sources) {
    const values = valuesIn(req, source);
    if (values.length === 0) continue;
    if (values.length > 1 || found.kind === 'found') return DUPLICATE;
    found = { kind: 'found', token: values[0] as string, source };
  }
  return found;
}

function valuesIn(req: TokenRequest, source: TokenSource): string[] {
  switch (source.kind) {
    case 'header':
      return headerValues(req.rawHeaders, source.name).map((v) => (source.name === 'authorization' ? bearerOf(v) : v));
    case 'query':
      return queryValues(req.url ?? '/', source.name);
    case 'cookie':
      return headerValues(req.rawHeaders, 'cookie').flatMap((line) => cookieValues(line, source.name));
    case 'protocol':
      return protocolTokens(protocolEntries(req.rawHeaders));
  }
}

/** Every value of header `name` (lower-case), in order. */
function headerValues(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i] as string;
    if (n.length === name.length && n.toLowerCase() === name) out.push(raw[i + 1] as string);
  }
  return out;
}

/** `Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive); another scheme's value is not a token here. */
function bearerOf(value: string): string {
  const trimmed = value.trim();
  return trimmed.length > 7 && trimmed.slice(0, 7).toLowerCase() === 'bearer ' ? trimmed.slice(7).trim() : '';
}

/** The values of query parameter `name`, percent-decoded; an undecodable one stays raw (and fails verification). */
function queryValues(url: string, name: string): string[] {
  const q = url.indexOf('?');
  if (q < 0) return [];
  const out: string[] = [];
  for (const pair of url.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    if ((eq < 0 ? pair : pair.slice(0, eq)) !== name) continue;
    out.push(decode(eq < 0 ? '' : pair.slice(eq + 1)));
  }
  return out.filter((v) => v !== '');
}

function decode(raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '));
  } catch (err) {
    if (err instanceof URIError) return raw;
    throw err;
  }
}

function cookieValues(line: string, name: string): string[] {
  const out: string[] = [];
  for (const part of line.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    const value = part
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1');
    if (value !== '') out.push(value);
  }
  return out;
}

/** The entries of every Sec-WebSocket-Protocol line, in order. */
function protocolEntries(raw: readonly string[]): string[] {
  return headerValues(raw, 'sec-websocket-protocol').flatMap((line) =>
    line
      .split(',')
      .map((e) => e.trim())
      .filter((e) => e !== ''),
  );
}

function protocolTokens(entries: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    if (entries[i] !== PROTOCOL_MARKER) continue;
    out.push(entries[i + 1] ?? '');
    i++;
  }
  return out.filter((v) => v !== '');
}

/** `url` without query parameter `name` (and without the `?` when nothing is left). */
export function withoutQueryParameter(url: string, name: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const kept = url
    .slice(q + 1)
    .split('&')
    .filter((pair) => {
      const eq = pair.indexOf('=');
      return (eq < 0 ? pair : pair.slice(0, eq)) !== name;
    });
  return kept.length === 0 ? url.slice(0, q) : `${url.slice(0, q)}?${kept.join('&')}`;
}

/**
 * The Sec-WebSocket-Protocol entries left once the marker and the token are taken out, joined as one header value;
 * undefined when none is left.
 */
export function protocolsWithoutToken(raw: readonly string[]): string | undefined {
  const entries = protocolEntries(raw);
  const kept: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    if (entries[i] === PROTOCOL_MARKER) i++;
    else kept.push(entries[i] as string);
  }
  return kept.length === 0 ? undefined : kept.join(', ');
}
