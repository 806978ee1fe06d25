// keySetOf (access/jwt/key-set.ts): a JWKS indexed by kid gives the answers jose's own local set gives, kid-less
// tokens included, however large the set.

import { createLocalJWKSet, type errors, type JWTVerifyGetKey, jwtVerify, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { keySetOf } from '../../src/access/jwt/key-set.js';
import { makeKey, type TestKey } from '../helpers/jwt.js';

let rs: TestKey;
let es: TestKey;
let es2: TestKey;

beforeAll(async () => {
  rs = await makeKey('RS256', 'rs');
  es = await makeKey('ES256', 'es');
  es2 = await makeKey('ES256', 'es2');
});

function token(key: TestKey, kid: string | undefined): Promise<string> {
  return new SignJWT({ sub: 'u' })
    .setProtectedHeader({ alg: key.alg, ...(kid === undefined ? {} : { kid }) })
    .sign(key.privateKey);
}

/** What verifying `jwt` against `keys` ends in: 'ok' or the jose error's code, with jose's set and with ours. */
async function outcomes(keys: TestKey[], jwt: string): Promise<{ jose: string; ours: string }> {
  const jwks = { keys: keys.map((k) => k.publicJwk) };
  const run = (getKey: JWTVerifyGetKey) =>
    jwtVerify(jwt, getKey, { algorithms: ['RS256', 'ES256'] }).then(
      () => 'ok',
      (err: errors.JOSEError) => err.code,
    );
  return { jose: await run(createLocalJWKSet(jwks as never)), ours: await run(keySetOf(jwks.keys)) };
}

describe('keySetOf', () => {
  it('answers as jose does: by kid, without a kid (one key per type, or several), unknown and wrong kids', async () => {
    const cases: [TestKey[], string, string][] = [
      [[rs, es], await token(es, 'es'), 'ok'],
      [[rs, es], await token(es, undefined), 'ok'],
      [[rs, es], await token(rs, undefined), 'ok'],
      [[es, es2], await token(es, undefined), 'ERR_JWKS_MULTIPLE_MATCHING_KEYS'],
      [[rs, es], await token(es, 'nobody'), 'ERR_JWKS_NO_MATCHING_KEY'],
      [[rs, es], await token(es, 'rs'), 'ERR_JWKS_NO_MATCHING_KEY'],
      [[es, es2], await token(es, 'es2'), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
    ];
    for (const [keys, jwt, expected] of cases) {
      expect(await outcomes(keys, jwt)).toEqual({ jose: expected, ours: expected });
    }
  });

  it('a kid-less token keeps its answer per alg: the same key twice, and a refusal twice', async () => {
    const one = keySetOf([es.publicJwk]);
    const verify = async (set: JWTVerifyGetKey, jwt: string) =>
      jwtVerify(jwt, set, { algorithms: ['ES256'] }).then(
        () => 'ok',
        (err: errors.JOSEError) => err.code,
      );
    expect(await verify(one, await token(es, undefined))).toBe('ok');
    expect(await verify(one, await token(es, undefined))).toBe('ok');
    expect(await verify(one, await token(es2, undefined))).toBe('ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
    const two = keySetOf([es.publicJwk, es2.publicJwk]);
    for (let i = 0; i < 2; i++) {
      expect(await verify(two, await token(es, undefined))).toBe('ERR_JWKS_MULTIPLE_MATCHING_KEYS');
    }
  });
});
