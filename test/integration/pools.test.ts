// Pools that heal and rebalance, end to end on real sockets: a backend dies (its clients get 1014, new
// connections go elsewhere) and comes back (exactly its keys move back with 1012, paced), DNS discovery through
// a real UDP nameserver, the panic threshold, and 503 when a pool has no eligible backend.

import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type DnsStub, startDnsStub } from '../helpers/dns-stub.js';
import { type ConfigObject, metricValue, startGateway, type TestGateway } from '../helpers/gateway.js';
import { type PoolBackend, startPoolBackend } from '../helpers/pool-backend.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

function config(pool: ConfigObject): ConfigObject {
  return {
    listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
    admin: { address: '127.0.0.1', port: 0 },
    routes: [{ name: 'main', match: { path: '/' }, pool: 'main' }],
    pools: { main: { hashKey: 'header:x-user-id', ...pool } },
    timeouts: { handshake: '2s', idle: '60s', drain: '2s' },
  };
}

async function gateway(pool: ConfigObject): Promise<TestGateway> {
  const gw = await startGateway(config(pool));
  cleanups.push(() => gw.stop());
  return gw;
}

async function backend(id: string, options: { host?: string; port?: number } = {}): Promise<PoolBackend> {
  const b = await startPoolBackend(id, options);
  cleanups.push(() => b.kill());
  return b;
}

interface Client {
  readonly user: string;
  readonly ws: WebSocket;
  /** Backend id from the welcome message. */
  readonly backend: string;
  /** Close code and when it arrived (performance.now()), once closed. */
  closed?: { code: number; at: number };
}

function connect(port: number, user: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { 'x-user-id': user } });
    ws.once('message', (d) => {
      const client: Client = { user, ws, backend: (JSON.parse(d.toString()) as { backend: string }).backend };
      ws.once('close', (code) => {
        client.closed = { code, at: performance.now() };
      });
      cleanups.push(async () => ws.terminate());
      resolve(client);
    });
    ws.once('error', reject);
  });
}

async function connectAll(port: number, users: readonly string[]): Promise<Client[]> {
  const out: Client[] = [];
  for (const u of users) out.push(await connect(port, u));
  return out;
}

async function metric(gw: TestGateway, name: string, labels: Record<string, string>): Promise<number | undefined> {
  return metricValue(await gw.metrics(), name, labels);
}

const USERS = Array.from({ length: 40 }, (_, i) => `user-${i}`);

describe('a backend that dies and comes back', () => {
  it('1014 to its clients at once, new connections elsewhere, up=0; then exactly its keys move back, paced', async () => {
    const a = await backend('a');
    let b = await backend('b');
    const intervalMs = 500;
    const rate = 20;
    const gw = await gateway({
      backends: [a.url, b.url],
      healthCheck: {
        path: '/health',
        interval: `${intervalMs}ms`,
        timeout: '200ms',
        healthyThreshold: 2,
        unhealthyThreshold: 1,
      },
      rebalance: { mode: 'gradual', maxClosesPerSecond: rate },
    });
    const up = (x: PoolBackend) => metric(gw, 'wsgate_backend_up', { pool: 'main', backend: x.url });
    await waitFor(async () => (await up(b)) === 1, 3000, 'b up');

    const first = await connectAll(gw.port, USERS);
    const onB = first.filter((c) => c.backend === 'b');
    const onA = first.filter((c) => c.backend === 'a');
    expect(onB.length).toBeGreaterThan(5);
    expect(onA.length).toBeGreaterThan(5);

    // Kill b: its clients hear 1014 (bad gateway) well within one health interval; a's clients hear nothing.
    const killedAt = performance.now();
    await b.kill();
    await waitFor(() => onB.every((c) => c.closed), intervalMs, 'b clients closed');
    for (const c of onB) {
      expect(c.closed?.code).toBe(1014);
      expect(c.closed!.at - killedAt).toBeLessThan(intervalMs);
    }
    await waitFor(async () => (await up(b)) === 0, 3 * intervalMs, 'b down');
    expect(await metric(gw, 'wsgate_pool_backends', { pool: 'main', state: 'unhealthy' })).toBe(1);
    // Counted once each tunnel has fully ended.
    await waitFor(
      async () => ((await metric(gw, 'wsgate_closes_total', { code: '1014' })) ?? 0) >= onB.length,
      2000,
      '1014 closes counted',
    );

    // b's users reconnect and land on a; so do brand-new users whose key belongs to b.
    const moved = await connectAll(
      gw.port,
      onB.map((c) => c.user),
    );
    expect(moved.every((c) => c.backend === 'a')).toBe(true);

    // Bring b back on the same port: up again only after healthyThreshold passing checks.
    const successesBefore =
      (await metric(gw, 'wsgate_backend_health_checks_total', { backend: b.url, result: 'success' })) ?? 0;
    b = await backend('b', { port: b.port });
    await waitFor(async () => (await up(b)) === 1, 4 * intervalMs + 2000, 'b up again');
    const successes =
      ((await metric(gw, 'wsgate_backend_health_checks_total', { backend: b.url, result: 'success' })) ?? 0) -
      successesBefore;
    expect(successes).toBeGreaterThanOrEqual(2);

    // Gradual rebalancing: exactly the keys that map to b again are closed with 1012, at most `rate` per second.
    await waitFor(() => moved.every((c) => c.closed), (moved.length / rate) * 1000 + 3000, 'moved keys closed');
    for (const c of moved) expect(c.closed?.code).toBe(1012);
    for (const c of onA) expect(c.closed).toBeUndefined();
    const times = moved.map((c) => c.closed!.at).sort((x, y) => x - y);
    const span = times[times.length - 1]! - times[0]!;
    expect(span).toBeGreaterThanOrEqual(((times.length - 1) / rate) * 1000 * 0.8);
    for (let i = rate + 1; i < times.length; i++) expect(times[i]! - times[i - rate - 1]!).toBeGreaterThan(900);
    expect(await metric(gw, 'wsgate_rebalance_closes_total', { pool: 'main' })).toBe(moved.length);

    // And they come home.
    const home = await connectAll(
      gw.port,
      moved.map((c) => c.user),
    );
    expect(home.every((c) => c.backend === 'b')).toBe(true);
  }, 30_000);
});

