// A JWKS as jose's key lookup, indexed by kid: a token names its key, so a set of thousands of keys costs one map
// lookup per handshake instead of a scan of every key. Within one kid, and for a token that names none, jose's own
// local set decides, so the key type, `alg`, `use`, `key_ops` and curve are matched exactly as jose matches them.
// jose's sets are made when a kid is first asked for, so loading (and reloading) a large set costs only the grouping.
// A token without a kid gets the same answer for the same `alg` (one of the route's algorithms: jose checks that
// before asking for a key), so that answer is looked up once per alg.

import { createLocalJWKSet, errors, type JWTVerifyGetKey } from 'jose';

export function keySetOf(keys: readonly object[]): JWTVerifyGetKey {
  const byKid = new Map<string, object[]>();
  for (const jwk of keys) {
    const kid = (jwk as { kid?: unknown }).kid;
    if (typeof kid !== 'string') continue;
    const group = byKid.get(kid);
    if (group === undefined) byKid.set(kid, [jwk]);
    else group.push(jwk);
  }
  const sets = new Map<string, JWTVerifyGetKey>();
  let all: JWTVerifyGetKey | undefined;
  const withoutKid = new Map<string, ReturnType<JWTVerifyGetKey>>();
  return async (header, token) => {
    const kid: unknown = header.kid;
    if (kid === undefined) {
      let found = withoutKid.get(header.alg);
      if (found === undefined) {
        // A token without a kid may use any key of the set, as jose has it (one key of each type, say).
        all ??= createLocalJWKSet({ keys: keys as never[] });
        found = all({ alg: header.alg }, token);
        withoutKid.set(header.alg, found);
      }
      return found;
    }
    const group = typeof kid === 'string' ? byKid.get(kid) : undefined;
    if (typeof kid !== 'string' || group === undefined) throw new errors.JWKSNoMatchingKey();
    let set = sets.get(kid);
    if (set === undefined) {
      set = createLocalJWKSet({ keys: group as never[] });
      sets.set(kid, set);
    }
    return set(header, token);
  };
}
