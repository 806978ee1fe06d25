// Extracts a request's consistent-hash key (client IP, header, cookie, query parameter or path) without regexes.

import { isToken } from '../handshake/token.js';

export type HashKeySpec =
  | { kind: 'ip' }
  | { kind: 'header'; name: string }
  | { kind: 'cookie'; name: string }
  | { kind: 'query'; name: string }
  | { kind: 'path' }
  /** A claim of the connection's verified JWT (routes[].auth.jwt): users keep their backend across addresses. */
  | { kind: 'claim'; name: string };

export interface KeySource {
  /**
   * Request headers with lower-case names. Pass `req.headersDistinct` to get first-occurrence semantics for repeated
   * headers; with `req.headers`, Node has already joined repeats (', ' or '; ' for cookie) and the joined value is used.
   */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /**
   * `req.rawHeaders` (name, value, name, value, ...), when at hand: a header key then uses the first occurrence of
   * a repeated header instead of Node's joined value, without building `headersDistinct` for every request.
   */
  rawHeaders?: readonly string[];
  /** Request target in origin form, e.g. '/chat?room=1'. */
  url: string;
  /** The client's address: the socket's peer, or who a PROXY header or trusted proxies named (listen/client-address.ts). */
  remoteAddress: string;
  /** The verified JWT's claims, on a route with auth.jwt. */
  claims?: Readonly<Record<string, unknown>> | undefined;
}

export interface HashKey {
  key: string;
  /** True when the configured source was missing or empty and the client IP was used instead. */
  fellBack: boolean;
}

const IPV4_MAPPED_PREFIX = '::ffff:';

/** Parses 'ip' | 'path' | 'header:NAME' | 'cookie:NAME' | 'query:NAME' | 'claim:NAME'. Header names are lower-cased. */
export function parseHashKeySpec(text: string): HashKeySpec | { error: string } {
  if (text === 'ip' || text === 'path') return { kind: text };
  const colon = text.indexOf(':');
  const kind = colon < 0 ? text : text.slice(0, colon);
  const name = colon < 0 ? '' : text.slice(colon + 1);
  switch (kind) {
    case 'header':
    case 'cookie':
      if (!isToken(name)) return { error: `${kind} name must be a non-empty HTTP token, got '${name}'` };
      return kind === 'header' ? { kind, name: name.toLowerCase() } : { kind, name };
    case 'query':
      if (name === '' || /[&=#?\s]/.test(name)) {
        return { error: `query parameter name must be non-empty without '&', '=', '#', '?' or spaces, got '${name}'` };
      }
      return { kind, name };
    case 'claim':
      if (name === '') return { error: 'claim name must be non-empty' };
      return { kind, name };
    default:
      return {
        error: `hash key must be 'ip', 'path', 'header:NAME', 'cookie:NAME', 'query:NAME' or 'claim:NAME', got '${text}'`,
      };
  }
}

/**
 * The request's hash key for `spec`; a missing or empty value falls back to the client IP with `fellBack: true`.
 * A repeated header, cookie or query parameter uses its first occurrence, even if that one is empty.
 * Cookie and query names compare exactly (case-sensitive, not percent-decoded).
 */
export function hashKeyOf(source: KeySource, spec: HashKeySpec): HashKey {
  let key: string | undefined;
  switch (spec.kind) {
    case 'ip':
      return { key: normaliseIp(source.remoteAddress), fellBack: false };
    case 'header':
      key =
        source.rawHeaders !== undefined
          ? firstRawValue(source.rawHeaders, spec.name)
          : firstValue(source.headers[spec.name]);
      break;
    case 'cookie':
      key = cookieValue(source.headers.cookie, spec.name);
      break;
    case 'query':
      key = queryValue(source.url, spec.name);
      break;
    case 'path':
      key = pathOf(source.url);
      break;
    case 'claim':
      key = claimValue(source.claims?.[spec.name]);
      break;
  }
  if (key === undefined || key === '') return { key: normaliseIp(source.remoteAddress), fellBack: true };
  return { key, fellBack: false };
}

/** A string or number claim keys as its text; anything else (absent, an object) is no key. */
function claimValue(claim: unknown): string | undefined {
  if (typeof claim === 'string') return claim;
  return typeof claim === 'number' ? String(claim) : undefined;
}

/** '::ffff:1.2.3.4' → '1.2.3.4', so dual-stack listeners key a client the same as IPv4 listeners do. */
export function normaliseIp(address: string): string {
  if (address.length > IPV4_MAPPED_PREFIX.length && address.includes('.')) {
    const prefix = address.slice(0, IPV4_MAPPED_PREFIX.length);
    if (prefix.toLowerCase() === IPV4_MAPPED_PREFIX) return address.slice(IPV4_MAPPED_PREFIX.length);
  }
  return address;
}

/** The value of the first `name` header (lower-case) in a raw header list. */
function firstRawValue(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i] as string;
    if (n.length === name.length && n.toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}

function firstValue(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : value?.[0];
}

/** First cookie named `name` across the Cookie header line(s); undefined if absent. */
function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  if (typeof header === 'string') return cookieInLine(header, name);
  if (header === undefined) return undefined;
  for (const line of header) {
    const value = cookieInLine(line, name);
    if (value !== undefined) return value;
  }
  return undefined;
}

