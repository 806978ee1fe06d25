// The dashboard proven on a real Prometheus (Debian's `prometheus` binary): a running wsgate under a little
// traffic of every kind is scraped once a second, then every panel's expression (and the annotation's), with the
// template variables substituted as Grafana would for "All", is evaluated through the HTTP API and must return
// data. `promtool check metrics` must accept the exposition. Without Prometheus the test is skipped locally and
// fails in CI.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/observe/metrics.js';
import { proxyHeaderFor } from '../../src/upstream/proxy-header.js';
import {
  type Client,
  connectClient,
  type FileGateway,
  PROMTOOL,
  promtoolMetricProblems,
  startFileGateway,
} from '../control/support.js';
import { refusedPort, startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { type Cleanup, runCleanups } from '../helpers/cleanups.js';
import { frame } from '../helpers/frames.js';
import { type ConfigObject, metricValue } from '../helpers/gateway.js';
import { jwtAuth, makeKey, sign } from '../helpers/jwt.js';
import { IN_CI, ROOT } from '../helpers/paths.js';
import { openSocket, rawUpgrade, readResponseHead, upgradeRequest } from '../helpers/raw-client.js';
import { chain } from '../helpers/tls-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const PROMETHEUS = '/usr/bin/prometheus';
const SCRAPE_INTERVAL = '1s';

/**
 * Panels whose metrics wsgate does not export at all yet. Each entry must name the issue that adds the metric;
 * the list may only shrink: the test fails when a listed panel starts returning data (remove it then), and when
 * an unlisted panel returns none.
 */
const PENDING: Readonly<Record<string, string>> = {
  // (empty: every charted metric is exported)
};

interface Target {
  readonly expr: string;
  readonly refId: string;
}
interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
}
const dashboard = JSON.parse(readFileSync(join(ROOT, 'grafana', 'wsgate-dashboard.json'), 'utf8')) as {
  panels: Panel[];
  annotations: { list: { name: string; expr?: string }[] };
};
const queries = [
  ...dashboard.panels
    .flatMap((p) => [p, ...(p.panels ?? [])])
    .filter((p) => p.type !== 'row')
    .flatMap((p) => (p.targets ?? []).map((t) => ({ name: `${p.title} (${t.refId})`, expr: t.expr }))),
  ...dashboard.annotations.list.flatMap((a) => (a.expr ? [{ name: `annotation: ${a.name}`, expr: a.expr }] : [])),
];

/** As Grafana does for "All" (allValue .*); rate windows become 1m, plenty for a 1 s scrape interval. */
function substitute(expr: string): string {
  return expr.replace(/\$(__rate_interval|__interval|__range)\b/g, '1m').replace(/\$\{?(route|pool|backend)\}?/g, '.*');
}

const describePrometheus = existsSync(PROMETHEUS) || IN_CI ? describe : describe.skip;

