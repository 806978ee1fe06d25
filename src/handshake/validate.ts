// RFC 6455 §4.2.1 checks on a client's upgrade request, plus the request hygiene a proxy at the edge needs
// (no bodies, no duplicated identity headers, no foreign upgrade tokens). Returns the catalogue entry to answer
// with, or the validated key.

import { type CatalogueEntry, Errors } from '../errors.js';
import type { UpgradeRequest } from './upgrade-head.js';

/** More header lines than this is an attack or a bug, never a browser. */
export const MAX_HEADER_LINES = 100;

/** 16 random bytes in base64 are exactly 22 significant characters and "==" (§4.1, ws uses the same test). */
const KEY_PATTERN = /^[+/0-9A-Za-z]{22}==$/;

/** Headers that must appear at most once: a second copy is how smuggling and confusion attacks start. */
const SINGLE_HEADERS = new Set([
  'host',
  'upgrade',
  'sec-websocket-key',
  'sec-websocket-version',
  'content-length',
  'transfer-encoding',
  'origin',
]);

export type UpgradeCheck = { ok: true; key: string } | { ok: false; error: CatalogueEntry };

export function validateUpgrade(req: UpgradeRequest): UpgradeCheck {
  if (req.method !== 'GET') return fail(Errors.BAD_METHOD);
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) return fail(Errors.BAD_HTTP_VERSION);

  const raw = req.rawHeaders;
  if (raw.length / 2 > MAX_HEADER_LINES) return fail(Errors.HEADERS_TOO_LARGE);
  const seenNames: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (!SINGLE_HEADERS.has(name)) continue;
    if (seenNames.includes(name)) return fail(Errors.DUPLICATE_HEADER);
    seenNames.push(name);
  }

  const h = req.headers;
  if (!h.host) return fail(Errors.MISSING_HOST);
  if (!isValidHost(h.host)) return fail(Errors.BAD_HOST);
  if (h['transfer-encoding'] !== undefined) return fail(Errors.BODY_ON_UPGRADE);
  if (h['content-length'] !== undefined && h['content-length'] !== '0') return fail(Errors.BODY_ON_UPGRADE);
  if (!isOnlyWebsocketUpgrade(h.upgrade)) return fail(Errors.BAD_UPGRADE);
  if (!hasToken(h.connection, 'upgrade')) return fail(Errors.BAD_CONNECTION);
  const key = h['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY_PATTERN.test(key)) return fail(Errors.BAD_KEY);
  if (h['sec-websocket-version'] !== '13') return fail(Errors.BAD_VERSION);
  return { ok: true, key };
}

/** RFC 3986 reg-name and IPv4 characters (unreserved, pct-encoded, sub-delims). */
const REG_NAME = /^[A-Za-z0-9\-._~!$&'()*+,;=%]+$/;
/** An IPv6 literal; IPvFuture ("[v1.x]") is not something a WebSocket client sends. */
const IP_LITERAL = /^\[[0-9A-Fa-f:.]+\]$/;
const PORT = /^[0-9]*$/;

/**
 * Host is `uri-host [":" port]` (RFC 9112 §3.2: a server answers 400 to anything else). Routing reads the host
 * before the first ':' or the ']', so without this check 'chat.example.com:80:evil' would be routed, and sent on,
 * as chat.example.com.
 */
export function isValidHost(value: string): boolean {
  let nameEnd: number;
  if (value.charCodeAt(0) === 0x5b /* [ */) {
    nameEnd = value.indexOf(']') + 1;
    if (nameEnd === 0 || !IP_LITERAL.test(value.slice(0, nameEnd))) return false;
  } else {
    nameEnd = value.indexOf(':');
    if (nameEnd < 0) nameEnd = value.length;
    if (!REG_NAME.test(value.slice(0, nameEnd))) return false;
  }
  if (nameEnd === value.length) return true;
  return value.charCodeAt(nameEnd) === 0x3a /* : */ && PORT.test(value.slice(nameEnd + 1));
}

function fail(error: CatalogueEntry): UpgradeCheck {
  return { ok: false, error };
}

/** `Upgrade` must name websocket and nothing else: h2c or a token list is never tunnelled. */
function isOnlyWebsocketUpgrade(value: string | undefined): boolean {
  return value !== undefined && value.trim().toLowerCase() === 'websocket';
}

/** Case-insensitive membership in a comma-separated token list, without allocating an array. */
export function hasToken(list: string | undefined, token: string): boolean {
  if (list === undefined) return false;
  const lower = list.toLowerCase();
  let from = 0;
  while (from <= lower.length) {
    const at = lower.indexOf(token, from);
    if (at < 0) return false;
    const before = at === 0 ? ',' : lower[at - 1];
    const after = at + token.length === lower.length ? ',' : lower[at + token.length];
    if ((before === ',' || before === ' ' || before === '\t') && (after === ',' || after === ' ' || after === '\t')) {
      return true;
    }
    from = at + 1;
  }
  return false;
}

/** Origin allowlist (cross-site WebSocket hijacking defence): undefined list allows all. */
export function originAllowed(origin: string | undefined, allowed: readonly string[] | undefined): boolean {
  if (allowed === undefined) return true;
  if (origin === undefined) return false;
  return allowed.includes(origin.toLowerCase());
}