/** One pass over 'a=1; b=2': indexOf jumps between ';' separators, so hostile input stays linear. */
function cookieInLine(line: string, name: string): string | undefined {
  let pos = 0;
  while (pos < line.length) {
    let end = line.indexOf(';', pos);
    if (end < 0) end = line.length;
    const start = skipSpaces(line, pos, end);
    if (line.startsWith(name, start)) {
      const eq = skipSpaces(line, start + name.length, end);
      if (eq < end && line.charCodeAt(eq) === 0x3d /* = */) return cookieValueAt(line, eq + 1, end);
    }
    pos = end + 1;
  }
  return undefined;
}

/** Trims spaces and one pair of surrounding double quotes (RFC 6265 §4.1.1 allows DQUOTE-wrapped values). */
function cookieValueAt(line: string, from: number, to: number): string {
  let start = skipSpaces(line, from, to);
  let end = to;
  while (end > start && isSpace(line.charCodeAt(end - 1))) end--;
  if (end - start >= 2 && line.charCodeAt(start) === 0x22 && line.charCodeAt(end - 1) === 0x22) {
    start++;
    end--;
  }
  return line.slice(start, end);
}

/** First value of query parameter `name`, percent-decoded with '+' as space (as URLSearchParams reads it). */
function queryValue(url: string, name: string): string | undefined {
  const queryEnd = fragmentStart(url);
  const queryStart = url.indexOf('?');
  if (queryStart < 0 || queryStart > queryEnd) return undefined;
  let pos = queryStart + 1;
  while (pos < queryEnd) {
    let end = url.indexOf('&', pos);
    if (end < 0 || end > queryEnd) end = queryEnd;
    if (url.startsWith(name, pos)) {
      const after = pos + name.length;
      if (after === end) return '';
      if (url.charCodeAt(after) === 0x3d /* = */) return decodeQueryValue(url.slice(after + 1, end));
    }
    pos = end + 1;
  }
  return undefined;
}

/** An invalid percent-encoding leaves the value raw: any stable key will do, and rejecting here helps nobody. */
function decodeQueryValue(raw: string): string {
  if (!raw.includes('%') && !raw.includes('+')) return raw;
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '));
  } catch (error) {
    if (error instanceof URIError) return raw;
    throw error;
  }
}

function pathOf(url: string): string {
  const queryStart = url.indexOf('?');
  return url.slice(0, Math.min(queryStart < 0 ? url.length : queryStart, fragmentStart(url)));
}

/** A request target has no fragment (RFC 9112 §3.2), but a stray '#' must not leak into the key. */
function fragmentStart(url: string): number {
  const hash = url.indexOf('#');
  return hash < 0 ? url.length : hash;
}

function skipSpaces(text: string, from: number, to: number): number {
  let i = from;
  while (i < to && isSpace(text.charCodeAt(i))) i++;
  return i;
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09;
}