describePrometheus('dashboard queries on a real Prometheus', () => {
  const cleanups: Cleanup[] = [];
  let gw: FileGateway;
  let prometheus: { url: string; process: ChildProcess } | undefined;
  let traffic: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    if (!existsSync(PROMETHEUS)) return;
    const backends: TestBackend[] = await Promise.all(['a', 'b', 'c'].map((id) => startEchoBackend(id)));
    cleanups.push(() => Promise.all(backends.map((b) => b.close())));
    const [a, b, c] = backends as [TestBackend, TestBackend, TestBackend];
    const dead = await refusedPort();
    const key = await makeKey('ES256', 'dashboard');
    const config: ConfigObject = {
      listeners: [
        { name: 'public', address: '127.0.0.1', port: 0 },
        // Behind a balancer: PROXY-stage rejections and TLS resumption have their own panels.
        {
          name: 'balanced',
          address: '127.0.0.1',
          port: 0,
          clientAddress: { proxyProtocol: 'v2', trustedProxies: ['127.0.0.1/32'] },
        },
        { name: 'secure', address: '127.0.0.1', port: 0, tls: {} },
      ],
      admin: { address: '127.0.0.1', port: 0 },
      routes: [
        {
          name: 'chat',
          match: { path: '/chat' },
          pool: 'chat',
          limits: { perConnection: { maxMessageBytes: '4KiB' } },
          keepalive: { interval: '200ms', timeout: '300ms', peers: 'client' },
        },
        // Edge controls: a token route whose tokens close their tunnels when they expire, and a route that
        // refuses every loopback client.
        {
          name: 'token',
          match: { path: '/token' },
          pool: 'echo',
          auth: jwtAuth({ keys: './jwks.json' }, { clockSkew: '0s', closeOnExpiry: true }),
        },
        { name: 'private', match: { path: '/private' }, pool: 'echo', access: { deny: ['127.0.0.0/8'] } },
        { name: 'echo', match: { path: '/' }, pool: 'echo' },
      ],
      pools: {
        // A refusing member: upstream errors, retries, and (after five in a row) an ejection.
        chat: { hashKey: 'header:x-user-id', backends: [a.url, b.url, `ws://127.0.0.1:${dead}`] },
        echo: { backends: [c.url], healthCheck: { path: '/', interval: '200ms', timeout: '500ms' } },
      },
      timeouts: { handshake: '2s', idle: '5m', drain: '1s' },
      // Per address, so the flood below (one address behind the PROXY listener) runs dry and the steady traffic
      // from 127.0.0.1 (about 12 new connections/s, and the search for connections on b) does not.
      limits: { connectionRate: { perIpPerSecond: 30, perIpBurst: 60 } },
    };
    gw = await startFileGateway(config, {
      metrics: new Metrics(),
      files: { 'jwks.json': JSON.stringify({ keys: [key.publicJwk] }) },
    });
    cleanups.push(() => gw.stop());
    const port = gw.port();

    // Steady traffic: echoing clients on both routes, a new connection now and then, one close per tick.
    const clients: Client[] = [];
    cleanups.push(() => {
      for (const cl of clients) cl.ws.terminate();
    });
    let n = 0;
    const bearer = { Authorization: `Bearer ${await sign(key)}` };
    const tick = async () => {
      n++;
      clients.push(await connectClient(`ws://127.0.0.1:${port}/chat`, { 'x-user-id': `user-${n}` }));
      clients.push(await connectClient(`ws://127.0.0.1:${port}/`));
      clients.push(await connectClient(`ws://127.0.0.1:${port}/token`, bearer));
      for (const cl of clients) if (cl.ws.readyState === cl.ws.OPEN) cl.ws.send(`message ${n}`);
      clients.shift()?.ws.close(1000, 'done');
    };
    await tick();
    traffic = setInterval(() => void tick().catch(() => undefined), 250);
    cleanups.push(() => clearInterval(traffic));

    // One of each trouble: a rejection, a hash-key fallback, a protocol violation, a limit hit, a silent client.
    await rawUpgrade(port, { path: '/chat', headers: { 'Sec-WebSocket-Version': '8' } }).then((r) =>
      r.socket.destroy(),
    );
    clients.push(await connectClient(`ws://127.0.0.1:${port}/chat`));
    const raw = await rawUpgrade(port, { path: '/', headers: {} });
    raw.socket.write(frame(0x1, 'unmasked', { masked: false }));
    cleanups.push(() => raw.socket.destroy());
    const big = await connectClient(`ws://127.0.0.1:${port}/chat`, { 'x-user-id': 'big' });
    big.ws.send(Buffer.alloc(8192));
    // No PROXY header: closed without an answer, and counted.
    const noProxyHeader = await openSocket(gw.port('balanced'));
    noProxyHeader.on('error', () => undefined);
    noProxyHeader.end(upgradeRequest({ path: '/' }));
    await new Promise((resolve) => noProxyHeader.once('close', resolve));
    expect(await chain(gw.port('secure'), 3)).toEqual([false, true, true]);
    // Backend maintenance: b drained through the admin API, with connections it keeps (kept out of the ticks).
    const onB: Client[] = [];
    cleanups.push(() => {
      for (const cl of onB) cl.ws.terminate();
    });
    for (let i = 0; onB.length < 3 && i < 200; i++) {
      const cl = await connectClient(`ws://127.0.0.1:${port}/chat`, { 'x-user-id': `kept-${i}` });
      if (cl.backend === 'b') onB.push(cl);
      else cl.ws.terminate();
    }
    const drained = await fetch(
      `http://127.0.0.1:${gw.adminPort}/api/pools/chat/backends/${encodeURIComponent(b.url)}`,
      {
        method: 'POST',
        body: JSON.stringify({ state: 'drain' }),
      },
    );
    expect(drained.status).toBe(200);
    const silent = await rawUpgrade(port, { path: '/chat', headers: { 'x-user-id': 'silent' } });
    silent.socket.pause(); // never reads, so never answers a ping
    cleanups.push(() => (silent.socket as Socket).destroy());
    // Edge controls: an address refused, a token that expires in a second or two (closed with 1008), and a flood
    // from one address behind the balancer: the first ones get 401 (no token), the rest 429 once its bucket is dry.
    const denied = await rawUpgrade(port, { path: '/private' });
    denied.socket.destroy();
    expect(denied.status).toBe(403);
    const expiring = await sign(key, {}, Math.floor(Date.now() / 1000) + 2);
    const expires = await connectClient(`ws://127.0.0.1:${port}/token`, { Authorization: `Bearer ${expiring}` });
    cleanups.push(() => expires.ws.terminate()); // kept out of the ticks, which close their oldest client
    const flood = await Promise.all(Array.from({ length: 150 }, (_, i) => viaBalancer(gw.port('balanced'), i)));
    expect(flood).toContain(401);
    expect(flood).toContain(429);
    prometheus = await startPrometheus(gw.adminPort, cleanups);
    // A reload once Prometheus has seen generation 1, so the annotation's changes() sees it move. It gives tunnels
    // opened from now on a short maxLifetime (the ones open keep theirs: none), so the ticks' clients end with 1001.
    await delay(1500);
    gw.write({ ...config, timeouts: { ...(config.timeouts as ConfigObject), maxLifetime: '1s' } });
    await gw.control.reload('admin');
  }, 60_000);

  afterAll(() => runCleanups(cleanups));

  it('every panel returns data, except the listed pending ones, which return none', async () => {
    if (!prometheus) throw new Error(`${PROMETHEUS} is missing; CI must install Debian's prometheus package`);
    const url = prometheus.url;
    const results = new Map<string, number>();
    const evaluate = async () => {
      for (const q of queries) results.set(q.name, await resultCount(url, substitute(q.expr)));
    };
    // Rates need two scrapes inside the window, the health and keepalive events a moment: poll until done.
    await waitFor(
      async () => {
        await evaluate();
        return queries.every((q) => (results.get(q.name) ?? 0) > 0 || q.name.split(' (')[0]! in PENDING);
      },
      30_000,
      'every panel to have data',
      1000,
    ).catch(() => undefined);
    const empty = queries.filter((q) => (results.get(q.name) ?? 0) === 0 && !(q.name.split(' (')[0]! in PENDING));
    expect(
      empty.map((q) => `${q.name}: ${substitute(q.expr)}`),
      'panels without data',
    ).toEqual([]);
    const stale = Object.keys(PENDING).filter((title) =>
      queries.some((q) => q.name.startsWith(`${title} (`) && (results.get(q.name) ?? 0) > 0),
    );
    expect(stale, 'pending panels that now have data: remove them from PENDING').toEqual([]);
    for (const title of Object.keys(PENDING)) {
      expect(
        queries.some((q) => q.name.startsWith(`${title} (`)),
        `PENDING names a real panel: ${title}`,
      ).toBe(true);
    }
    expect(queries.length).toBeGreaterThanOrEqual(40);
  }, 60_000);

  it('the edge traffic moved every edge counter', async () => {
    const moved = (text: string) => ({
      authOk: metricValue(text, 'wsgate_auth_results_total', { route: 'token', result: 'ok' }),
      authMissing: metricValue(text, 'wsgate_auth_results_total', { route: 'token', result: 'missing' }),
      denied: metricValue(text, 'wsgate_access_denied_total', { route: 'private', reason: 'denied_address' }),
      rateLimited: metricValue(text, 'wsgate_connection_rate_limited_total', { scope: 'ip' }),
      maxLifetime: metricValue(text, 'wsgate_lifetime_closes_total', { reason: 'max_lifetime' }),
      tokenExpired: metricValue(text, 'wsgate_lifetime_closes_total', { route: 'token', reason: 'token_expired' }),
    });
    let last: ReturnType<typeof moved> | undefined;
    await waitFor(
      async () => {
        last = moved(await gw.metrics());
        return Object.values(last).every((v) => (v ?? 0) > 0);
      },
      10_000,
      'every edge counter above 0',
    ).catch(() => undefined);
    const still = Object.entries(last ?? {}).filter(([, value]) => !((value ?? 0) > 0));
    expect(
      still.map(([name]) => name),
      'edge counters still at 0',
    ).toEqual([]);
    // One refused address, one expiring token: each counted once.
    expect([last?.denied, last?.tokenExpired]).toEqual([1, 1]);
  });

  it('promtool check metrics accepts the exposition', async () => {
    if (!existsSync(PROMTOOL)) throw new Error(`${PROMTOOL} is missing`);
    expect(promtoolMetricProblems(await gw.metrics())).toEqual([]);
  });
});

