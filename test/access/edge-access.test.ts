// routes[].access through a running gateway, on real sockets: a denied or not-allowed client address gets 403
// WSG_ADDRESS_DENIED on ws://, wss:// and plain HTTP, counted in wsgate_access_denied_total{route,reason}, with no
// backend connection opened and nothing left admitted; deny is checked before allow; IPv6 and the IPv4-mapped
// addresses of a dual-stack listener meet the right entries; and the address checked is the real client's
// (listeners[].clientAddress: a PROXY v2 header, a trusted X-Forwarded-For), not the balancer's. A reload's new
// list applies to new connections and leaves open tunnels alone.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proxyHeaderFor } from '../../src/upstream/proxy-header.js';
import { startFileGateway } from '../control/support.js';
import { type Cleanup, runCleanups } from '../helpers/cleanups.js';
import { expectNoLeaks, metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { closesWithin } from '../helpers/raw-client.js';
import {
  type CountingBackend,
  countingBackend,
  expectPassed,
  expectRefused,
  type RequestOptions,
  send,
} from './edge-support.js';

const cleanups: Cleanup[] = [];
let backend: CountingBackend;
let gw: TestGateway;

const ROUTES = [
  { name: 'denied', match: { path: '/denied' }, pool: 'main', access: { deny: ['127.0.0.0/8'] } },
  { name: 'elsewhere', match: { path: '/elsewhere' }, pool: 'main', access: { allow: ['10.0.0.0/8'] } },
  {
    name: 'deny-first',
    match: { path: '/deny-first' },
    pool: 'main',
    access: { allow: ['127.0.0.0/8'], deny: ['127.0.0.1/32'] },
  },
  { name: 'v6', match: { path: '/v6' }, pool: 'main', access: { deny: ['::1/128'] } },
  { name: 'v4-only', match: { path: '/v4-only' }, pool: 'main', access: { allow: ['127.0.0.0/8'] } },
  { name: 'test-net', match: { path: '/test-net' }, pool: 'main', access: { deny: ['192.0.2.0/24'] } },
  { name: 'open', match: { path: '/' }, pool: 'main' },
];

function config(listeners: Record<string, unknown>[]) {
  const c = simpleConfig([backend.url], { limits: { maxConnections: 1000, maxConnectionsPerIp: 1000 } });
  c.listeners = listeners;
  c.routes = ROUTES;
  return c;
}

async function started(listeners: Record<string, unknown>[]): Promise<TestGateway> {
  const g = await startGateway(config(listeners));
  cleanups.push(() => g.stop());
  return g;
}

function portOf(g: TestGateway, name: string): number {
  const listener = g.gateway.boundListeners.find((l) => l.name === name);
  if (listener === undefined) throw new Error(`no listener ${name}`);
  return listener.port;
}

async function denials(g: TestGateway, route: string, reason: string): Promise<number> {
  return metricValue(await g.metrics(), 'wsgate_access_denied_total', { route, reason }) ?? 0;
}

/** A 403 WSG_ADDRESS_DENIED that opened no backend connection, counted once under `route` and `reason`. */
async function expectDenied(
  g: TestGateway,
  port: number,
  options: RequestOptions,
  route: string,
  reason: 'denied_address' | 'not_allowed_address',
): Promise<void> {
  const before = await denials(g, route, reason);
  await expectRefused(port, backend, options, 403, 'WSG_ADDRESS_DENIED');
  expect(await denials(g, route, reason)).toBe(before + 1);
}

beforeAll(async () => {
  backend = await countingBackend(cleanups);
  gw = await started([
    { name: 'public', address: '127.0.0.1', port: 0 },
    { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
  ]);
});

afterAll(() => runCleanups(cleanups));

describe('access lists on ws://, wss:// and plain HTTP', () => {
  const ways: [string, Pick<RequestOptions, 'kind' | 'tls'>, () => number][] = [
    ['ws:// upgrade', {}, () => gw.port],
    ['wss:// upgrade', { tls: {} }, () => gw.tlsPort],
    ['plain HTTP', { kind: 'get' }, () => gw.port],
    ['plain HTTPS', { kind: 'get', tls: {} }, () => gw.tlsPort],
  ];
  for (const [name, way, port] of ways) {
    it(`${name}: deny → 403 denied_address; allow without the address → 403 not_allowed_address; no backend`, async () => {
      await expectDenied(gw, port(), { ...way, path: '/denied?x=1' }, 'denied', 'denied_address');
      await expectDenied(gw, port(), { ...way, path: '/elsewhere' }, 'elsewhere', 'not_allowed_address');
      // The same gateway still lets the address through on a route without a list.
      const before = backend.seen.length;
      await expectPassed(port(), { ...way, path: '/' });
      expect(backend.seen.length).toBe(before + 1);
      await expectNoLeaks(gw);
    });
  }

  it('deny is checked before allow: 127.0.0.1 is denied though 127/8 is allowed; 127.0.0.2 passes', async () => {
    await expectDenied(gw, gw.port, { path: '/deny-first' }, 'deny-first', 'denied_address');
    await expectDenied(gw, gw.port, { path: '/deny-first', kind: 'get' }, 'deny-first', 'denied_address');
    await expectPassed(gw.port, { path: '/deny-first', from: '127.0.0.2' });
    await expectPassed(gw.port, { path: '/deny-first', from: '127.0.0.2', kind: 'get' });
    await expectNoLeaks(gw);
  });

  it('a refusal leaves nothing behind even when many come at once', async () => {
    const before = backend.accepted;
    const denied = await denials(gw, 'denied', 'denied_address');
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        expectRefused(
          gw.port,
          backend,
          { path: '/denied', kind: i % 2 ? 'get' : 'upgrade' },
          403,
          'WSG_ADDRESS_DENIED',
        ),
      ),
    );
    expect(await denials(gw, 'denied', 'denied_address')).toBe(denied + 50);
    await expectNoLeaks(gw);
    expect(backend.accepted).toBe(before);
  });
});

