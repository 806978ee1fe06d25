// Client-certificate material made at test time with `selfsigned` (EC P-256, fast): a CA, a client certificate it
// signed (with a URI and a DNS name), an expired one, and one signed by another CA; written to files a config can
// name. Made once per test file.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';

export interface KeyPair {
  readonly cert: string;
  readonly key: string;
}

export interface ClientCerts {
  /** Path of the CA's PEM certificate (listeners[].tls.clientCa). */
  readonly caFile: string;
  readonly ca: KeyPair;
  /** Signed by the CA, valid now; CN "alice", SAN URI spiffe://example.org/alice and DNS alice.example.org. */
  readonly valid: KeyPair;
  /** Signed by the CA, expired yesterday. */
  readonly expired: KeyPair;
  /** Valid now, but signed by another CA. */
  readonly otherCa: KeyPair;
  /** Files of `valid` (for pools.NAME.tls.cert/.key). */
  readonly validFiles: { readonly cert: string; readonly key: string };
}

const DAY_MS = 86_400_000;

async function makeCa(cn: string): Promise<KeyPair> {
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 2 * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

async function makeClient(
  cn: string,
  ca: KeyPair,
  validity: { notBeforeDate: Date; notAfterDate: Date } = {
    notBeforeDate: new Date(Date.now() - DAY_MS),
    notAfterDate: new Date(Date.now() + DAY_MS),
  },
): Promise<KeyPair> {
  const pems = await generate(
    [
      { name: 'commonName', value: cn },
      { name: 'organizationName', value: 'Example Inc' },
    ],
    {
      keyType: 'ec',
      algorithm: 'sha256',
      ...validity,
      ca,
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', clientAuth: true, serverAuth: true },
        {
          name: 'subjectAltName',
          altNames: [
            { type: 6, value: `spiffe://example.org/${cn}` },
            { type: 2, value: `${cn}.example.org` },
            { type: 7, ip: '127.0.0.1' },
          ],
        },
      ],
    },
  );
  return { cert: pems.cert, key: pems.private };
}

export async function makeClientCerts(): Promise<ClientCerts> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-client-certs-'));
  const ca = await makeCa('wsgate test clients CA');
  const other = await makeCa('another CA');
  const valid = await makeClient('alice', ca);
  const expired = await makeClient('bob', ca, {
    notBeforeDate: new Date(Date.now() - 3 * DAY_MS),
    notAfterDate: new Date(Date.now() - DAY_MS),
  });
  const otherCa = await makeClient('mallory', other);
  const caFile = join(dir, 'clients-ca.pem');
  writeFileSync(caFile, ca.cert);
  const validFiles = { cert: join(dir, 'alice.crt'), key: join(dir, 'alice.key') };
  writeFileSync(validFiles.cert, valid.cert);
  writeFileSync(validFiles.key, valid.key);
  return { caFile, ca, valid, expired, otherCa, validFiles };
}
