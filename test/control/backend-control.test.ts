// Runtime control of backends through the admin API, on the real CLI with `workers: 1` and `workers: 2`: drain
// under 1,000 live connections (none closed, none new on the drained backend, affinity cookies re-pointed), disable
// (paced 1012s, every client back elsewhere), a runtime weight (the share of new connections follows it), the state
// kept across a reload and said so in its log line, and the API's refusals (401, 404, 400, 405).

import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { BackendView } from '../../src/gateway/backend-control.js';
import type { PoolStatus } from '../../src/gateway/process-status.js';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { type CliProcess, ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, metricValue, simpleConfig } from '../helpers/gateway.js';
import { delay, waitFor } from '../helpers/wait.js';
import { admin, type Client, connectClient, upgrade } from './support.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();
const TOKEN = 'test-admin-token-0123456789';
const COOKIE = 'WSGATE_AFFINITY';

async function echo(id: string): Promise<TestBackend> {
  const b = await startEchoBackend(id);
  cleanups.push(() => b.close());
  return b;
}

function config(backends: readonly TestBackend[], workers: number, pool: ConfigObject = {}): ConfigObject {
  const urls = backends.map((b) => b.url);
  return simpleConfig(urls, {
    workers,
    admin: { address: '127.0.0.1', port: 0, token: TOKEN },
    limits: { maxConnections: 5000, maxConnectionsPerIp: 5000 },
    timeouts: { handshake: '10s', idle: '5m', drain: '2s' },
    // Opening 1,000 connections on a loaded machine can time out a few backend handshakes; the states asserted here
    // are the operator's, so passive ejection must not flip a backend under the test.
    pools: {
      main: {
        hashKey: 'header:x-user-id',
        backends: urls,
        sticky: { cookie: COOKIE },
        outlier: { consecutiveFailures: 1000 },
        ...pool,
      },
    },
  });
}

async function start(cfg: ConfigObject): Promise<{ cli: CliProcess; port: number; adminPort: number; file: string }> {
  const file = writeConfig(cfg);
  const cli = runCli(file, ['--no-watch']);
  cleanups.push(() => cli.kill('SIGKILL'));
  onTestFailed(() => {
    process.stderr.write(`wsgate output:\n${cli.lines.slice(-80).join('\n')}\n`);
  });
  const { port, adminPort } = await cli.ready();
  return { cli, port, adminPort, file };
}

/** POSTs `body` (a string as it is, anything else as JSON) with `token` (null: none). */
async function post(adminPort: number, path: string, body: unknown, token: string | null = TOKEN) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: <T>() => JSON.parse(text) as T };
}

async function setBackend(adminPort: number, backend: TestBackend, body: unknown): Promise<BackendView> {
  const answer = await post(adminPort, `/api/pools/main/backends/127.0.0.1:${backend.port}`, body);
  expect(answer.status, answer.text).toBe(200);
  return answer.json<BackendView>();
}

async function pools(adminPort: number): Promise<PoolStatus[]> {
  const answer = await admin(adminPort, '/api/pools', { token: TOKEN });
  expect(answer.status, answer.text).toBe(200);
  return answer.json<{ pools: PoolStatus[] }>().pools;
}

function backendIn(list: readonly PoolStatus[], backend: TestBackend) {
  const found = list[0]?.backends.find((b) => b.address === `127.0.0.1:${backend.port}`);
  if (!found) throw new Error(`backend ${backend.port} not listed`);
  return found;
}

/** Opens `n` clients with user ids `prefix0…`, `batch` at a time. */
async function openClients(url: string, n: number, prefix: string, batch = 100): Promise<Client[]> {
  const clients: Client[] = [];
  for (let i = 0; i < n; i += batch) {
    const size = Math.min(batch, n - i);
    const opened = await Promise.all(
      Array.from({ length: size }, (_, j) => connectClient(url, { 'x-user-id': `${prefix}${i + j}` })),
    );
    clients.push(...opened);
  }
  cleanups.push(() => {
    for (const c of clients) c.ws.terminate();
  });
  return clients;
}