describe('IPv6 and dual-stack listeners', () => {
  let dual: TestGateway;
  beforeAll(async () => {
    dual = await started([
      { name: 'v6', address: '::1', port: 0 },
      { name: 'any', address: '::', port: 0 },
    ]);
  });

  it('an IPv6 client (::1) meets the IPv6 entries and not the IPv4 ones', async () => {
    const port = portOf(dual, 'v6');
    await expectDenied(dual, port, { host: '::1', path: '/v6' }, 'v6', 'denied_address');
    await expectDenied(dual, port, { host: '::1', path: '/v6', kind: 'get' }, 'v6', 'denied_address');
    await expectDenied(dual, port, { host: '::1', path: '/v4-only' }, 'v4-only', 'not_allowed_address');
    await expectPassed(port, { host: '::1', path: '/denied' });
    await expectNoLeaks(dual);
  });

  it('on a listener bound to ::, an IPv4 client is ::ffff:127.0.0.1 and meets the 127.0.0.0/8 entries', async () => {
    const port = portOf(dual, 'any');
    await expectDenied(dual, port, { path: '/denied' }, 'denied', 'denied_address');
    await expectDenied(dual, port, { path: '/denied', kind: 'get' }, 'denied', 'denied_address');
    await expectPassed(port, { path: '/v4-only' });
    await expectPassed(port, { path: '/v4-only', kind: 'get' });
    // The mapped address is not ::1: the IPv6 entry does not catch it, and an IPv6 client is not in 127/8.
    await expectPassed(port, { path: '/v6' });
    await expectDenied(dual, port, { host: '::1', path: '/v4-only' }, 'v4-only', 'not_allowed_address');
    await expectNoLeaks(dual);
  });
});

describe('the real client address (listeners[].clientAddress)', () => {
  const DENIED = { address: '192.0.2.7', port: 40000 };
  const ALLOWED = { address: '198.51.100.7', port: 40001 };
  const GATEWAY = { address: '127.0.0.1', port: 443 };
  let proxied: TestGateway;
  beforeAll(async () => {
    proxied = await started([
      {
        name: 'proxy-v2',
        address: '127.0.0.1',
        port: 0,
        clientAddress: { proxyProtocol: 'v2', trustedProxies: ['127.0.0.1/32'] },
      },
      {
        name: 'xff',
        address: '127.0.0.1',
        port: 0,
        clientAddress: { forwardedFor: true, trustedProxies: ['127.0.0.1/32'] },
      },
    ]);
  });

  it('a PROXY v2 header naming a denied address is refused 403; another address passes', async () => {
    const port = portOf(proxied, 'proxy-v2');
    const header = (who: typeof DENIED) => proxyHeaderFor('v2', who, GATEWAY);
    for (const kind of ['upgrade', 'get'] as const) {
      await expectDenied(
        proxied,
        port,
        { kind, path: '/test-net', preamble: header(DENIED) },
        'test-net',
        'denied_address',
      );
      await expectPassed(port, { kind, path: '/test-net', preamble: header(ALLOWED) });
      // /v4-only allows 127/8 only: the balancer's own address would pass, the client's does not.
      const notAllowed = { kind, path: '/v4-only', preamble: header(ALLOWED) };
      await expectDenied(proxied, port, notAllowed, 'v4-only', 'not_allowed_address');
      // /denied denies 127/8: the balancer is in it, the clients it speaks for are not.
      await expectPassed(port, { kind, path: '/denied', preamble: header(DENIED) });
    }
    await expectNoLeaks(proxied);
  });

  it('a trusted X-Forwarded-For is the address checked', async () => {
    const port = portOf(proxied, 'xff');
    const xff = { 'X-Forwarded-For': DENIED.address };
    await expectDenied(proxied, port, { path: '/test-net', headers: xff }, 'test-net', 'denied_address');
    await expectDenied(proxied, port, { path: '/v4-only', headers: xff }, 'v4-only', 'not_allowed_address');
    await expectPassed(port, { path: '/denied', headers: xff, kind: 'get' });
    await expectNoLeaks(proxied);
  });
});

describe('reload', () => {
  it('a new access list applies to new connections; tunnels already open stay open', async () => {
    const config = simpleConfig([backend.url]);
    const gw = await startFileGateway(config);
    cleanups.push(() => gw.stop());
    const open = await send(gw.port(), { path: '/' });
    expect(open.status).toBe(101);
    gw.write({
      ...config,
      routes: [{ name: 'main', match: { path: '/' }, pool: 'main', access: { deny: ['127.0.0.0/8'] } }],
    });
    expect((await gw.control.reload('admin')).ok).toBe(true);
    await expectRefused(gw.port(), backend, { path: '/' }, 403, 'WSG_ADDRESS_DENIED');
    await expectRefused(gw.port(), backend, { path: '/', kind: 'get' }, 403, 'WSG_ADDRESS_DENIED');
    expect(await closesWithin(open.socket, 300)).toBe(false);
    gw.write(config);
    expect((await gw.control.reload('admin')).ok).toBe(true);
    await expectPassed(gw.port(), { path: '/' });
    open.socket.destroy();
  });
});
