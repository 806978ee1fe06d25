// Client certificates (listeners[].tls.clientCert). The TLS handshake asks for a certificate and checks it against
// clientCa, but does not fail on a missing or bad one (rejectUnauthorized: false, see listen/tls.ts): the verdict is
// given here, at the HTTP stage, so that the client gets a real 403 with a catalogue code instead of a TLS alert
// that browsers and libraries report as a bare network error. Also the X-Forwarded-Client-Cert value (Envoy's
// format) for routes[].forwardClientCert.

import { createHash, type X509Certificate } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { ClientCertMode } from '../config/types.js';

/** Why a certificate was refused: the `reason` label of wsgate_access_denied_total. */
export type CertRefusal = 'client_cert_missing' | 'client_cert_invalid';

export type CertVerdict =
  | { readonly ok: true; readonly cert: X509Certificate | undefined }
  | { readonly ok: false; readonly reason: CertRefusal; readonly detail: string | undefined };

const NO_CERT: CertVerdict = Object.freeze({ ok: true, cert: undefined });
const MISSING: CertVerdict = Object.freeze({ ok: false, reason: 'client_cert_missing', detail: undefined });

/**
 * What the connection's certificate allows: `require` needs one that chains to clientCa (and is in its validity
 * period); `optional` lets a client without one pass, but not one whose certificate does not verify.
 */
export function clientCertVerdict(mode: ClientCertMode, socket: Duplex): CertVerdict {
  if (mode === 'none' || !(socket instanceof TLSSocket)) return NO_CERT;
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return mode === 'require' ? MISSING : NO_CERT;
  if (!socket.authorized) {
    return { ok: false, reason: 'client_cert_invalid', detail: String(socket.authorizationError ?? 'not verified') };
  }
  return { ok: true, cert };
}

/**
 * X-Forwarded-Client-Cert for a verified certificate, as Envoy writes it: `Hash` (SHA-256 of the DER, hex),
 * `Subject` (RFC 2253 as OpenSSL prints it, quoted: its own escapes leave no bare `"` inside), then one `URI` and one
 * `DNS` element per subjectAltName entry of those kinds.
 */
export function forwardedClientCert(cert: X509Certificate): string {
  const hash = createHash('sha256').update(cert.raw).digest('hex');
  let value = `Hash=${hash};Subject="${rfc2253(cert.subject)}"`;
  for (const entry of subjectAltNames(cert.subjectAltName)) {
    if (entry.startsWith('URI:')) value += `;URI=${xfccValue(entry.slice(4))}`;
    else if (entry.startsWith('DNS:')) value += `;DNS=${xfccValue(entry.slice(4))}`;
  }
  return value;
}

/**
 * node prints the subject one RDN a line (the parts of a multi-valued one joined by " + "), in certificate order,
 * with the values already escaped as RFC 2253 says but non-ASCII characters as they are; OpenSSL's RFC 2253 form
 * (what Envoy sends) lists every part the other way round and writes each byte of a non-ASCII character as `\XX`,
 * which also keeps the header value ASCII.
 */
function rfc2253(subject: string): string {
  return subject
    .split('\n')
    .filter((line) => line !== '')
    .map((rdn) => rdn.split(' + ').reverse().join('+'))
    .reverse()
    .join(',')
    .replace(/[\u{80}-\u{10ffff}]/gu, hexBytes);
}

function hexBytes(char: string): string {
  let out = '';
  for (const byte of Buffer.from(char, 'utf8')) out += `\\${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/**
 * Entries of node's subjectAltName text (`DNS:a, URI:b`). A value with a character that could be taken for a
 * separator comes as a JSON string literal (`URI:"a\u002cb"`): its escapes are undone, except those of control and
 * non-ASCII characters, which stay escaped text (a line break must never reach the backend's request head, and a
 * header value stays ASCII).
 */
function subjectAltNames(text: string | undefined): string[] {
  if (text === undefined) return [];
  const out: string[] = [];
  const pattern = /([A-Za-z ]+):(?:"((?:[^"\\]|\\.)*)"|([^,]*))(?:,\s*|$)/g;
  for (const m of text.matchAll(pattern)) {
    const value = m[2] === undefined ? (m[3] ?? '') : m[2].replace(JSON_ESCAPE, unescapePrintable);
    out.push(`${(m[1] as string).trim()}:${value}`);
  }
  return out;
}

const JSON_ESCAPE = /\\(?:u([0-9a-fA-F]{4})|(.))/g;

function unescapePrintable(escaped: string, hex: string | undefined, char: string | undefined): string {
  if (hex === undefined) return char === '"' || char === '\\' || char === '/' ? char : escaped;
  const code = Number.parseInt(hex, 16);
  return code < 0x20 || code > 0x7e ? escaped : String.fromCharCode(code);
}

/** An element value: quoted when it holds a character that separates XFCC elements or pairs. */
function xfccValue(value: string): string {
  return /[,;="]/.test(value) ? `"${quoteXfcc(value)}"` : value;
}

function quoteXfcc(value: string): string {
  return value.replace(/["\\]/g, '\\$&');
}