function cookiePair(setCookie: string | string[] | undefined): string | undefined {
  const all = Array.isArray(setCookie) ? setCookie : setCookie === undefined ? [] : [setCookie];
  return all.find((c) => c.startsWith(`${COOKIE}=`))?.split(';')[0];
}

describe.each([1, 2])('workers: %i', (workers) => {
  it('drain under 1,000 live connections: none closed, none new on it, affinity cookies re-pointed', async () => {
    const [a, b, c] = [await echo('a'), await echo('b'), await echo('c')];
    const { port, adminPort } = await start(config([a, b, c], workers));
    const url = `ws://127.0.0.1:${port}/`;
    // A cookie that names `a`, from an answer a picked.
    let cookieForA: string | undefined;
    for (let i = 0; cookieForA === undefined && i < 100; i++) {
      const answer = await upgrade(url, { 'x-user-id': `probe${i}` });
      if (answer.backend === 'a') cookieForA = cookiePair(answer.headers['set-cookie']);
    }
    expect(cookieForA).toBeDefined();

    const clients = await openClients(url, 1000, 'live');
    const onA = clients.filter((cl) => cl.backend === 'a').length;
    expect(onA).toBeGreaterThan(150);
    const upgradesOnA = a.requests.length;

    const view = await setBackend(adminPort, a, { state: 'drain' });
    expect(view).toMatchObject({ pool: 'main', address: `127.0.0.1:${a.port}`, adminState: 'drain', active: onA });

    const fresh = await openClients(url, 200, 'fresh', 50);
    expect(fresh.filter((cl) => cl.backend === 'a')).toHaveLength(0);
    expect(a.requests.length).toBe(upgradesOnA);
    // The cookie naming the drained backend is stale now: the client goes elsewhere and gets a new cookie.
    const pinned = await upgrade(url, { 'x-user-id': 'probe-cookie', cookie: cookieForA as string });
    expect(pinned.backend).not.toBe('a');
    const repointed = cookiePair(pinned.headers['set-cookie']);
    expect(repointed).toBeDefined();
    expect(repointed).not.toBe(cookieForA);

    await delay(500);
    expect(clients.filter((cl) => cl.closeCode !== undefined)).toHaveLength(0);
    // Every client still talks to its backend.
    await Promise.all(clients.slice(0, 50).map((cl, i) => cl.echo(`still ${i}`)));
    const listed = backendIn(await pools(adminPort), a);
    expect(listed).toMatchObject({ adminState: 'drain', active: onA, state: 'healthy' });
    const metrics = (await admin(adminPort, '/metrics')).text;
    const labels = (state: string) => ({ pool: 'main', backend: a.url, state });
    expect(metricValue(metrics, 'wsgate_backend_admin_state', labels('drain'))).toBe(1);
    expect(metricValue(metrics, 'wsgate_backend_admin_state', labels('active'))).toBe(0);

    const enabled = await setBackend(adminPort, a, { state: 'active' });
    expect(enabled.adminState).toBe('active');
    const after = await openClients(url, 100, 'fresh', 50);
    expect(after.some((cl) => cl.backend === 'a')).toBe(true);
  }, 120_000);

  it('disable: every tunnel on it closed with 1012 at the pool’s pace, and every client reconnects elsewhere', async () => {
    const rate = 40;
    const [a, b, c] = [await echo('a'), await echo('b'), await echo('c')];
    const { port, adminPort } = await start(
      config([a, b, c], workers, { rebalance: { mode: 'gradual', maxClosesPerSecond: rate } }),
    );
    const url = `ws://127.0.0.1:${port}/`;
    const clients = await openClients(url, 240, 'user', 60);
    const onB = clients.filter((cl) => cl.backend === 'b');
    expect(onB.length).toBeGreaterThan(40);
    const others = clients.filter((cl) => cl.backend !== 'b');

    const startedAt = performance.now();
    const view = await setBackend(adminPort, b, { state: 'disabled' });
    expect(view.adminState).toBe('disabled');
    await waitFor(() => onB.every((cl) => cl.closeCode !== undefined), 30_000, 'every client of b closed');
    expect(new Set(onB.map((cl) => cl.closeCode))).toEqual(new Set([1012]));
    expect(others.filter((cl) => cl.closeCode !== undefined)).toHaveLength(0);
    // Paced: each worker closes at most `rate` per second (one tick's carry of slack).
    const spanMs = Math.max(...onB.map((cl) => cl.closedAtMs as number)) - startedAt;
    const fastestMs = ((onB.length / workers - 2) / rate) * 1000;
    expect(spanMs).toBeGreaterThan(fastestMs * 0.8);
    const sorted = onB.map((cl) => cl.closedAtMs as number).sort((x, y) => x - y);
    for (let i = 0; i + rate * workers + 2 < sorted.length; i++) {
      expect((sorted[i + rate * workers + 2] as number) - (sorted[i] as number)).toBeGreaterThan(900);
    }

    // They come back (same user ids) and all land on a or c.
    const back = await Promise.all(
      onB.map((cl, i) => connectClient(url, { 'x-user-id': `user${clients.indexOf(cl)}`, 'x-n': String(i) })),
    );
    cleanups.push(() => {
      for (const cl of back) cl.ws.terminate();
    });
    expect(back.filter((cl) => cl.backend === 'b')).toHaveLength(0);
    expect(backendIn(await pools(adminPort), b)).toMatchObject({ adminState: 'disabled', active: 0 });
    const metrics = (await admin(adminPort, '/metrics')).text;
    expect(metricValue(metrics, 'wsgate_rebalance_closes_total', { pool: 'main' })).toBe(onB.length);
  }, 120_000);

  it('a runtime weight: the share of new connections follows the weights', async () => {
    const [a, b] = [await echo('a'), await echo('b')];
    const { port, adminPort } = await start(config([a, b], workers));
    const url = `ws://127.0.0.1:${port}/`;
    const view = await setBackend(adminPort, a, { weight: 3 });
    expect(view).toMatchObject({ weight: 3, configuredWeight: 1, adminState: 'active' });
    const n = 800;
    const clients = await openClients(url, n, 'weighted', 100);
    const share = clients.filter((cl) => cl.backend === 'a').length / n;
    // 3:1 → 75 %, within a tolerance for the ring's virtual-node placement.
    expect(share).toBeGreaterThan(0.68);
    expect(share).toBeLessThan(0.82);
    expect(backendIn(await pools(adminPort), a)).toMatchObject({ weight: 3, configuredWeight: 1 });
  }, 120_000);

  it('a reload keeps the runtime state of backends still in the pool, says so, and forgets removed ones', async () => {
    const [a, b, c] = [await echo('a'), await echo('b'), await echo('c')];
    const cfg = config([a, b, c], workers);
    const { cli, adminPort, file } = await start(cfg);
    await setBackend(adminPort, a, { state: 'drain' });
    await setBackend(adminPort, b, { weight: 0.5 });

    // A changed pool (the balance factor) with the same backends.
    const changed = { ...cfg, pools: { main: { ...(cfg.pools as { main: ConfigObject }).main, balanceFactor: 1.5 } } };
    const { writeFileSync } = await import('node:fs');
    const { stringify } = await import('yaml');
    writeFileSync(file, stringify(changed));
    const reloaded = await post(adminPort, '/reload', '');
    expect(reloaded.status, reloaded.text).toBe(200);
    const line = await cli.logLine('configuration applied');
    expect(line.runtimeState).toEqual([
      { pool: 'main', backend: a.url, state: 'drain' },
      { pool: 'main', backend: b.url, state: 'active', weight: 0.5 },
    ]);
    const kept = await pools(adminPort);
    expect(backendIn(kept, a).adminState).toBe('drain');
    expect(backendIn(kept, b)).toMatchObject({ weight: 0.5, configuredWeight: 1 });

    // `a` leaves the pool, then comes back: a backend new to the pool starts from the YAML.
    const urlsWithout = [b.url, c.url];
    const without = { ...changed, pools: { main: { ...(changed.pools.main as ConfigObject), backends: urlsWithout } } };
    writeFileSync(file, stringify(without));
    expect((await post(adminPort, '/reload', '')).status).toBe(200);
    writeFileSync(file, stringify(changed));
    expect((await post(adminPort, '/reload', '')).status).toBe(200);
    const fresh = await pools(adminPort);
    expect(backendIn(fresh, a).adminState).toBe('active');
    expect(backendIn(fresh, b).weight).toBe(0.5);
    if (workers === 2) {
      // A worker that starts later (a crash) gets the operators' changes too: the new worker 1 reports first.
      const s = (await admin(adminPort, '/api/status', { token: TOKEN })).json<{
        workers: { list: { pid: number }[] };
      }>();
      process.kill(s.workers.list[0]?.pid as number, 'SIGKILL');
      const readyLines = () => cli.logs.filter((l) => l.msg === 'worker ready' && l.worker === 1).length;
      await waitFor(() => readyLines() === 2, 20_000, 'worker 1 restarted');
      await waitFor(
        async () =>
          (await admin(adminPort, '/api/status', { token: TOKEN })).json<{ workers: { live: number } }>().workers
            .live === 2,
        20_000,
        'the worker restarted',
      );
      await delay(300);
      for (let i = 0; i < 4; i++) expect(backendIn(await pools(adminPort), b).weight).toBe(0.5);
    }
  }, 120_000);

  it('answers 401 without the token, 404 for unknown pools and backends, 400 for bad bodies, 405 for GET', async () => {
    const [a, b] = [await echo('a'), await echo('b')];
    const { adminPort } = await start(config([a, b], workers));
    const path = `/api/pools/main/backends/127.0.0.1:${a.port}`;
    expect((await post(adminPort, path, { state: 'drain' }, null)).status).toBe(401);
    expect((await post(adminPort, path, { state: 'drain' }, 'wrong')).status).toBe(401);
    expect((await admin(adminPort, '/api/pools')).status).toBe(401);
    expect((await admin(adminPort, '/api/connections')).status).toBe(401);

    const unknownPool = await post(adminPort, `/api/pools/nope/backends/127.0.0.1:${a.port}`, { state: 'drain' });
    expect(unknownPool.status).toBe(404);
    expect(unknownPool.json<{ error: string }>().error).toContain('no pool named nope');
    const unknownBackend = await post(adminPort, '/api/pools/main/backends/127.0.0.1:1', { state: 'drain' });
    expect(unknownBackend.status).toBe(404);
    expect(unknownBackend.json<{ error: string }>().error).toContain('has no backend 127.0.0.1:1');

    const bad = async (body: unknown) => {
      const answer = await post(adminPort, path, body);
      expect(answer.status, answer.text).toBe(400);
      return answer.json<{ errors: string[] }>().errors.join('; ');
    };
    expect(await bad({ state: 'paused' })).toContain('state: expected one of active, drain, disabled');
    expect(await bad({ weight: 0 })).toContain('weight: expected a number above 0 and at most 100');
    expect(await bad({ weight: 101 })).toContain('weight');
    expect(await bad({ weight: '2' })).toContain('weight');
    expect(await bad({ colour: 'red' })).toContain('colour: unknown key');
    expect(await bad({})).toContain('nothing to change');
    expect(await bad('{"state":')).toContain('not JSON');
    expect(await bad([1])).toContain('JSON object');
    expect((await admin(adminPort, path, { token: TOKEN })).status).toBe(405);
    expect((await admin(adminPort, '/api/connections?limit=0', { token: TOKEN })).status).toBe(400);
    expect((await admin(adminPort, '/api/nothing', { token: TOKEN })).status).toBe(404);
    // Nothing changed.
    expect(backendIn(await pools(adminPort), a).adminState).toBe('active');
    // The URL form of a backend's name works too.
    const byUrl = await post(adminPort, `/api/pools/main/backends/${encodeURIComponent(a.url)}`, { state: 'drain' });
    expect(byUrl.status, byUrl.text).toBe(200);
  });
});
