// The request target (RFC 9112 §3.2). Routes, hash keys and backends all expect origin-form ("/path?query").
// A server MUST also accept absolute-form ("GET http://chat.example.com/ws"), and then the target's authority
// replaces the Host header (§3.2.2), so it is rewritten to origin-form before anything looks at it.
// Asterisk-form ("OPTIONS *") is left alone (no route matches it); anything else is a malformed request line.

import type { UpgradeRequest } from './upgrade-head.js';

/** scheme://authority[path-and-query]; no fragment, no whitespace. */
const ABSOLUTE_FORM = /^(?:https?|wss?):\/\/([^/?#\s]+)([^#\s]*)$/i;

/**
 * Rewrites an absolute-form target in place: req.url to its path and query ("/" when it has none), and Host to its
 * authority, in the parsed headers and in rawHeaders alike, so nothing downstream sees the old one. Returns false for a target that is neither origin-, absolute- nor
 * asterisk-form, or whose authority carries userinfo (RFC 9110 §4.2.4 forbids it in http(s) URIs).
 */
export function toOriginForm(req: UpgradeRequest): boolean {
  const target = req.url ?? '';
  if (target.startsWith('/') || target === '*') return true;
  const m = ABSOLUTE_FORM.exec(target);
  const authority = m?.[1];
  if (m === null || authority === undefined || authority.includes('@')) return false;
  const rest = m[2] ?? '';
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  req.headers.host = authority;
  const raw = req.rawHeaders;
  let hadHost = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'host') {
      raw[i + 1] = authority;
      hadHost = true;
    }
  }
  if (!hadHost) raw.push('Host', authority);
  return true;
}
