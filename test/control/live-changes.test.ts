// Live changes with connections open: reloads that change pools and routes (who moves, with which close code,
// what /metrics keeps), DNS churn, reloads under traffic, and a shutdown with a handshake still in flight. Real
// sockets, and a real process where signals matter.

import { beforeAll, describe, expect, it } from 'vitest';
import type { ReloadSummary } from '../../src/gateway/gateway.js';
import { startEchoBackend, startRawBackend, type TestBackend } from '../helpers/backends.js';
import { ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { startDnsStub } from '../helpers/dns-stub.js';
import { type ConfigObject, metricValue, startGateway } from '../helpers/gateway.js';
import { switchingProtocols } from '../helpers/hostile-backends.js';
import { type PoolBackend, startPoolBackend } from '../helpers/pool-backend.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';
import { admin, type Client, connectClient, type FileGateway, startFileGateway } from './support.js';

const cleanups = cleanupAfterEach();

async function echo(id: string): Promise<TestBackend> {
  const b = await startEchoBackend(id);
  cleanups.push(() => b.close());
  return b;
}

async function poolBackend(id: string, options: { host?: string; port?: number } = {}): Promise<PoolBackend> {
  const b = await startPoolBackend(id, options);
  cleanups.push(() => b.kill());
  return b;
}

async function fileGateway(config: ConfigObject, files: Record<string, string> = {}): Promise<FileGateway> {
  const gw = await startFileGateway(config, { files });
  cleanups.push(() => gw.stop());
  return gw;
}

async function clients(port: number, users: readonly string[], path = '/'): Promise<(Client & { user: string })[]> {
  const out = await Promise.all(
    users.map(async (user) =>
      Object.assign(await connectClient(`ws://127.0.0.1:${port}${path}`, { 'x-user-id': user }), { user }),
    ),
  );
  cleanups.push(() => {
    for (const c of out) c.ws.terminate();
  });
  return out;
}

function base(pools: Record<string, ConfigObject>, routes: ConfigObject[], extra: ConfigObject = {}): ConfigObject {
  return {
    listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
    admin: { address: '127.0.0.1', port: 0 },
    routes,
    pools,
    limits: { maxConnections: 10_000, maxConnectionsPerIp: 5000 },
    timeouts: { handshake: '2s', idle: '5m', drain: '2s' },
    ...extra,
  };
}

const USERS = Array.from({ length: 40 }, (_, i) => `user-${i}`);

// ── Config errors ──────────────────────────────────────────────────────────────────────────────

const mainRoute = { name: 'main', match: { path: '/' }, pool: 'main' };

async function reload(gw: FileGateway) {
  const answer = await admin(gw.adminPort, '/reload', { method: 'POST', accept: 'application/json' });
  return {
    status: answer.status,
    text: answer.text,
    body: answer.json<{ ok: boolean; generation: number; changes: ReloadSummary; errors?: string[] }>(),
  };
}

describe('reload changes a live pool', () => {
  it('adding a backend: exactly the keys that moved get 1012 (counted), the rest stay; removing it sends them back with 1012', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const pool = (backends: string[]) => ({
      main: { hashKey: 'header:x-user-id', backends, rebalance: { maxClosesPerSecond: 1000 } },
    });
    const gw = await fileGateway(base(pool([a.url]), [mainRoute]));
    const live = await clients(gw.port(), USERS);
    expect(live.every((c) => c.backend === 'a')).toBe(true);

    gw.write(base(pool([a.url, b.url]), [mainRoute]));
    const r = await reload(gw);
    expect(r.status, r.text).toBe(200);
    expect(r.body.changes.pools.changed).toEqual(['main']);
    expect(r.body.changes.draining).toBe(0);
    // Which keys now belong to b: ask the pool's ring.
    const p = gw.gateway.runtime.pools.get('main');
    const owners = new Map(USERS.map((u) => [u, p?.pick(u)?.backend.id]));
    const moving = live.filter((c) => owners.get(c.user) === b.url);
    expect(moving.length).toBeGreaterThan(0);
    await waitFor(() => moving.every((c) => c.closeCode !== undefined), 3000, 'moved keys closed');
    await delay(200);
    for (const c of moving) expect(c.closeCode).toBe(1012);
    const staying = live.filter((c) => !moving.includes(c));
    expect(staying.every((c) => c.closeCode === undefined)).toBe(true);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_rebalance_closes_total', { pool: 'main' })).toBe(moving.length);
    expect(metricValue(text, 'wsgate_closes_total', { route: 'main', code: '1012', initiator: 'proxy' })).toBe(
      moving.length,
    );
    // They reconnect to the new owner.
    const back = await clients(
      gw.port(),
      moving.map((c) => c.user),
    );
    expect(back.every((c) => c.backend === 'b')).toBe(true);
  }, 20_000);

  it("renaming a route drains its tunnels with 1001, and the old name's series do not stay in /metrics and /api/status forever", async () => {
    const a = await echo('a');
    const gw = await fileGateway(base({ main: { hashKey: 'header:x-user-id', backends: [a.url] } }, [mainRoute]));
    const live = await clients(gw.port(), USERS.slice(0, 5));
    gw.write(base({ main: { hashKey: 'header:x-user-id', backends: [a.url] } }, [{ ...mainRoute, name: 'chat' }]));
    const r = await reload(gw);
    expect(r.status, r.text).toBe(200);
    expect(r.body.changes.routes).toMatchObject({ added: ['chat'], removed: ['main'] });
    expect(r.body.changes.draining).toBe(5);
    await waitFor(() => live.every((c) => c.closeCode !== undefined), 3000, 'drained');
    expect(live.map((c) => c.closeCode)).toEqual([1001, 1001, 1001, 1001, 1001]);
    const status = (await admin(gw.adminPort, '/api/status')).json<{ routes: { name: string }[] }>();
    expect(status.routes.map((x) => x.name)).toEqual(['chat']);
    // The gauge of a route that no longer exists: still exported (at 0) forever?
    await waitFor(() => gw.gateway.tunnels.size === 0, 3000, 'tunnels gone');
    const text = await gw.metrics();
    expect(
      text.split('\n').filter((l) => l.startsWith('wsgate_connections_active{') && l.includes('route="main"')),
    ).toEqual([]);
  }, 20_000);
});

