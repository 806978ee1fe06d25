// routes[].auth.jwt.keys as an https:// JWKS URL, through a running gateway: the JWKS comes from a local HTTPS
// server (a CA made at test time, trusted through keysCa) that the tests stop, restart, slow down and break.
// Cached keys keep working while it is down; an unknown kid is answered 401 quickly, never hung; a kid the copy
// lacks is fetched for at most once per 30 s; a failed fetch keeps the copy; a known kid never waits for a fetch.
//
// performance.now() (the JWKS cache's clock) is faked so the 30 s cooldown and the 5 min refresh can be crossed
// at will; timers and sockets stay real.

import { request } from 'node:http';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { REFETCH_COOLDOWN_MS, REFRESH_AFTER_MS } from '../../src/access/jwt/jwks-remote.js';
import { MAX_JWKS_BYTES, MAX_JWKS_KEYS } from '../../src/config/jwks-file.js';
import { parseConfig } from '../../src/config/load.js';
import { echoBackendFor, type TestBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { expectNoLeaks, metricValue, simpleConfig, startGatewayFor, type TestGateway } from '../helpers/gateway.js';
import { type JwksServer, jwtAuth, makeKey, sign, startJwksServer, type TestKey } from '../helpers/jwt.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

/** An unknown kid is answered within this, also while the JWKS server is down or hangs (its fetch timeout is 3 s). */
const QUICK_REFUSAL_MS = 5000;

let current: TestKey;
let next: TestKey;

beforeAll(async () => {
  current = await makeKey('ES256', 'current');
  next = await makeKey('RS256', 'next');
});

const cleanups = cleanupAfterEach();
// Registered after the cleanups: vitest runs afterEach hooks last-registered first, so the real clock is back
// before the gateway stops (its drain loop reads performance.now()).
afterEach(() => {
  vi.useRealTimers();
});

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['performance'] });
});

interface Setup {
  readonly gw: TestGateway;
  readonly jwks: JwksServer;
  readonly backend: TestBackend;
}

