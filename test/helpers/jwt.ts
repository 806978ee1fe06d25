// Keys and tokens made at test time with jose: key pairs of each algorithm, a JWKS file holding their public
// halves, and signed tokens. Nothing here is a fixture on disk.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';

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
