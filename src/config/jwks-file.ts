// Reads and checks a JWKS (RFC 7517 §5) for routes[].auth.jwt: from a file at load and reload, and the same checks
// for one fetched from a URL (access/jwt/jwks-remote.ts). Bounded in size and key count, so a huge or hostile key
// set costs a refusal rather than unbounded memory; within the bounds, keys are found by kid (access/jwt/key-set.ts).

import { readFileSync } from 'node:fs';

/** Larger JWKS documents are refused: room for MAX_JWKS_KEYS RSA-2048 keys, or a few thousand RSA-4096 ones. */
export const MAX_JWKS_BYTES = 8 * 1024 * 1024;
/** More keys than this are refused. Rotation needs two or three; a multi-tenant issuer may publish thousands. */
export const MAX_JWKS_KEYS = 10_000;

export interface Jwks {
  readonly keys: readonly object[];
}

/** A JWKS document's text checked: JSON, an object with a `keys` array of objects, within the caps. */
export function parseJwks(text: string): Jwks | { error: string } {
  if (Buffer.byteLength(text) > MAX_JWKS_BYTES) return { error: `a JWKS must be at most ${MAX_JWKS_BYTES} bytes` };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    if (err instanceof SyntaxError) return { error: `not JSON: ${err.message}` };
    throw err;
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'object' || k === null || Array.isArray(k))) {
    return { error: 'a JWKS is an object with a "keys" array of key objects' };
  }
  if (keys.length > MAX_JWKS_KEYS)
    return { error: `a JWKS may hold at most ${MAX_JWKS_KEYS} keys, got ${keys.length}` };
  return { keys };
}

/** A JWKS file, or why it cannot be used. */
export function readJwksFile(file: string): Jwks | { error: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { error: `cannot read the JWKS file ${file}: ${(err as Error).message}` };
  }
  const jwks = parseJwks(text);
  return 'error' in jwks ? { error: `JWKS file ${file}: ${jwks.error}` } : jwks;
}
