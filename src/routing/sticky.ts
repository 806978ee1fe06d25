// Affinity cookies the proxy sets (pools.NAME.sticky): the value names a backend without revealing its address and
// is the same in every process given the same config (a keyed hash, no shared state), so any worker or instance
// can honour a cookie another one set. Building values and the key is slow-path work; reading a request's cookie
// is a scan of its Cookie lines and, for a value no live backend has, one HMAC to tell stale from forged.
//
// Value: base64url(tag) + base64url(mac), where tag = HMAC(key, "backend\0" + id)[0..9] stands for the backend
// and mac = HMAC(key, "tag\0" + tag)[0..12] proves the tag came from a wsgate holding the key. The key is
// SHA-256 of the pool name and `secret`: without a secret, anyone who knows the pool name can compute the value
// for a backend id they guess; with one, values can neither be forged nor linked to an address.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** pools.NAME.sticky, normalised. */
export interface StickySpec {
  /** Cookie name (an RFC 6265 token). */
  readonly cookie: string;
  /** 0: a session cookie (no Max-Age); otherwise its lifetime. */
  readonly maxAgeMs: number;
  readonly sameSite: 'Lax' | 'Strict' | 'None';
  /** 'auto': Secure on TLS listeners only. SameSite=None always gets Secure (browsers require it). */
  readonly secure: 'auto' | boolean;
  /** Keys the cookie values; the same on every instance that shares the cookies. */
  readonly secret: string | undefined;
}

const TAG_BYTES = 9;
const MAC_BYTES = 12;
const TAG_CHARS = (TAG_BYTES / 3) * 4;
/** Length of every value this module makes; anything else is forged without hashing it. */
export const STICKY_VALUE_CHARS = TAG_CHARS + (MAC_BYTES / 3) * 4;
/** Cookie lines can repeat a name (other paths, other sites' writes): this many values are looked at, no more. */
export const MAX_STICKY_VALUES = 4;

export class StickyCookies {
  readonly spec: StickySpec;
  private readonly key: Buffer;
  /** Backend id → cookie value, filled as backends are seen (bounded by the pool's members over time). */
  private readonly values = new Map<string, string>();

  constructor(poolName: string, spec: StickySpec) {
    this.spec = spec;
    this.key = createHash('sha256')
      .update(`wsgate sticky v1\0${poolName}\0${spec.secret ?? ''}`)
      .digest();
  }

  /** The cookie value naming backend `id`. */
  valueOf(id: string): string {
    let value = this.values.get(id);
    if (value === undefined) {
      const tag = this.hmac(`backend\0${id}`).subarray(0, TAG_BYTES).toString('base64url');
      value = tag + this.macOf(tag).toString('base64url');
      this.values.set(id, value);
    }
    return value;
  }

  /** Whether `value` was made by valueOf with this key (for some backend, present or not). */
  isAuthentic(value: string): boolean {
    if (value.length !== STICKY_VALUE_CHARS) return false;
    const mac = Buffer.from(value.slice(TAG_CHARS), 'base64url');
    if (mac.length !== MAC_BYTES) return false;
    return timingSafeEqual(mac, this.macOf(value.slice(0, TAG_CHARS)));
  }

  /** The Set-Cookie value that pins a client to the backend `value` names. */
  setCookie(value: string, tlsListener: boolean): string {
    const spec = this.spec;
    let header = `${spec.cookie}=${value}; Path=/; HttpOnly; SameSite=${spec.sameSite}`;
    const secure = spec.sameSite === 'None' || (spec.secure === 'auto' ? tlsListener : spec.secure);
    if (secure) header += '; Secure';
    if (spec.maxAgeMs > 0) header += `; Max-Age=${Math.max(1, Math.floor(spec.maxAgeMs / 1000))}`;
    return header;
  }

  private macOf(tag: string): Buffer {
    return this.hmac(`tag\0${tag}`).subarray(0, MAC_BYTES);
  }

  private hmac(text: string): Buffer {
    return createHmac('sha256', this.key).update(text).digest();
  }
}

/**
 * The values of cookie `name` in a request's Cookie lines (`raw`: name, value, name, value…), in order, at most
 * MAX_STICKY_VALUES. Empty when there is none.
 */
export function cookieValues(raw: readonly string[], name: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 1 < raw.length && found.length < MAX_STICKY_VALUES; i += 2) {
    const header = raw[i] as string;
    if (header.length !== 6 || header.toLowerCase() !== 'cookie') continue;
    const line = raw[i + 1] as string;
    if (!line.includes(name)) continue;
    forEachPair(line, (start, eq, end) => {
      if (found.length < MAX_STICKY_VALUES && isName(line, start, eq, name)) found.push(trimmed(line, eq + 1, end));
    });
  }
  return found;
}

/**
 * A Cookie line without the pairs named `name` (RFC 6265 §5.4: pairs joined by "; "); the same string when it has
 * none, undefined when nothing is left. The other pairs keep their bytes and order.
 */
export function withoutCookie(line: string, name: string): string | undefined {
  if (!line.includes(name)) return line;
  let kept: string | undefined;
  forEachPair(line, (start, eq, end) => {
    if (isName(line, start, eq, name)) return;
    const pair = trimmed(line, start, end);
    if (pair === '') return;
    kept = kept === undefined ? pair : `${kept}; ${pair}`;
  });
  return kept;
}

/** Calls `each(start, eq, end)` for every ';'-separated pair; `eq` is its '=' (or `end` when it has none). */
function forEachPair(line: string, each: (start: number, eq: number, end: number) => void): void {
  let pos = 0;
  while (pos <= line.length) {
    let end = line.indexOf(';', pos);
    if (end < 0) end = line.length;
    const eq = line.indexOf('=', pos);
    each(pos, eq < 0 || eq > end ? end : eq, end);
    pos = end + 1;
  }
}

function isName(line: string, start: number, eq: number, name: string): boolean {
  let from = start;
  let to = eq;
  while (from < to && isSpace(line.charCodeAt(from))) from++;
  while (to > from && isSpace(line.charCodeAt(to - 1))) to--;
  return to - from === name.length && line.startsWith(name, from);
}

function trimmed(line: string, from: number, to: number): string {
  let start = from;
  let end = to;
  while (start < end && isSpace(line.charCodeAt(start))) start++;
  while (end > start && isSpace(line.charCodeAt(end - 1))) end--;
  return line.slice(start, end);
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09;
}