describe('series of backends that left', () => {
  it('DNS churn: a backend gone from the records leaves no wsgate_connections_active series behind (labels stay bounded)', async () => {
    const stub = await startDnsStub();
    cleanups.push(() => stub.close());
    const server = await poolBackend('any', { host: '0.0.0.0' });
    const addresses = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6'];
    stub.records.set('chat.test', [addresses[0] as string]);
    const gw = await startGateway(
      base(
        {
          main: {
            hashKey: 'header:x-user-id',
            discovery: { dns: 'chat.test', port: server.port, interval: '100ms', nameservers: [stub.server] },
          },
        },
        [mainRoute],
      ),
    );
    cleanups.push(() => gw.stop());
    for (const address of addresses) {
      const id = `ws://${address}:${server.port}`;
      stub.records.set('chat.test', [address]);
      await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_backend_up', { backend: id }) === 1, 3000, id);
      const [c] = await clients(gw.port, ['u']);
      await c?.echo('hi');
      c?.ws.close();
      await c?.closed();
    }
    await waitFor(() => gw.gateway.tunnels.size === 0, 3000, 'closed');
    const text = await gw.metrics();
    const upSeries = text.split('\n').filter((l) => l.startsWith('wsgate_backend_up{'));
    expect(upSeries).toHaveLength(1); // the pool withdraws its own series of a removed backend
    const activeSeries = text.split('\n').filter((l) => l.startsWith('wsgate_connections_active{'));
    // In Kubernetes every rollout brings new pod IPs: series (and the Metrics maps behind them) of every address
    // ever seen would grow without bound. Only the live backend's series should remain.
    expect(activeSeries, activeSeries.join('\n')).toHaveLength(1);
  }, 20_000);
});