/** An upgrade without a token to /token from 198.51.100.7 (by its PROXY v2 header); resolves with the status. */
async function viaBalancer(port: number, i: number): Promise<number> {
  const socket = await openSocket(port);
  const header = proxyHeaderFor('v2', { address: '198.51.100.7', port: 40000 + i }, { address: '127.0.0.1', port });
  socket.write(Buffer.concat([header, Buffer.from(upgradeRequest({ path: '/token' }))]));
  const { status } = await readResponseHead(socket);
  socket.destroy();
  return status;
}

/** Number of series an instant query returns (throws on a query error). */
async function resultCount(baseUrl: string, expr: string): Promise<number> {
  const res = await fetch(`${baseUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
  if (body.status !== 'success') throw new Error(`query failed: ${expr}: ${body.error}`);
  return body.data?.result.length ?? 0;
}

/**
 * Runs Prometheus scraping 127.0.0.1:adminPort. It binds port 0 itself (`--web.listen-address=127.0.0.1:0`) and
 * logs the address it got ("Listening on" address=127.0.0.1:PORT), so no port is guessed or raced for.
 */
async function startPrometheus(
  adminPort: number,
  cleanups: Cleanup[],
): Promise<{ url: string; process: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-prometheus-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    [
      'global:',
      `  scrape_interval: ${SCRAPE_INTERVAL}`,
      `  evaluation_interval: ${SCRAPE_INTERVAL}`,
      'scrape_configs:',
      '  - job_name: wsgate',
      '    static_configs:',
      `      - targets: ['127.0.0.1:${adminPort}']`,
      '',
    ].join('\n'),
  );
  const child = spawn(
    PROMETHEUS,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      '--web.listen-address=127.0.0.1:0',
      '--log.level=info',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  cleanups.push(async () => {
    child.kill('SIGTERM');
    await Promise.race([exited, delay(5000).then(() => child.kill('SIGKILL'))]);
  });
  let log = '';
  const address = await new Promise<string>((resolve, reject) => {
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      log += text;
      const match = /msg="Listening on" address=(127\.0\.0\.1:\d+)/.exec(log);
      if (match) resolve(match[1] as string);
    });
    void exited.then(() => reject(new Error(`prometheus exited before listening:\n${log}`)));
    setTimeout(() => reject(new Error(`prometheus did not report its address:\n${log}`)), 20_000).unref();
  });
  const url = `http://${address}`;
  // The API answers 503 until the TSDB is open: wait for readiness before the first query.
  await waitFor(
    async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok === true,
    20_000,
    'Prometheus to be ready',
    100,
  );
  await waitFor(
    async () => (await resultCount(url, 'up{job="wsgate"} == 1')) === 1,
    20_000,
    'Prometheus to scrape wsgate',
    250,
  );
  return { url, process: child };
}
