// Hostile affinity cookies (pools.NAME.sticky, docs/security.md): a client may send anything under the cookie's
// name. Forged, truncated, oversized, repeated values and values of another pool or of a backend that is ejected
// or gone never pin a request anywhere the proxy would not send it; they are counted, answered with a fresh cookie,
// and never reach a backend. A config that hashes on the cookie itself is refused.

import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { StickyCookies } from '../../src/routing/sticky.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { startGatewayFor, type TestGateway } from '../helpers/gateway.js';
import {
  affinityPair,
  COOKIE,
  type NamedBackend,
  namedBackends,
  namedUpgrade,
  plainGet,
  stickyConfig,
  stickyCount,
} from '../helpers/sticky.js';

const cleanups = cleanupAfterEach();

const SECRET = 'a long enough test secret';

async function setup(): Promise<{ backends: NamedBackend[]; gw: TestGateway; owner: string; pair: string }> {
  const backends = await namedBackends(['b1', 'b2', 'b3'], cleanups);
  const gw = await startGatewayFor(
    cleanups,
    stickyConfig(
      backends.map((b) => b.url),
      { secret: SECRET },
    ),
  );
  const first = await plainGet(gw.port, cleanups, { 'X-User-Id': 'victim' });
  return { backends, gw, owner: first.body, pair: affinityPair(first.setCookie) as string };
}

/** What the hash alone gives a user: the backend a request with no cookie at all lands on. */
async function hashOwner(gw: TestGateway, user: string): Promise<string> {
  return (await plainGet(gw.port, cleanups, { 'X-User-Id': user })).body;
}

/** A value naming one of `backends` other than `owner`, as a client without the secret might try to make it. */
function guessedValue(backends: readonly NamedBackend[], owner: string, secret: string | undefined): string {
  const other = backends.find((b) => b.id !== owner) as NamedBackend;
  return new StickyCookies('main', {
    cookie: COOKIE,
    maxAgeMs: 0,
    sameSite: 'Lax',
    secure: 'auto',
    secret,
  }).valueOf(`ws://${new URL(other.url).host}`);
}

describe('values a client makes up', () => {
  it('forged, truncated, extended, oversized (8 KiB), empty, quoted: none pins; each is counted forged and replaced', async () => {
    const { backends, gw, pair } = await setup();
    const value = pair.slice(COOKIE.length + 1);
    const hostile = [
      'AAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      value.slice(0, -1),
      value.slice(0, 10),
      `${value}A`,
      'x'.repeat(8192),
      '',
      `"${value}"`,
      guessedValue(backends, '', undefined),
    ];
    const user = 'mallory';
    const expected = await hashOwner(gw, user);
    for (const v of hostile) {
      const answer = await plainGet(gw.port, cleanups, { 'X-User-Id': user, Cookie: `${COOKIE}=${v}` });
      expect(answer.status, v.slice(0, 40)).toBe(200);
      expect(answer.body, v.slice(0, 40)).toBe(expected);
      expect(affinityPair(answer.setCookie), v.slice(0, 40)).toBeDefined();
    }
    expect(await stickyCount(gw, 'forged')).toBe(hostile.length);
    expect(await stickyCount(gw, 'hit')).toBe(0);
    expect(backends.flatMap((b) => b.cookies).filter((c) => c?.includes(COOKIE))).toEqual([]);
  });

  it('without the secret, the value for a chosen backend cannot be computed: it counts as forged', async () => {
    const { backends, gw, owner } = await setup();
    const guess = guessedValue(backends, owner, 'not the secret at all');
    const answer = await plainGet(gw.port, cleanups, { 'X-User-Id': 'victim', Cookie: `${COOKIE}=${guess}` });
    expect(answer.body).toBe(owner);
    expect(await stickyCount(gw, 'forged')).toBe(1);
  });

  it('a value from another pool (another key) does not pin here', async () => {
    const { backends, gw, owner } = await setup();
    const other = backends.find((b) => b.id !== owner) as NamedBackend;
    const foreign = new StickyCookies('other-pool', {
      cookie: COOKIE,
      maxAgeMs: 0,
      sameSite: 'Lax',
      secure: 'auto',
      secret: SECRET,
    }).valueOf(`ws://${new URL(other.url).host}`);
    const answer = await plainGet(gw.port, cleanups, { 'X-User-Id': 'victim', Cookie: `${COOKIE}=${foreign}` });
    expect(answer.body).toBe(owner);
    expect(await stickyCount(gw, 'forged')).toBe(1);
  });
});

