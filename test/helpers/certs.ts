// Throwaway RSA certificates made with the openssl CLI at test time (one per common name), for TLS tests that
// need several distinguishable certificates: default vs SNI.

import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