function configWith(jwks: JwksServer, backend: TestBackend, route: Record<string, unknown> = {}) {
  return simpleConfig([backend.url], {
    listeners: [
      { name: 'public', address: '127.0.0.1', port: 0 },
      { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
    ],
    routes: [
      {
        name: 'chat',
        match: { path: '/' },
        pool: 'main',
        auth: jwtAuth({ keys: jwks.url }, { keysCa: jwks.caFile }),
        ...route,
      },
    ],
  });
}

async function setup(mode: JwksServer['mode'] = 'serve'): Promise<Setup> {
  const jwks = await startJwksServer([current], cleanups);
  jwks.mode = mode;
  const backend = await echoBackendFor(cleanups, 'b1');
  const gw = await startGatewayFor(cleanups, configWith(jwks, backend));
  if (mode === 'serve') await waitFor(() => jwks.requests === 1, 5000, 'the first JWKS fetch');
  return { gw, jwks, backend };
}

/** The status of an upgrade with `token`, and how long the answer took; the socket is closed either way. */
async function upgradeWith(port: number, token: string, tls = false): Promise<{ status: number; ms: number }> {
  const started = Date.now();
  const res = await rawUpgrade(port, { tls, headers: { Authorization: `Bearer ${token}` } });
  res.socket.destroy();
  return { status: res.status, ms: Date.now() - started };
}

function plainGet(port: number, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/poll', headers: { Authorization: `Bearer ${token}` } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Moves the JWKS cache's clock on by `ms`. */
function advance(ms: number): void {
  vi.advanceTimersByTime(ms);
}

describe('a JWKS URL', () => {
  it('is fetched at start; its keys verify upgrades on ws:// and wss:// and plain HTTP requests', async () => {
    const { gw, jwks, backend } = await setup();
    const token = await sign(current);
    expect(await upgradeWith(gw.port, token)).toMatchObject({ status: 101 });
    expect(await upgradeWith(gw.tlsPort, token, true)).toMatchObject({ status: 101 });
    const ws = new WebSocket(`wss://127.0.0.1:${gw.tlsPort}/`, {
      headers: { Authorization: `Bearer ${token}` },
      rejectUnauthorized: false,
    });
    const welcome = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d) => resolve(d.toString()));
      ws.once('error', reject);
    });
    expect(JSON.parse(welcome)).toEqual({ backend: 'b1' });
    ws.close();
    expect(await plainGet(gw.port, token)).toBe(200);
    expect(await plainGet(gw.port, await sign(next))).toBe(401);
    expect(backend.requests.length).toBe(3); // upgrades
    // One fetch at start served all of these.
    expect(jwks.requests).toBe(1);
    await expectNoLeaks(gw);
  });

  it('while the server is down: cached keys keep working, an unknown kid gets a quick 401, and so it stays after the restart until a fetch brings the kid', async () => {
    const { gw, jwks, backend } = await setup();
    await jwks.stop();
    expect(await upgradeWith(gw.port, await sign(current))).toMatchObject({ status: 101 });
    // Within the cooldown of the start's fetch: refused without trying.
    const early = await upgradeWith(gw.port, await sign(next));
    expect(early.status).toBe(401);
    expect(early.ms).toBeLessThan(QUICK_REFUSAL_MS);
    // Past the cooldown: one fetch is tried, is refused by the dead port, and the answer is still a quick 401.
    advance(REFETCH_COOLDOWN_MS + 1000);
    const tried = await upgradeWith(gw.port, await sign(next));
    expect(tried.status).toBe(401);
    expect(tried.ms).toBeLessThan(QUICK_REFUSAL_MS);
    // The failed fetch kept the copy.
    expect(await upgradeWith(gw.port, await sign(current))).toMatchObject({ status: 101 });
    expect(await plainGet(gw.port, await sign(current))).toBe(200);

    // Back up, now with the rotated key: the cooldown from the failed try still holds the kid off...
    jwks.serve([current, next]);
    await jwks.start();
    expect((await upgradeWith(gw.port, await sign(next))).status).toBe(401);
    expect(jwks.requests).toBe(1);
    // ...until it passes: then one fetch, and the new kid opens.
    advance(REFETCH_COOLDOWN_MS + 1000);
    expect((await upgradeWith(gw.port, await sign(next))).status).toBe(101);
    expect(jwks.requests).toBe(2);
    // The upgrades that opened (plain requests are not counted here): none of the refused ones reached it.
    expect(backend.requests.length).toBe(3);
    const metrics = await gw.metrics();
    expect(metricValue(metrics, 'wsgate_auth_results_total', { route: 'chat', result: 'unknown_key' })).toBe(3);
    await expectNoLeaks(gw);
  });

  it('fetches for an unknown kid at most once per 30 s, however many tokens carry one', async () => {
    const { gw, jwks, backend } = await setup();
    const strangers = await Promise.all(['s1', 's2', 's3'].map((kid) => makeKey('ES256', kid)));
    for (let round = 1; round <= 3; round++) {
      advance(REFETCH_COOLDOWN_MS + 1000);
      const answers = await Promise.all(
        strangers.flatMap((k) => [sign(k), sign(k)]).map(async (t) => (await upgradeWith(gw.port, await t)).status),
      );
      expect(answers).toEqual(answers.map(() => 401));
      // A burst within one cooldown: one fetch in all.
      expect(jwks.requests).toBe(1 + round);
      advance(REFETCH_COOLDOWN_MS - 1000);
      expect((await upgradeWith(gw.port, await sign(strangers[0] as TestKey))).status).toBe(401);
      expect(jwks.requests).toBe(1 + round);
    }
    expect(backend.requests.length).toBe(0);
    await expectNoLeaks(gw);
  });

  /** Past the cooldown, an unknown kid makes one fetch, which fails: a quick 401, and the cached keys still work. */
  async function expectFetchFailedButCopyKept(gw: { port: number }, jwks: { requests: number }): Promise<void> {
    advance(REFETCH_COOLDOWN_MS + 1000);
    const before = jwks.requests;
    const unknown = await upgradeWith(gw.port, await sign(next));
    expect(unknown.status).toBe(401);
    expect(unknown.ms).toBeLessThan(QUICK_REFUSAL_MS);
    expect(jwks.requests).toBe(before + 1);
    expect((await upgradeWith(gw.port, await sign(current))).status).toBe(101);
  }

  it('keeps the copy when a fetch fails with 500, hangs, or trickles in byte by byte', async () => {
    const { gw, jwks } = await setup();
    for (const mode of ['fail', 'hang', 'drip'] as const) {
      jwks.mode = mode;
      await expectFetchFailedButCopyKept(gw, jwks);
    }
    await expectNoLeaks(gw);
  });

  it(`refuses a fetched JWKS over ${MAX_JWKS_KEYS} keys or ${MAX_JWKS_BYTES} bytes, or not a JWKS, and keeps the copy`, async () => {
    const { gw, jwks } = await setup();
    const many = { keys: Array.from({ length: MAX_JWKS_KEYS + 1 }, (_, i) => ({ ...next.publicJwk, kid: `k${i}` })) };
    const huge = JSON.stringify({ keys: [next.publicJwk], pad: 'x'.repeat(MAX_JWKS_BYTES) });
    for (const text of [JSON.stringify(many), huge, '<html>', JSON.stringify({ keys: {} })]) {
      jwks.serveText(text);
      await expectFetchFailedButCopyKept(gw, jwks);
    }
    await expectNoLeaks(gw);
  });

  it('never makes a known kid wait for a fetch: not for a kid fetch in flight, not for the periodic refresh', async () => {
    const { gw, jwks } = await setup();
    jwks.mode = 'hang';
    advance(REFETCH_COOLDOWN_MS + 1000);
    // An unknown kid starts a fetch that hangs (until the fetch timeout)...
    let unknownAnswered = false;
    const unknown = upgradeWith(gw.port, await sign(next)).then((r) => {
      unknownAnswered = true;
      return r;
    });
    await waitFor(() => jwks.requests === 2, 5000, 'the fetch for the unknown kid');
    // ...while a known kid opens at once.
    const known = await upgradeWith(gw.port, await sign(current));
    expect(known.status).toBe(101);
    expect(unknownAnswered).toBe(false);
    expect((await unknown).status).toBe(401);

    // The copy is stale after 5 minutes: the next known kid starts a refresh in the background and does not wait.
    advance(REFRESH_AFTER_MS + 1000);
    const stale = await upgradeWith(gw.port, await sign(current));
    expect(stale.status).toBe(101);
    await waitFor(() => jwks.requests === 3, 5000, 'the background refresh');
    const during = await upgradeWith(gw.port, await sign(current));
    expect(during.status).toBe(101);
    expect(during.ms).toBeLessThan(1000);
    await expectNoLeaks(gw);
  });

  it('a reload that changes the route keeps the cached keys: the server may be down meanwhile', async () => {
    const { gw, jwks, backend } = await setup();
    await jwks.stop();
    const changed = configWith(jwks, backend, { origins: ['https://app.example'] });
    await gw.gateway.reload(parseConfig(stringify(changed), '/virtual/wsgate-test.yaml'));
    const res = await rawUpgrade(gw.port, {
      headers: { Authorization: `Bearer ${await sign(current)}`, Origin: 'https://app.example' },
    });
    res.socket.destroy();
    expect(res.status).toBe(101);
    // A route using the same URL shares the copy and its fetches.
    expect(jwks.requests).toBe(1);
    await expectNoLeaks(gw);
  });

  it('a server that hangs from the start: a token waits for that first fetch at most its timeout, then 401', async () => {
    const { gw, jwks } = await setup('hang');
    await waitFor(() => jwks.requests === 1, 5000, 'the first JWKS fetch');
    const answer = await upgradeWith(gw.port, await sign(current));
    expect(answer.status).toBe(401);
    expect(answer.ms).toBeLessThan(QUICK_REFUSAL_MS);
    await expectNoLeaks(gw);
  });
});
