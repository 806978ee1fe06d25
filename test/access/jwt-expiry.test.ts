// Tunnel deadlines through a running gateway: closeOnExpiry closes an open tunnel with 1008 "token expired" once
// the token's exp passes, timeouts.maxLifetime with 1001; both through the tunnel's one ending (close frames at a
// frame boundary, the backend told too) and counted in wsgate_lifetime_closes_total{route, reason}.

import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { echoBackendFor } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { expectNoLeaks, metricValue, simpleConfig, startGatewayFor } from '../helpers/gateway.js';
import { jwtAuth, makeKey, sign, writeJwks } from '../helpers/jwt.js';

const cleanups = cleanupAfterEach();

function opened(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), ms: performance.now() - started })),
  );
}

/** An echo backend behind a gateway whose one route ('chat') takes ES256 tokens, with or without closeOnExpiry. */
async function tokenGateway(closeOnExpiry: boolean) {
  const key = await makeKey('ES256', 'k1');
  const backend = await echoBackendFor(cleanups, 'b1');
  const auth = jwtAuth({ keys: writeJwks([key]) }, { clockSkew: '0s', ...(closeOnExpiry ? { closeOnExpiry } : {}) });
  const gw = await startGatewayFor(
    cleanups,
    simpleConfig([backend.url], { routes: [{ name: 'chat', match: { path: '/' }, pool: 'main', auth }] }),
  );
  return { key, backend, gw };
}

describe('closeOnExpiry', () => {
  it('closes an open tunnel with 1008 "token expired" when exp passes; the backend hears 1001', async () => {
    const { key, backend, gw } = await tokenGateway(true);
    const exp = Math.floor(Date.now() / 1000) + 2;
    const ws = await opened(`ws://127.0.0.1:${gw.port}/`, { Authorization: `Bearer ${await sign(key, {}, exp)}` });
    const backendSide = [...backend.sockets][0] as WebSocket;
    const backendClosed = new Promise<number>((resolve) => backendSide.once('close', (code) => resolve(code)));
    const end = await closed(ws);
    expect(end).toMatchObject({ code: 1008, reason: 'token expired' });
    // exp is whole seconds: the tunnel lived at most until exp, plus one sweep period.
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
    expect(Date.now()).toBeLessThan(exp * 1000 + 2000);
    expect(await backendClosed).toBe(1001);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_lifetime_closes_total', { route: 'chat', reason: 'token_expired' })).toBe(1);
    await expectNoLeaks(gw);
  });

  it('leaves a tunnel open past exp without closeOnExpiry', async () => {
    const { key, gw } = await tokenGateway(false);
    // Two seconds ahead, as above: exp is whole seconds, so "+1" can be a few ms away and refuse the handshake.
    const exp = Math.floor(Date.now() / 1000) + 2;
    const ws = await opened(`ws://127.0.0.1:${gw.port}/`, { Authorization: `Bearer ${await sign(key, {}, exp)}` });
    await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 1500));
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.close();
    await closed(ws);
  });
});

describe('timeouts.maxLifetime', () => {
  it('closes every tunnel with 1001 within [maxLifetime × (1 − jitter), maxLifetime], spread over that window', async () => {
    const backend = await echoBackendFor(cleanups, 'b1');
    const gw = await startGatewayFor(
      cleanups,
      simpleConfig([backend.url], { timeouts: { handshake: '2s', maxLifetime: '2s', maxLifetimeJitter: '50%' } }),
    );
    const sockets = await Promise.all(Array.from({ length: 20 }, () => opened(`ws://127.0.0.1:${gw.port}/`)));
    const ends = await Promise.all(sockets.map(closed));
    for (const end of ends) {
      expect(end).toMatchObject({ code: 1001, reason: 'max lifetime' });
      // One sweep period (≤ 500 ms here: a quarter of maxLifetime) late at most, generous for a loaded machine.
      expect(end.ms).toBeGreaterThan(900);
      expect(end.ms).toBeLessThan(3500);
    }
    const spread = Math.max(...ends.map((e) => e.ms)) - Math.min(...ends.map((e) => e.ms));
    expect(spread).toBeGreaterThan(200);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_lifetime_closes_total', { route: 'main', reason: 'max_lifetime' })).toBe(20);
    await expectNoLeaks(gw);
  });
});
