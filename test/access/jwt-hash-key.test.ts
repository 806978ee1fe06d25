// Routing by identity: `claim:NAME` as the hash key (routes[].auth.jwt.hashKey, or pools.NAME.hashKey) sends every
// connection of one user to one backend whichever address it comes from, and spreads users over the pool. A route
// without a token on a claim-hashed pool has no claim to hash: it falls back to the client address, counted.

import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { echoBackendFor, type TestBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, simpleConfig, startGatewayFor } from '../helpers/gateway.js';
import { jwtAuth, makeKey, sign, type TestKey, writeJwks } from '../helpers/jwt.js';

const cleanups = cleanupAfterEach();

/** Opens a WebSocket from `localAddress` (any 127.x address on loopback) and says which backend took it. */
async function backendOf(
  backends: readonly TestBackend[],
  url: string,
  localAddress: string,
  token?: string,
): Promise<string> {
  const before = backends.map((b) => b.requests.length);
  const headers: Record<string, string> = token === undefined ? {} : { Authorization: `Bearer ${token}` };
  const ws = new WebSocket(url, { headers, localAddress });
  cleanups.push(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const took = backends.filter((b, i) => b.requests.length > (before[i] as number));
  expect(took).toHaveLength(1);
  return (took[0] as TestBackend).id;
}

async function setup(): Promise<{
  backends: TestBackend[];
  key: TestKey;
  port: number;
  metrics: () => Promise<string>;
}> {
  const key = await makeKey('ES256', 'k1');
  const backends = await Promise.all(['a', 'b', 'c', 'd'].map((id) => echoBackendFor(cleanups, id)));
  const keys = writeJwks([key]);
  const urls = backends.map((b) => b.url);
  const gw = await startGatewayFor(
    cleanups,
    simpleConfig(urls, {
      routes: [
        // The route's own claim key, over the pool's `ip`.
        {
          name: 'by-route',
          match: { path: '/route' },
          pool: 'byIp',
          auth: jwtAuth({ keys }, { hashKey: 'claim:sub' }),
        },
        // The pool's key is the claim.
        { name: 'by-pool', match: { path: '/pool' }, pool: 'byClaim', auth: jwtAuth({ keys }) },
        { name: 'no-token', match: { path: '/open' }, pool: 'byClaim' },
      ],
      pools: {
        byIp: { hashKey: 'ip', backends: urls },
        byClaim: { hashKey: 'claim:sub', backends: urls },
      },
    }),
  );
  return { backends, key, port: gw.port, metrics: () => gw.metrics() };
}

describe('claim:NAME as the hash key', () => {
  for (const path of ['/route', '/pool']) {
    it(`${path}: one user lands on one backend from any address; users spread over the pool`, async () => {
      const { backends, key, port } = await setup();
      const url = `ws://127.0.0.1:${port}${path}`;
      const homes = new Map<string, Set<string>>();
      for (let user = 0; user < 24; user++) {
        const token = await sign(key, { sub: `user-${user}` });
        const seen = new Set<string>();
        for (const from of ['127.0.0.1', '127.0.0.2', '127.0.0.3'])
          seen.add(await backendOf(backends, url, from, token));
        homes.set(`user-${user}`, seen);
      }
      for (const [user, seen] of homes) expect([...seen], user).toHaveLength(1);
      const used = new Set([...homes.values()].map((s) => [...s][0]));
      expect(used.size).toBeGreaterThanOrEqual(3);
    });
  }

  it('a route without a token on a claim-hashed pool keys on the client address, and counts the fallback', async () => {
    const { backends, port, metrics } = await setup();
    const url = `ws://127.0.0.1:${port}/open`;
    const first = await backendOf(backends, url, '127.0.0.9');
    for (let i = 0; i < 5; i++) expect(await backendOf(backends, url, '127.0.0.9')).toBe(first);
    expect(metricValue(await metrics(), 'wsgate_hash_key_fallbacks_total', { route: 'no-token' })).toBe(6);
  });
});
