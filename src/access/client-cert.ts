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
 * `Subject` (RFC 2253, quoted), then one `URI` and one `DNS` element per subjectAltName entry of those kinds.
 */
export function forwardedClientCert(cert: X509Certificate): string {
  const hash = createHash('sha256').update(cert.raw).digest('hex');
  let value = `Hash=${hash};Subject="${quoteXfcc(rfc2253(cert.subject))}"`;
  for (const entry of subjectAltNames(cert.subjectAltName)) {
    if (entry.startsWith('URI:')) value += `;URI=${xfccValue(entry.slice(4))}`;
    else if (entry.startsWith('DNS:')) value += `;DNS=${xfccValue(entry.slice(4))}`;
  }
  return value;
}

/** node writes the subject one attribute a line, in certificate order; RFC 2253 lists them the other way round. */
function rfc2253(subject: string): string {
  return subject
    .split('\n')
    .filter((line) => line !== '')
    .reverse()
    .map((line) => {
      const eq = line.indexOf('=');
      return `${line.slice(0, eq + 1)}${line.slice(eq + 1).replace(/[,+"\\<>;]/g, '\\$&')}`;
    })
    .join(',');
}

/** Entries of node's subjectAltName text (`DNS:a, URI:b`; a value with a comma comes quoted: `DNS:"a,b"`). */
function subjectAltNames(text: string | undefined): string[] {
  if (text === undefined) return [];
  const out: string[] = [];
  const pattern = /([A-Za-z ]+):(?:"((?:[^"\\]|\\.)*)"|([^,]*))(?:,\s*|$)/g;
  for (const m of text.matchAll(pattern)) {
    const value = m[2] === undefined ? (m[3] ?? '') : m[2].replace(/\\(.)/g, '$1');
    out.push(`${(m[1] as string).trim()}:${value}`);
  }
  return out;
}

/** An element value: quoted when it holds a character that separates XFCC elements or pairs. */
function xfccValue(value: string): string {
  return /[,;="]/.test(value) ? `"${quoteXfcc(value)}"` : value;
}

function quoteXfcc(value: string): string {
  return value.replace(/["\\]/g, '\\$&');
}
