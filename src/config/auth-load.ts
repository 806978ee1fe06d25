// Normalises routes[].auth.jwt: the key material is read here (a JWKS file's keys, a JWKS URL's CA), so the keys
// are part of the config generation: a reload that changes them builds new verifiers, for new connections only.

import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { z } from 'zod';
import type { authSchemaWith } from './auth-schema.js';
import { readJwksFile } from './jwks-file.js';
import type { JwtConfig, JwtKeys } from './types.js';

type RawAuth = z.output<ReturnType<typeof authSchemaWith>>;

export function normaliseJwt(
  raw: RawAuth | undefined,
  baseDir: string,
  path: PropertyKey[],
  report: (path: PropertyKey[], message: string) => void,
): JwtConfig | undefined {
  const jwt = raw?.jwt;
  if (jwt === undefined) return undefined;
  const keys = keysOf(jwt, baseDir, [...path, 'jwt'], report);
  if (keys === undefined) return undefined;
  return {
    keys,
    issuer: jwt.issuer,
    audience: jwt.audience === undefined ? undefined : [jwt.audience].flat(),
    algorithms: jwt.algorithms,
    from: jwt.from,
    clockSkewMs: jwt.clockSkew,
    forwardClaims: Object.entries(jwt.forwardClaims ?? {}).map(([claim, header]) => ({ claim, header })),
    closeOnExpiry: jwt.closeOnExpiry,
    hashKey: jwt.hashKey,
  };
}

function keysOf(
  jwt: RawAuth['jwt'],
  baseDir: string,
  path: PropertyKey[],
  report: (path: PropertyKey[], message: string) => void,
): JwtKeys | undefined {
  if (jwt.secret !== undefined) return { kind: 'secret', secret: jwt.secret };
  const keys = jwt.keys as string;
  if (keys.startsWith('https://')) {
    if (jwt.keysCa === undefined) return { kind: 'url', url: keys, ca: undefined };
    const caFile = resolvePath(baseDir, jwt.keysCa);
    try {
      return { kind: 'url', url: keys, ca: readFileSync(caFile, 'utf8') };
    } catch (err) {
      report([...path, 'keysCa'], `cannot read ${caFile}: ${(err as Error).message}`);
      return undefined;
    }
  }
  const file = resolvePath(baseDir, keys);
  const jwks = readJwksFile(file);
  if ('error' in jwks) {
    report([...path, 'keys'], jwks.error);
    return undefined;
  }
  return { kind: 'file', file, jwks };
}
