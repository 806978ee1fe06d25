// pools.NAME.sticky end to end on real sockets: the proxy sets its cookie on the first answer (a plain response or
// the 101), honours it afterwards whatever the hash key says, re-sets it when it names no live backend, never
// passes it to a backend, and counts what it did in wsgate_sticky_total.

import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, startGatewayFor } from '../helpers/gateway.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import {
  affinityPair,
  COOKIE,
  namedBackends,
  namedUpgrade,
  plainGet,
  stickyConfig,
  stickyCount,
} from '../helpers/sticky.js';

const cleanups = cleanupAfterEach();

/** stickyConfig whose pool ejects a backend at its first failed connect. */
function ejectingConfig(urls: string[]) {
  const config = stickyConfig(urls);
  (config.pools as Record<string, Record<string, unknown>>).main!.outlier = { consecutiveFailures: 1, ejectFor: '1m' };
  return config;
}

const threeBackends = () => namedBackends(['b1', 'b2', 'b3'], cleanups);
const get = (port: number, headers: Record<string, string> = {}, tls = false) => plainGet(port, cleanups, headers, tls);
const upgrade = (port: number, headers: Record<string, string> = {}) => namedUpgrade(port, cleanups, headers);

describe('plain HTTP (long polling)', () => {
  it('the first answer sets the cookie beside the backend’s own; later requests follow it whatever their hash key', async () => {
    const backends = await threeBackends();
    const gw = await startGatewayFor(cleanups, stickyConfig(backends.map((b) => b.url)));
    const first = await get(gw.port, { 'X-User-Id': 'alice' });
    expect(first.status).toBe(200);
    const pair = affinityPair(first.setCookie);
    expect(pair).toBeDefined();
    expect(first.setCookie).toContain('app=1; Path=/');
    expect(first.setCookie.find((c) => c.startsWith(COOKIE))).toMatch(/; Path=\/; HttpOnly; SameSite=Lax$/);
    const owner = first.body;
    for (let i = 0; i < 30; i++) {
      const next = await get(gw.port, { 'X-User-Id': `user-${i}`, Cookie: `${pair}` });
      expect(next.body).toBe(owner);
      expect(affinityPair(next.setCookie)).toBeUndefined();
    }
    expect(await stickyCount(gw, 'set')).toBe(1);
    expect(await stickyCount(gw, 'hit')).toBe(30);
  });

  it('the client’s cookie of that name never reaches a backend; its other cookies do, unchanged', async () => {
    const backends = await threeBackends();
    const gw = await startGatewayFor(cleanups, stickyConfig(backends.map((b) => b.url)));
    const first = await get(gw.port, { Cookie: `a=1; ${COOKIE}=forged; b="2 3"` });
    const pair = affinityPair(first.setCookie) as string;
    await get(gw.port, { Cookie: `${pair}` });
    await get(gw.port, { Cookie: `x=9; ${pair}` });
    const seen = backends.flatMap((b) => b.cookies);
    expect(seen).toEqual(['a=1; b="2 3"', undefined, 'x=9']);
  });

  it('a forged value is ignored and replaced; so is a value for a backend a reload removed (stale)', async () => {
    const backends = await threeBackends();
    const urls = backends.map((b) => b.url);
    const gw = await startGatewayFor(cleanups, stickyConfig(urls));
    const forged = await get(gw.port, { Cookie: `${COOKIE}=AAAAAAAAAAAAAAAAAAAAAAAAAAAA` });
    expect(affinityPair(forged.setCookie)).toBeDefined();
    expect(await stickyCount(gw, 'forged')).toBe(1);

    const pair = affinityPair(forged.setCookie) as string;
    const owner = forged.body;
    const remaining = backends.filter((b) => b.id !== owner).map((b) => b.url);
    await gw.gateway.reload(parseConfig(stringify(stickyConfig(remaining)), '/virtual/sticky.yaml'));
    const after = await get(gw.port, { Cookie: pair });
    expect(after.body).not.toBe(owner);
    expect(affinityPair(after.setCookie)).toBeDefined();
    expect(affinityPair(after.setCookie)).not.toBe(pair);
    expect(await stickyCount(gw, 'stale')).toBe(1);
  });

  it('a pinned backend that refuses connections: 502, not another backend (the session lives there); once ejected, the next poll is pinned anew', async () => {
    const backends = await threeBackends();
    const gw = await startGatewayFor(cleanups, ejectingConfig(backends.map((b) => b.url)));
    const first = await get(gw.port, { 'X-User-Id': 'alice' });
    const pair = affinityPair(first.setCookie) as string;
    await backends.find((b) => b.id === first.body)?.stop();
    const failed = await get(gw.port, { 'X-User-Id': 'alice', Cookie: pair });
    expect(failed.status).toBe(502);
    expect(backends.flatMap((b) => b.cookies)).toHaveLength(1);
    const next = await get(gw.port, { 'X-User-Id': 'alice', Cookie: pair });
    expect(next.status).toBe(200);
    expect(next.body).not.toBe(first.body);
    const moved = affinityPair(next.setCookie) as string;
    expect(moved).toBeDefined();
    expect(moved).not.toBe(pair);
    expect((await get(gw.port, { Cookie: moved })).body).toBe(next.body);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_upstream_errors_total', { reason: 'connect' })).toBe(1);
    expect(await stickyCount(gw, 'stale')).toBe(1);
  });

  it('a request without a cookie whose backend refuses connections goes to the next ring member', async () => {
    const backends = await threeBackends();
    const gw = await startGatewayFor(cleanups, stickyConfig(backends.map((b) => b.url)));
    const first = await get(gw.port, { 'X-User-Id': 'alice' });
    await backends.find((b) => b.id === first.body)?.stop();
    const next = await get(gw.port, { 'X-User-Id': 'alice' });
    expect(next.status).toBe(200);
    expect(next.body).not.toBe(first.body);
    expect(affinityPair(next.setCookie)).toBeDefined();
  });

  it('secure: auto marks the cookie Secure on a TLS listener, not on a plain one', async () => {
    const backends = await threeBackends();
    const gw = await startGatewayFor(
      cleanups,
      stickyConfig(
        backends.map((b) => b.url),
        {},
        {
          listeners: [
            { name: 'public', address: '127.0.0.1', port: 0 },
            { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
          ],
        },
      ),
    );
    const plain = await get(gw.port);
    const tls = await get(gw.tlsPort, {}, true);
    expect(plain.setCookie.find((c) => c.startsWith(COOKIE))).not.toContain('Secure');
    expect(tls.setCookie.find((c) => c.startsWith(COOKIE))).toMatch(/; Secure$/);
  });
});

describe('WebSocket upgrades', () => {
  it('the 101 carries the cookie when the client had none; an upgrade with it lands on its backend', async () => {
    const backends = await threeBackends();
    const gw = await startGatewayFor(cleanups, stickyConfig(backends.map((b) => b.url)));
    const first = await upgrade(gw.port, { 'X-User-Id': 'alice' });
    expect(first.status).toBe(101);
    const pair = affinityPair(first.setCookie);
    expect(pair).toBeDefined();
    for (let i = 0; i < 10; i++) {
      const next = await upgrade(gw.port, { 'X-User-Id': `user-${i}`, Cookie: pair as string });
      expect(next.status).toBe(101);
      expect(next.firstMessage).toBe(first.firstMessage);
      expect(next.setCookie).toEqual([]);
    }
    expect(backends.flatMap((b) => b.cookies).filter((c) => c !== undefined)).toEqual([]);
  });

  it('polling then upgrading with the cookie the poll got: both on one backend, as Socket.IO needs', async () => {
    const backends = await threeBackends();
    const gw = await startGatewayFor(cleanups, stickyConfig(backends.map((b) => b.url)));
    for (let i = 0; i < 20; i++) {
      const poll = await get(gw.port, { 'X-User-Id': `poll-${i}` });
      const ws = await upgrade(gw.port, { 'X-User-Id': `ws-${i}`, Cookie: affinityPair(poll.setCookie) as string });
      expect(ws.firstMessage).toBe(poll.body);
      ws.socket.destroy();
    }
  });

  it('a pinned backend that refuses connections: 502; once ejected, the next upgrade lands elsewhere and the 101 re-sets the cookie', async () => {
    const backends = await threeBackends();
    const gw = await startGatewayFor(cleanups, ejectingConfig(backends.map((b) => b.url)));
    const first = await get(gw.port, { 'X-User-Id': 'alice' });
    const pair = affinityPair(first.setCookie) as string;
    await backends.find((b) => b.id === first.body)?.stop();
    const failed = await rawUpgrade(gw.port, { headers: { Cookie: pair } });
    failed.socket.destroy();
    expect(failed.status).toBe(502);
    const ws = await upgrade(gw.port, { Cookie: pair });
    expect(ws.status).toBe(101);
    expect(ws.firstMessage).not.toBe(first.body);
    expect(affinityPair(ws.setCookie)).toBeDefined();
    expect(affinityPair(ws.setCookie)).not.toBe(pair);
  });
});
