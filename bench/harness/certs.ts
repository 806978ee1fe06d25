// Certificates generated at run time with the openssl CLI: RSA-2048 and ECDSA P-256, self-signed for
// localhost/127.0.0.1. Every target serves the same two, so TLS handshake figures compare like with like.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
  /** cert + key in one file (HAProxy's `crt`). */
  readonly pem: string;
}

export interface BenchCerts {
  readonly rsa: CertFiles;
  readonly ecdsa: CertFiles;
}

function generate(dir: string, name: string, keyArgs: readonly string[]): CertFiles {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const pem = join(dir, `${name}.pem`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ...keyArgs,
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  writeFileSync(pem, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'), { mode: 0o600 });
  return { cert, key, pem };
}

export function generateCerts(dir: string): BenchCerts {
  return {
    rsa: generate(dir, 'rsa2048', ['-newkey', 'rsa:2048']),
    ecdsa: generate(dir, 'ecdsa-p256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']),
  };
}
