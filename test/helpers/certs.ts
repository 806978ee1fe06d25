// Throwaway RSA certificates made with the openssl CLI at test time (one per common name), for TLS tests that
// need several distinguishable certificates: default vs SNI; and a TLS client that says which one it was served.

import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
  readonly commonName: string;
}

const dir = mkdtempSync(join(tmpdir(), 'wsgate-certs-'));

/** A self-signed RSA-2048 certificate for `commonName` (also its only DNS SAN), valid one day. */
export function makeCert(commonName: string): CertFiles {
  const cert = join(dir, `${commonName}.crt`);
  const key = join(dir, `${commonName}.key`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${commonName}`,
      '-addext',
      `subjectAltName=DNS:${commonName}`,
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key, commonName };
}

/** A TLS client handshake's outcome: the socket, or the error code. */
export type TlsOutcome = { ok: true; socket: TLSSocket } | { ok: false; error: string };

/** Connects with TLS to 127.0.0.1:`port` (certificates not verified) and reports how the handshake ended. */
export function tryTls(port: number, options: ConnectionOptions): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () =>
      resolve({ ok: true, socket }),
    );
    socket.once('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, error: err.code ?? err.message }));
  });
}

/** The CN of the certificate the server presented. */
export function commonNameOf(socket: TLSSocket): string | undefined {
  const subject = socket.getPeerCertificate().subject as unknown as Record<string, string> | undefined;
  return subject?.CN;
}
