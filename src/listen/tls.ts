// TLS settings for a listener: the configured certificate (or a generated self-signed one), SNI certificates,
// minimum version, and a cipher list without the weak suites.

import { X509Certificate } from 'node:crypto';
import type { SecureContext, SecureContextOptions } from 'node:tls';
import { createSecureContext } from 'node:tls';
import { generate } from 'selfsigned';
import type { TlsConfig } from '../config/types.js';

/** Forward-secret AEAD suites only (TLS 1.2); TLS 1.3 suites are always on and all strong. */
export const DEFAULT_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export interface CertificatePair {
  readonly cert: string;
  readonly key: string;
  readonly selfSigned: boolean;
}

/** A self-signed certificate for localhost / 127.0.0.1 / ::1, valid 30 days: for the demo and tests. */
export async function generateSelfSigned(): Promise<CertificatePair> {
  const notAfterDate = new Date(Date.now() + 30 * 86_400_000);
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private, selfSigned: true };
}

export interface TlsServerOptions {
  readonly options: SecureContextOptions & {
    SNICallback?: (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
    ALPNProtocols: string[];
    requestCert?: boolean;
    rejectUnauthorized?: boolean;
  };
  readonly selfSigned: boolean;
}

/**
 * Builds node:tls server options for a listener; `fallback` supplies a certificate when none is configured.
 * With `unknownSni: refuse` there is no default certificate at all: a name that neither an SNI entry nor the main
 * certificate covers fails the handshake, and so does a client that names no host (an IP scanner, say), which node
 * would otherwise serve the main certificate without asking the SNI callback.
 */
export function tlsServerOptions(tls: TlsConfig, fallback: CertificatePair | undefined): TlsServerOptions {
  const pair = tls.files ?? fallback;
  if (!pair) throw new Error('TLS listener without certificate and no generated fallback');
  const common: SecureContextOptions = {
    minVersion: tls.minVersion,
    ciphers: tls.ciphers ?? DEFAULT_CIPHERS,
    honorCipherOrder: true,
    // Client certificates are checked against clientCa by every context, the SNI ones included.
    ...(tls.clientCa === undefined ? {} : { ca: tls.clientCa }),
  };
  const sniContexts = tls.sni.map((s) => ({
    serverName: s.serverName,
    context: createSecureContext({ ...common, cert: s.cert, key: s.key }),
  }));
  const refuse = tls.unknownSni === 'refuse';
  if (refuse) {
    const main = createSecureContext({ ...common, cert: pair.cert, key: pair.key });
    for (const serverName of certificateNames(pair.cert)) sniContexts.push({ serverName, context: main });
  }
  const SNICallback =
    sniContexts.length > 0
      ? (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => {
          const match = sniContexts.find((s) => serverNameMatches(s.serverName, name));
          if (match) cb(null, match.context);
          else if (refuse) cb(new Error(`unknown SNI name ${name}`));
          else cb(null, undefined);
        }
      : undefined;
  return {
    options: {
      ...common,
      ...(refuse ? {} : { cert: pair.cert, key: pair.key }),
      ALPNProtocols: ['http/1.1'],
      ...(SNICallback ? { SNICallback } : {}),
      // Asked for and verified, but a missing or bad one does not fail the handshake: access/client-cert.ts
      // answers 403 at the HTTP stage, where the client can be told why.
      ...(tls.clientCert === 'none' ? {} : { requestCert: true, rejectUnauthorized: false }),
    },
    selfSigned: tls.files === undefined,
  };
}

/** The DNS names a certificate is for (subjectAltName; the subject CN only when it has none), lower-cased. */
export function certificateNames(pem: string): string[] {
  const cert = new X509Certificate(pem);
  const san = cert.subjectAltName;
  if (san) {
    return san
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry.startsWith('DNS:'))
      .map((entry) => entry.slice(4).toLowerCase());
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

function serverNameMatches(pattern: string, name: string): boolean {
  const lower = name.toLowerCase();
  if (pattern.startsWith('*.')) return lower.endsWith(pattern.slice(1)) && lower.length > pattern.length - 1;
  return pattern === lower;
}
