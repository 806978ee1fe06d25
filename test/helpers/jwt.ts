// Keys and tokens made at test time with jose: key pairs of each algorithm, a JWKS file holding their public
// halves, a JWKS served over HTTPS, and signed tokens. Nothing here is a fixture on disk.

import { mkdtempSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import type { Cleanup } from './cleanups.js';
import { makeClientCerts } from './client-certs.js';

export const ISSUER = 'https://auth.test';
export const AUDIENCE = 'chat';
export const SECRET = 'a-test-secret-of-at-least-32-characters!';

export interface TestKey {
  readonly alg: 'RS256' | 'ES256' | 'EdDSA';
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function makeKey(alg: TestKey['alg'], kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicJwk };
}

/** A JWKS file of `keys`' public halves in a fresh temporary directory. */
export function writeJwks(keys: readonly TestKey[], dir = mkdtempSync(join(tmpdir(), 'wsgate-jwks-'))): string {
  const file = join(dir, 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
  return file;
}

/** A token signed with `key`: issuer and audience of the tests, valid for an hour unless `claims` say otherwise. */
export function sign(key: TestKey, claims: JWTPayload = {}, expiresIn: string | number = '1h'): Promise<string> {
  return new SignJWT({ sub: 'user-1', iss: ISSUER, aud: AUDIENCE, ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid })
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key.privateKey);
}

/** An HS256 token with the tests' shared secret. */
export function signHs256(claims: JWTPayload = {}, expiresIn: string | number = '1h'): Promise<string> {
  return new SignJWT({ sub: 'user-1', iss: ISSUER, aud: AUDIENCE, ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(SECRET));
}

/** routes[].auth.jwt for a JWKS file (or secret) with the tests' issuer and audience. */
export function jwtAuth(keys: { keys: string } | { secret: string }, extra: Record<string, unknown> = {}) {
  const algorithms = 'secret' in keys ? ['HS256'] : ['RS256', 'ES256', 'EdDSA'];
  return { jwt: { ...keys, issuer: ISSUER, audience: AUDIENCE, algorithms, ...extra } };
}

/**
 * A JWKS served over HTTPS on 127.0.0.1 with a certificate of a CA made at test time (`caFile` for keysCa). The
 * test changes what it serves, counts the requests, makes it hang (accept and never answer), fail (500) or answer
 * byte by byte, and stops and restarts it on the same port.
 */
export interface JwksServer {
  readonly url: string;
  readonly caFile: string;
  /** GET requests received so far. */
  readonly requests: number;
  serve(keys: readonly TestKey[]): void;
  /** Serves `text` as the JWKS document, whatever it is. */
  serveText(text: string): void;
  /** `drip`: the body one byte every 200 ms, so no single wait is long. */
  mode: 'serve' | 'hang' | 'fail' | 'drip';
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startJwksServer(keys: readonly TestKey[], cleanups: Cleanup[]): Promise<JwksServer> {
  const certs = await makeClientCerts();
  let body = '';
  let requests = 0;
  const sockets = new Set<Socket>();
  const server = createHttpsServer({ cert: certs.valid.cert, key: certs.valid.key }, (_req, res) => {
    requests++;
    if (jwks.mode === 'hang') return;
    if (jwks.mode === 'fail') res.writeHead(500).end();
    else if (jwks.mode === 'drip') drip(res, body);
    else res.writeHead(200, { 'Content-Type': 'application/jwk-set+json' }).end(body);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  await listen();
  const jwks: JwksServer = {
    url: `https://127.0.0.1:${port}/jwks.json`,
    caFile: certs.caFile,
    get requests() {
      return requests;
    },
    serve: (served) => {
      body = JSON.stringify({ keys: served.map((k) => k.publicJwk) });
    },
    serveText: (text) => {
      body = text;
    },
    mode: 'serve',
    stop,
    // The same port again: the gateway's config names it.
    start: listen,
  };
  jwks.serve(keys);
  cleanups.push(() => (server.listening ? stop() : undefined));
  return jwks;
}

function drip(res: ServerResponse, body: string): void {
  res.writeHead(200, { 'Content-Type': 'application/jwk-set+json', 'Content-Length': Buffer.byteLength(body) });
  let sent = 0;
  const timer = setInterval(() => {
    if (res.destroyed || sent >= body.length) {
      clearInterval(timer);
      res.end();
      return;
    }
    res.write(body[sent++]);
  }, 200);
  res.on('close', () => clearInterval(timer));
}