describe('DNS discovery through a real UDP nameserver', () => {
  let stub: DnsStub;

  it('adds and removes backends as records change, and keeps the last set when lookups fail', async () => {
    stub = await startDnsStub();
    cleanups.push(() => stub.close());
    const a = await backend('a', { host: '127.0.0.1' });
    const b = await backend('b', { host: '127.0.0.2', port: a.port });
    stub.records.set('chat.test', ['127.0.0.1']);
    const gw = await gateway({
      discovery: { dns: 'chat.test', port: a.port, interval: '100ms', nameservers: [stub.server] },
      rebalance: { mode: 'off' },
    });
    const first = await connectAll(gw.port, USERS.slice(0, 10));
    expect(first.every((c) => c.backend === 'a')).toBe(true);

    stub.records.set('chat.test', ['127.0.0.1', '127.0.0.2']);
    await waitFor(async () => (await metric(gw, 'wsgate_backend_up', { backend: b.url })) === 1, 3000, 'b found');
    const spread = await connectAll(gw.port, USERS);
    expect(new Set(spread.map((c) => c.backend))).toEqual(new Set(['a', 'b']));

    // a leaves DNS: its connections are drained with 1012 within timeouts.drain, new ones all go to b.
    stub.records.set('chat.test', ['127.0.0.2']);
    const onA = [...first, ...spread].filter((c) => c.backend === 'a');
    await waitFor(() => onA.every((c) => c.closed), 4000, 'a drained');
    for (const c of onA) expect(c.closed?.code).toBe(1012);
    expect((await connectAll(gw.port, USERS.slice(0, 10))).every((c) => c.backend === 'b')).toBe(true);
    expect(await metric(gw, 'wsgate_backend_up', { backend: a.url })).toBeUndefined();

    // The nameserver fails: the last good set stays.
    stub.failing = true;
    const queried = stub.queries.length;
    await waitFor(() => stub.queries.length >= queried + 6, 5000, 'failed lookups');
    expect((await connectAll(gw.port, USERS.slice(0, 5))).every((c) => c.backend === 'b')).toBe(true);
  }, 30_000);
});

describe('eligibility', () => {
  const failingChecks = {
    path: '/health',
    interval: '100ms',
    timeout: '100ms',
    healthyThreshold: 1,
    unhealthyThreshold: 1,
  };

  it('panic threshold: when every health endpoint fails, half the pool still serves', async () => {
    const a = await backend('a');
    const b = await backend('b');
    a.healthStatus = 500;
    b.healthStatus = 500;
    const gw = await gateway({ backends: [a.url, b.url], healthCheck: failingChecks });
    await waitFor(
      async () => (await metric(gw, 'wsgate_pool_backends', { pool: 'main', state: 'unhealthy' })) === 2,
      3000,
      'both unhealthy',
    );
    expect(await metric(gw, 'wsgate_backend_up', { pool: 'main' })).toBe(0);
    const clients = await connectAll(gw.port, USERS.slice(0, 10));
    // One member stays in the ring and takes every key.
    expect(new Set(clients.map((c) => c.backend)).size).toBe(1);
  });

  it('a pool with no eligible backend answers 503 WSG_NO_HEALTHY_BACKEND', async () => {
    const a = await backend('a');
    a.healthStatus = 503;
    const gw = await gateway({ backends: [a.url], healthCheck: failingChecks, panicThreshold: 1 });
    await waitFor(async () => (await metric(gw, 'wsgate_backend_up', { backend: a.url })) === 0, 3000, 'a down');
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(503);
    expect(res.headers['x-wsgate-error']).toBe('WSG_NO_HEALTHY_BACKEND');
    res.socket.destroy();
    a.healthStatus = 200;
    await waitFor(async () => (await metric(gw, 'wsgate_backend_up', { backend: a.url })) === 1, 3000, 'a up');
    expect((await connect(gw.port, 'u')).backend).toBe('a');
  });

  it('passive ejection: a backend refusing connects is ejected and counted', async () => {
    const a = await backend('a');
    const dead = await backend('dead');
    await dead.kill();
    const gw = await gateway({ backends: [a.url, dead.url], outlier: { consecutiveFailures: 2, ejectFor: '10s' } });
    const clients = await connectAll(gw.port, USERS);
    expect(clients.every((c) => c.backend === 'a')).toBe(true);
    expect(await metric(gw, 'wsgate_backend_ejections_total', { backend: dead.url })).toBe(1);
    expect(await metric(gw, 'wsgate_pool_backends', { pool: 'main', state: 'ejected' })).toBe(1);
    // Ejected: no more attempts at it, so no more upstream errors.
    const errors = await metric(gw, 'wsgate_upstream_errors_total', { backend: dead.url });
    await connectAll(gw.port, USERS.slice(0, 10));
    expect(await metric(gw, 'wsgate_upstream_errors_total', { backend: dead.url })).toBe(errors);
  });
});
