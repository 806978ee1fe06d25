// What a backend receives of a client's request, on both paths (upgrade and plain HTTP): the client's headers minus
// hop-by-hop ones, plus the X-Forwarded-* and RFC 7239 Forwarded headers that tell the backend who the client is.
// The hop-by-hop rule also filters the backend's answer to a plain HTTP request.

import type { UpgradeRequest } from '../handshake/upgrade-head.js';
import { withoutCookie } from '../routing/sticky.js';
import type { RequestIdentity } from './request-id.js';

/**
 * RFC 9110 §7.6.1 hop-by-hop headers (and Proxy-Authorization, meant for a proxy): they describe one connection,
 * so they are never forwarded, in either direction, and neither is any header that `Connection` names.
 * Transfer-Encoding is hop-by-hop too, but it frames the body: whoever writes the body writes it (see below).
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
]);

/**
 * The forwarding headers, Host and the request's identity (request-id.ts): written by forwardedHeaders itself,
 * never copied as the client sent them.
 */
const REWRITTEN = [
  'host',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
  'x-request-id',
  'traceparent',
  // Only wsgate says what certificate the client showed (routes[].forwardClientCert): a client's copy is a forgery.
  'x-forwarded-client-cert',
];

/**
 * Not copied on a plain HTTP request. Content-Length stays: the body is sent with that length. A body of unknown
 * length is sent chunked by the client that writes it (undici), which is how Transfer-Encoding gets replaced;
 * Expect was answered by our own server (its 100 Continue), so the backend is not asked again.
 */
const NOT_COPIED: ReadonlySet<string> = new Set([...HOP_BY_HOP, ...REWRITTEN, 'transfer-encoding', 'expect']);

/** Not copied on an upgrade: it has no body (validateUpgrade), so no framing headers either. */
const NOT_COPIED_ON_UPGRADE: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP,
  ...REWRITTEN,
  'transfer-encoding',
  'content-length',
]);

export interface ForwardInfo {
  readonly clientAddress: string;
  readonly secure: boolean;
  /** The pool's sticky cookie: the proxy's own, so the client's cookies of that name are not passed on. */
  readonly stickyCookie?: string | undefined;
  /** Sent as X-Request-Id (and traceparent, when the client's was well formed). */
  readonly identity?: RequestIdentity | undefined;
  /** The X-Forwarded-Client-Cert value to send (access/client-cert.ts); undefined: none. */
  readonly clientCert?: string | undefined;
}

/**
 * The headers to send a backend, flat [name, value, ...] like rawHeaders: Host, the client's end-to-end headers in
 * order, then X-Forwarded-For and Forwarded appended to (the client's values, then this hop), and
 * X-Forwarded-Proto and X-Forwarded-Host as this hop saw them (a client's own are not trusted).
 */
export function forwardedHeaders(
  req: UpgradeRequest,
  info: ForwardInfo,
  notCopied: ReadonlySet<string> = NOT_COPIED,
): string[] {
  const raw = req.rawHeaders;
  const nominated = connectionNominated(req.headers.connection);
  // Host from the parsed headers, not the raw ones: an absolute-form target has replaced it (request-target.ts).
  const host = req.headers.host ?? '';
  const out = ['Host', host];
  let xff: string | undefined;
  let forwarded: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (nominated?.has(lower)) continue;
    if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
    else if (lower === 'forwarded') forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`;
    else if (lower === 'cookie' && info.stickyCookie !== undefined) {
      const kept = withoutCookie(value, info.stickyCookie);
      if (kept !== undefined) out.push(name, kept);
    } else if (!notCopied.has(lower)) out.push(name, value);
  }
  const proto = info.secure ? 'https' : 'http';
  const client = info.clientAddress;
  const forwardedFor = client.includes(':') ? `"[${client}]"` : client;
  const thisHop = `for=${forwardedFor};proto=${proto};host=${quoteIfNeeded(host)}`;
  out.push(
    'X-Forwarded-For',
    xff === undefined ? client : `${xff}, ${client}`,
    'X-Forwarded-Proto',
    proto,
    'X-Forwarded-Host',
    host,
    'Forwarded',
    forwarded === undefined ? thisHop : `${forwarded}, ${thisHop}`,
  );
  const identity = info.identity;
  if (identity !== undefined) {
    out.push('X-Request-Id', identity.id);
    if (identity.traceparent !== undefined) out.push('traceparent', identity.traceparent);
  }
  if (info.clientCert !== undefined) out.push('X-Forwarded-Client-Cert', info.clientCert);
  return out;
}

export function upstreamRequestHead(req: UpgradeRequest, info: ForwardInfo): string {
  const headers = forwardedHeaders(req, info, NOT_COPIED_ON_UPGRADE);
  let head = `GET ${req.url ?? '/'} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`;
}

/**
 * `raw` (flat name/value pairs, e.g. a backend response's rawHeaders) without hop-by-hop headers, the ones its
 * `connection` value names, and Transfer-Encoding (node frames the body it writes itself).
 */
export function endToEndHeaders(raw: readonly string[], connection: string | undefined): string[] {
  const nominated = connectionNominated(connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === 'transfer-encoding' || nominated?.has(lower)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

/**
 * Never dropped for being named in `Connection`: the body's framing and the Host. Dropping Content-Length from a
 * GET with a body would leave node writing the body unframed, and the backend reading it as a next request.
 */
const NEVER_NOMINATED: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

/**
 * Headers a sender names in `Connection` are hop-by-hop too (RFC 9110 §7.6.1), a lone one ("Connection: X-Hop")
 * as much as one in a list. Undefined when it names only options or headers dropped anyway ("Upgrade", "close").
 */
function connectionNominated(connection: string | undefined): Set<string> | undefined {
  if (connection === undefined) return undefined;
  let names: Set<string> | undefined;
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === 'close' || HOP_BY_HOP.has(name) || NEVER_NOMINATED.has(name)) continue;
    names ??= new Set();
    names.add(name);
  }
  return names;
}

function quoteIfNeeded(value: string): string {
  return /^[A-Za-z0-9.-]*$/.test(value) ? value : `"${value.replace(/["\\]/g, '')}"`;
}