describe('repeated cookies', () => {
  it('a valid value after forged ones still pins; in any number of lines none reaches the backend', async () => {
    const { backends, gw, owner, pair } = await setup();
    const user = (await hashOwner(gw, 'u1')) === owner ? 'u2' : 'u1';
    const answer = await plainGet(gw.port, cleanups, {
      'X-User-Id': user,
      Cookie: `${COOKIE}=junk; a=1; ${COOKIE}=more-junk; ${pair}`,
    });
    expect(answer.body).toBe(owner);
    expect(affinityPair(answer.setCookie)).toBeUndefined();
    const seen = backends.find((b) => b.id === owner)?.cookies.at(-1);
    expect(seen).toBe('a=1');
  });

  it('thousands of repeats are read up to a small cap: the request is answered like any other', async () => {
    const { gw, owner, pair } = await setup();
    const flood = `${Array.from({ length: 700 }, () => `${COOKIE}=x`).join('; ')}; ${pair}`;
    const answer = await plainGet(gw.port, cleanups, { 'X-User-Id': 'victim', Cookie: flood });
    expect(answer.status).toBe(200);
    // The valid value comes after the cap: it is not looked at, so the hash picks and the cookie is set again.
    expect(answer.body).toBe(owner);
    expect(affinityPair(answer.setCookie)).toBeDefined();
    expect(await stickyCount(gw, 'forged')).toBe(1);
  });
});

describe('a cookie naming a backend that is not fit to serve', () => {
  it('ejected (connects failing): the next request goes by the hash and gets a new cookie', async () => {
    const backends = await namedBackends(['b1', 'b2', 'b3'], cleanups);
    const urls = backends.map((b) => b.url);
    const config = stickyConfig(urls, { secret: SECRET });
    (config.pools as Record<string, Record<string, unknown>>).main!.outlier = {
      consecutiveFailures: 1,
      ejectFor: '1m',
    };
    const gw = await startGatewayFor(cleanups, config);
    const first = await plainGet(gw.port, cleanups, { 'X-User-Id': 'victim' });
    const pair = affinityPair(first.setCookie) as string;
    await backends.find((b) => b.id === first.body)?.stop();
    // This one fails over to another backend and ejects the dead one.
    await plainGet(gw.port, cleanups, { 'X-User-Id': 'victim', Cookie: pair });
    const ws = await namedUpgrade(gw.port, cleanups, { 'X-User-Id': 'victim', Cookie: pair });
    expect(ws.status).toBe(101);
    expect(ws.firstMessage).not.toBe(first.body);
    expect(affinityPair(ws.setCookie)).toBeDefined();
    expect(await stickyCount(gw, 'stale')).toBe(1);
  });

  it('removed by a reload: stale, re-pinned, and its old value keeps being refused', async () => {
    const { backends, gw, owner, pair } = await setup();
    const remaining = backends.filter((b) => b.id !== owner).map((b) => b.url);
    await gw.gateway.reload(
      parseConfig(stringify(stickyConfig(remaining, { secret: SECRET })), '/virtual/sticky-security.yaml'),
    );
    for (let i = 0; i < 3; i++) {
      const answer = await plainGet(gw.port, cleanups, { Cookie: pair });
      expect(answer.body).not.toBe(owner);
      expect(affinityPair(answer.setCookie)).toBeDefined();
    }
    expect(await stickyCount(gw, 'stale')).toBe(3);
  });
});

describe('configuration', () => {
  it('hashing on the sticky cookie itself is refused', () => {
    const text = stringify(stickyConfig(['ws://127.0.0.1:1'])).replace(
      'hashKey: header:x-user-id',
      `hashKey: cookie:${COOKIE}`,
    );
    expect(() => parseConfig(text, '/virtual/hash-on-cookie.yaml')).toThrow(ConfigError);
    expect(() => parseConfig(text, '/virtual/hash-on-cookie.yaml')).toThrow(/the hash key reads this cookie/);
  });
});
