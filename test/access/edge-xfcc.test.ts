// X-Forwarded-Client-Cert values for awkward certificates, made with the openssl CLI at test time, with OpenSSL's
// own RFC 2253 printing (what Envoy puts in Subject) as the oracle: escaped specials, multi-valued RDNs, UTF-8,
// subjectAltName values with XFCC separators, and ones with control or non-ASCII characters (which must stay escaped
// text: a line break in a header value would inject headers into the backend's request).

import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { describe, expect, it } from 'vitest';
import { forwardedClientCert } from '../../src/access/client-cert.js';

const dir = mkdtempSync(join(tmpdir(), 'wsgate-xfcc-'));
let made = 0;

/** A self-signed certificate with subject `subj` (openssl -subj syntax) and subjectAltName entries `altNames`. */
function opensslCert(subj: string, altNames: string[] = [], extraArgs: string[] = []): string {
  const name = `c${made++}`;
  const config = join(dir, `${name}.cnf`);
  const lines = ['[req]', 'distinguished_name = dn', '[dn]', '[ext]'];
  if (altNames.length > 0) lines.push('subjectAltName = @alt', '[alt]', ...altNames);
  else lines.push('basicConstraints = CA:false');
  writeFileSync(config, `${lines.join('\n')}\n`);
  const cert = join(dir, `${name}.pem`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-utf8',
      '-config',
      config,
      '-extensions',
      'ext',
      '-subj',
      subj,
      '-keyout',
      join(dir, `${name}.key`),
      '-out',
      cert,
      ...extraArgs,
    ],
    { stdio: 'ignore' },
  );
  return cert;
}

/** What OpenSSL prints as the RFC 2253 subject (Envoy's Subject). */
function opensslSubject(certFile: string): string {
  const out = execFileSync('openssl', ['x509', '-in', certFile, '-noout', '-subject', '-nameopt', 'RFC2253'], {
    encoding: 'utf8',
  });
  return out.trim().replace(/^subject=/, '');
}

function xfccOf(certFile: string): string {
  return forwardedClientCert(new X509Certificate(readFileSync(certFile)));
}

/** The element's pairs after Hash (which is the certificate's SHA-256 fingerprint). */
function pairsAfterHash(certFile: string): string {
  const xfcc = xfccOf(certFile);
  const hash = new X509Certificate(readFileSync(certFile)).fingerprint256.replaceAll(':', '').toLowerCase();
  expect(xfcc.startsWith(`Hash=${hash};`)).toBe(true);
  return xfcc.slice(`Hash=${hash};`.length);
}

describe('Subject: OpenSSL RFC 2253, as Envoy sends it', () => {
  const cases: [string, string, string[]][] = [
    ['special characters, escaped once', '/O=Ex, Inc/CN=a\\,b "c" \\+d;e\\\\f<g>', []],
    ['a multi-valued RDN, its parts reversed too', '/O=x/CN=a+UID=b/C=DE', ['-multivalue-rdn']],
    ['UTF-8, each byte as \\XX (the header stays ASCII)', '/O=Straße/CN=Jürgen 日本', []],
  ];
  for (const [name, subj, args] of cases) {
    it(name, () => {
      const cert = opensslCert(subj, [], args);
      const subject = opensslSubject(cert);
      expect(pairsAfterHash(cert)).toBe(`Subject="${subject}"`);
      expect(subject).not.toMatch(/[^\x20-\x7e]/);
    });
  }
});

describe('URI and DNS', () => {
  it('one element per entry, in certificate order; a value with , ; = or " is quoted with " escaped', () => {
    const cert = opensslCert('/CN=x', [
      'URI.1 = spiffe://x/a,b;c=\\"d\\"',
      'URI.2 = https://example.org/plain',
      'DNS.1 = a.example',
      'DNS.2 = b.example',
    ]);
    expect(pairsAfterHash(cert)).toBe(
      'Subject="CN=x";URI="spiffe://x/a,b;c=\\"d\\"";URI=https://example.org/plain;DNS=a.example;DNS=b.example',
    );
  });

  it('control and non-ASCII characters stay escaped text: no line break reaches a header value', async () => {
    const pems = await generate([{ name: 'commonName', value: 'x' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [
        {
          name: 'subjectAltName',
          altNames: [
            { type: 6, value: 'spiffe://x/a\r\nX-Evil: 1' },
            { type: 2, value: 'ok.example' },
            { type: 6, value: 'spiffe://x/é' },
          ],
        },
      ],
    });
    const xfcc = forwardedClientCert(new X509Certificate(pems.cert));
    expect(xfcc).not.toMatch(/[^\x20-\x7e]/);
    expect(xfcc.endsWith(';URI=spiffe://x/a\\u000d\\u000aX-Evil: 1;DNS=ok.example;URI=spiffe://x/\\u00e9')).toBe(true);
  });
});
