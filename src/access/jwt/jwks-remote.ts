// A JWKS fetched from an https:// URL (routes[].auth.jwt.keys), kept off the handshake path: a token whose kid is
// in the last good copy is verified without waiting for anything; a fetch starts in the background when the copy
// is older than REFRESH_AFTER_MS, and for a kid the copy lacks (a key rotation) at most once per
// REFETCH_COOLDOWN_MS; a failed fetch keeps the copy. Only a token with an unknown kid waits, for one fetch at most
// FETCH_TIMEOUT_MS long, and not at all while the cooldown runs: a dead JWKS server means a quick 401, not a hang.

import { request } from 'node:https';
import { type CompactJWSHeaderParameters, errors, type JWTVerifyGetKey } from 'jose';
import { type Jwks, MAX_JWKS_BYTES, parseJwks } from '../../config/jwks-file.js';
import type { Logger } from '../../observe/log.js';
import { keySetOf } from './key-set.js';

export const REFETCH_COOLDOWN_MS = 30_000;
export const REFRESH_AFTER_MS = 5 * 60_000;
export const FETCH_TIMEOUT_MS = 3000;

type KeyResult = Awaited<ReturnType<JWTVerifyGetKey>>;

/** The copies in use in this process, by URL and CA; held weakly, so one no generation uses any more can go. */
const inUse = new Map<string, WeakRef<RemoteJwks>>();

/**
 * The copy of `url`'s JWKS (trusting `ca`) for a route of a new config generation: the one a route of the running
 * generation already has when there is one. So a reload starts with the keys in force, also while the JWKS server
 * is down, and routes naming the same URL share one copy and its fetches.
 */
export function remoteJwksFor(url: string, ca: string | undefined, log: Logger): RemoteJwks {
  const key = `${url}\n${ca ?? ''}`;
  const running = inUse.get(key)?.deref();
  if (running !== undefined) return running;
  for (const [k, ref] of inUse) if (ref.deref() === undefined) inUse.delete(k);
  const fresh = new RemoteJwks(url, ca, log);
  inUse.set(key, new WeakRef(fresh));
  return fresh;
}

export class RemoteJwks {
  private readonly url: string;
  private readonly ca: string | undefined;
  private readonly log: Logger;
  private local: JWTVerifyGetKey | undefined = undefined;
  private fetchedAtMs = Number.NEGATIVE_INFINITY;
  private attemptedAtMs = Number.NEGATIVE_INFINITY;
  private inFlight: Promise<void> | undefined = undefined;

  constructor(url: string, ca: string | undefined, log: Logger) {
    this.url = url;
    this.ca = ca;
    this.log = log;
    void this.refresh();
  }

  /** jose's key lookup: from the cached copy, fetching again only for an unknown kid (see the file's comment). */
  readonly getKey = async (
    header: CompactJWSHeaderParameters,
    token: Parameters<JWTVerifyGetKey>[1],
  ): Promise<KeyResult> => {
    const now = performance.now();
    if (now - this.fetchedAtMs > REFRESH_AFTER_MS && now - this.attemptedAtMs > REFETCH_COOLDOWN_MS) {
      void this.refresh();
    }
    const local = this.local;
    if (local !== undefined) {
      try {
        return await local(header, token);
      } catch (err) {
        if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      }
    }
    // Not in the copy: wait for the fetch under way, or start one if the cooldown allows it.
    const pending = this.inFlight ?? (now - this.attemptedAtMs >= REFETCH_COOLDOWN_MS ? this.refresh() : undefined);
    if (pending === undefined) throw new errors.JWKSNoMatchingKey();
    await pending;
    if (this.local === undefined || this.local === local) throw new errors.JWKSNoMatchingKey();
    return this.local(header, token);
  };

  private refresh(): Promise<void> {
    if (this.inFlight !== undefined) return this.inFlight;
    this.attemptedAtMs = performance.now();
    const fetching = fetchJwks(this.url, this.ca).then(
      (jwks) => {
        this.local = keySetOf(jwks.keys);
        this.fetchedAtMs = performance.now();
        this.log.info({ event: 'jwks_fetched', url: this.url, keys: jwks.keys.length }, 'JWKS fetched');
      },
      (err: Error) => {
        this.log.warn(
          { event: 'jwks_fetch_failed', url: this.url, err: err.message },
          'JWKS fetch failed; keeping the last copy',
        );
      },
    );
    this.inFlight = fetching.finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }
}

/**
 * GET `url` (trusting `ca` instead of the system store when given), bounded in size and in total time: a server
 * that trickles its answer is cut at FETCH_TIMEOUT_MS like one that says nothing.
 */
function fetchJwks(url: string, ca: string | undefined): Promise<Jwks> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ...(ca === undefined ? {} : { ca }) }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`status ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_JWKS_BYTES) req.destroy(new Error(`larger than ${MAX_JWKS_BYTES} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => {
        const jwks = parseJwks(Buffer.concat(chunks).toString('utf8'));
        if ('error' in jwks) reject(new Error(jwks.error));
        else resolve(jwks);
      });
      res.on('error', reject);
    });
    const deadline = setTimeout(
      () => req.destroy(new Error(`no answer within ${FETCH_TIMEOUT_MS}ms`)),
      FETCH_TIMEOUT_MS,
    );
    req.on('close', () => clearTimeout(deadline));
    req.on('error', reject);
    req.end();
  });
}