describe('reload under traffic', () => {
  it('two reloads in quick succession both succeed, in order, and the last file wins', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const gw = await fileGateway(base({ main: { backends: [a.url] } }, [mainRoute]));
    const live = await clients(gw.port(), ['x']);
    gw.write(
      base({ main: { backends: [a.url] }, other: { backends: [b.url] } }, [
        { name: 'one', match: { path: '/one' }, pool: 'other' },
        mainRoute,
      ]),
    );
    const first = reload(gw);
    gw.write(
      base({ main: { backends: [a.url] }, other: { backends: [b.url] } }, [
        { name: 'two', match: { path: '/two' }, pool: 'other' },
        mainRoute,
      ]),
    );
    const second = reload(gw);
    const [r1, r2] = await Promise.all([first, second]);
    expect([r1.status, r2.status], `${r1.text}\n${r2.text}`).toEqual([200, 200]);
    expect([r1.body.generation, r2.body.generation]).toEqual([2, 3]);
    expect(gw.gateway.config.routes.map((r) => r.name)).toEqual(['two', 'main']);
    expect((await rawUpgrade(gw.port(), { path: '/two' })).status).toBe(101);
    expect((await rawUpgrade(gw.port(), { path: '/one' })).status).toBe(101); // falls through to main ('/')
    expect(await live[0]?.echo('still')).toBe('still');
  });

  it('a burst of handshakes across a reload that changes the pool: every one gets 101, none 5xx', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const gw = await fileGateway(base({ main: { hashKey: 'header:x-user-id', backends: [a.url] } }, [mainRoute]));
    gw.write(
      base({ main: { hashKey: 'header:x-user-id', backends: [a.url, b.url], rebalance: { mode: 'off' } } }, [
        mainRoute,
      ]),
    );
    const burst = Array.from({ length: 120 }, (_, i) =>
      delay(i % 40).then(() => rawUpgrade(gw.port(), { path: '/', headers: { 'x-user-id': `burst-${i}` } })),
    );
    const r = reload(gw);
    const answers = await Promise.all(burst);
    for (const ans of answers) ans.socket.destroy();
    expect((await r).status).toBe(200);
    const statuses = answers.map((x) => x.status);
    expect(
      statuses.filter((s) => s !== 101),
      statuses.join(','),
    ).toEqual([]);
  });
});

// ── Drain (the built CLI in a child process) ───────────────────────────────────────────────────

describe('SIGTERM with a handshake in flight to a slow backend', () => {
  beforeAll(ensureBuilt, 120_000);

  it('the in-flight upgrade gets 503 (or 101 then 1001), nothing hangs, exit 0 within timeouts.drain', async () => {
    const slow = await startRawBackend((request, socket) => {
      setTimeout(() => socket.write(switchingProtocols(request)), 800);
      return undefined;
    });
    cleanups.push(() => slow.close());
    const cli = runCli(
      writeConfig(
        base({ main: { backends: [slow.url] } }, [mainRoute], {
          timeouts: { handshake: '3s', idle: '5m', drain: '2s' },
          log: { level: 'info' },
        }),
      ),
    );
    cleanups.push(() => cli.kill('SIGKILL'));
    const { port, adminPort } = await cli.ready();
    const inFlight = rawUpgrade(port, { path: '/' });
    await delay(200);
    const signalled = performance.now();
    cli.kill('SIGTERM');
    await waitFor(
      async () => (await admin(adminPort, '/readyz').catch(() => ({ status: 0 }))).status !== 200,
      500,
      'unready',
    );
    const answer = await inFlight.catch((err: Error) => err);
    const exit = await cli.exited;
    expect(exit.code, cli.lines.slice(-5).join('\n')).toBe(0);
    expect(exit.atMs - signalled).toBeLessThan(2600);
    // docs/operations.md: "exits 0 when all are closed or at the deadline"; src/tunnel/drain.ts adopts "a handshake that was in
    // flight when accepting stopped". The client must get an answer: 503 WSG_SHUTTING_DOWN, or 101 then 1001.
    expect(
      answer instanceof Error
        ? `no answer: ${answer.message}; exited ${Math.round(exit.atMs - signalled)} ms after SIGTERM`
        : answer.status,
    ).toBeOneOf([503, 101]);
    if (answer instanceof Error) return;
    if (answer.status === 503) expect(answer.headers['x-wsgate-error']).toBe('WSG_SHUTTING_DOWN');
    else {
      const after = await new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [answer.rest];
        answer.socket.on('data', (c) => chunks.push(c));
        answer.socket.on('close', () => resolve(Buffer.concat(chunks)));
        answer.socket.on('error', () => resolve(Buffer.concat(chunks)));
      });
      expect(after.subarray(0, 4).equals(Buffer.from([0x88, 0x02, 0x03, 0xe9])), after.toString('hex')).toBe(true);
    }
  }, 20_000);
});

// ── Hash keys ──────────────────────────────────────────────────────────────────────────────────

describe('hashKey on a header the request lacks', () => {
  it('falls back to the client IP (same backend for every such request) and counts each fallback', async () => {
    const backends = await Promise.all(['a', 'b', 'c'].map((id) => echo(id)));
    const gw = await startGateway(
      base({ main: { hashKey: 'header:x-room', backends: backends.map((b) => b.url) } }, [mainRoute]),
    );
    cleanups.push(() => gw.stop());
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const c = await connectClient(`ws://127.0.0.1:${gw.port}/`, { 'x-user-id': `u${i}` });
      seen.add(c.backend);
      c.ws.terminate();
    }
    expect(seen.size).toBe(1);
    expect(metricValue(await gw.metrics(), 'wsgate_hash_key_fallbacks_total', { route: 'main' })).toBe(6);
  });
});
