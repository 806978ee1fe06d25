// Hot reload on a live gateway (real sockets, a real config file): unchanged routes keep every connection, new
// routes work at once, an invalid file changes nothing, removed routes drain with 1001, listeners move bind-first,
// TLS certificates change on disk without a restart, and the admin token guards /reload.

import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import type { Status } from '../../src/control/status.js';
import type { ReloadSummary } from '../../src/gateway/gateway.js';
import { generateSelfSigned } from '../../src/listen/tls.js';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, metricValue } from '../helpers/gateway.js';
import { delay, waitFor } from '../helpers/wait.js';
import { admin, type Client, connectClient, connectMany, type FileGateway, startFileGateway } from './support.js';

const cleanups = cleanupAfterEach();

async function echo(id: string): Promise<TestBackend> {
  const b = await startEchoBackend(id);
  cleanups.push(() => b.close());
  return b;
}

async function fileGateway(
  config: ConfigObject,
  options: { watch?: boolean; files?: Record<string, string> } = {},
): Promise<FileGateway> {
  const gw = await startFileGateway(config, options);
  cleanups.push(() => gw.stop());
  return gw;
}

function closeAll(clients: readonly Client[]): void {
  for (const c of clients) c.ws.terminate();
}

function baseConfig(backends: Record<string, string>, routes: ConfigObject[]): ConfigObject {
  return {
    listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
    admin: { address: '127.0.0.1', port: 0 },
    routes,
    pools: Object.fromEntries(
      Object.entries(backends).map(([name, url]) => [name, { hashKey: 'header:x-user-id', backends: [url] }]),
    ),
    limits: { maxConnections: 10_000, maxConnectionsPerIp: 5000 },
    timeouts: { handshake: '2s', idle: '5m', drain: '2s' },
  };
}

const mainRoute = { name: 'main', match: { path: '/' }, pool: 'main' };
const freshRoute = { name: 'fresh', match: { path: '/fresh' }, pool: 'other' };

describe('reload keeps what did not change', () => {
  it('1,000 live connections on an unchanged route: none closed, and a route the reload added works at once', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const gw = await fileGateway(baseConfig({ main: a.url }, [mainRoute]));
    const clients = await connectMany(`ws://127.0.0.1:${gw.port()}/chat`, 1000);
    cleanups.push(() => closeAll(clients));
    expect(gw.gateway.tunnels.size).toBe(1000);

    // The new route comes first so it wins for /fresh; the unchanged route keeps its name, match and pool.
    gw.write(baseConfig({ main: a.url, other: b.url }, [freshRoute, mainRoute]));
    const answer = await admin(gw.adminPort, '/reload', { method: 'POST', accept: 'application/json' });
    expect(answer.status, answer.text).toBe(200);
    const outcome = answer.json<{ ok: boolean; generation: number; changes: ReloadSummary }>();
    expect(outcome).toMatchObject({ ok: true, generation: 2 });
    expect(outcome.changes.routes).toMatchObject({ added: ['fresh'], unchanged: ['main'], removed: [], changed: [] });
    expect(outcome.changes.pools).toMatchObject({ added: ['other'], unchanged: ['main'] });
    expect(outcome.changes.draining).toBe(0);

    const fresh = await connectClient(`ws://127.0.0.1:${gw.port()}/fresh`, { 'x-user-id': 'new' });
    cleanups.push(() => fresh.ws.terminate());
    expect(fresh.backend).toBe('b');
    expect(await fresh.echo('hello new route')).toBe('hello new route');

    // Let any close that was going to happen arrive, then check every old client is open and still tunnels.
    await delay(300);
    expect(clients.filter((c) => c.closeCode !== undefined)).toHaveLength(0);
    expect(clients.every((c) => c.ws.readyState === c.ws.OPEN)).toBe(true);
    await Promise.all(clients.filter((_, i) => i % 50 === 0).map((c, i) => c.echo(`still here ${i}`)));
    expect(gw.gateway.tunnels.size).toBe(1001);

    const metrics = await gw.metrics();
    expect(metricValue(metrics, 'wsgate_config_generation')).toBe(2);
    expect(metricValue(metrics, 'wsgate_config_reload_total', { result: 'success' })).toBe(1);
    expect(metricValue(metrics, 'wsgate_config_reload_total', { result: 'failure' })).toBe(0);
    expect(metricValue(metrics, 'wsgate_config_last_reload_success_timestamp_seconds')).toBeGreaterThan(
      Date.now() / 1000 - 60,
    );
  }, 60_000);

  it('an invalid file never replaces the running config: 400 naming file:line:column, failure counted, traffic continues', async () => {
    const a = await echo('a');
    const gw = await fileGateway(baseConfig({ main: a.url }, [mainRoute]));
    const before = await connectClient(`ws://127.0.0.1:${gw.port()}/`, { 'x-user-id': 'x' });
    cleanups.push(() => before.ws.terminate());

    // Line 7 of this file misspells "pool".
    gw.write(
      [
        'listeners:',
        '  - { name: public, address: 127.0.0.1, port: 0 }',
        'admin: { address: 127.0.0.1, port: 0 }',
        'routes:',
        '  - name: main',
        '    match: { path: / }',
        '    pol: main',
        'pools:',
        `  main: { backends: [${a.url}] }`,
        '',
      ].join('\n'),
    );
    const text = await admin(gw.adminPort, '/reload', { method: 'POST' });
    expect(text.status).toBe(400);
    expect(text.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(text.text).toContain(`${gw.file}:7:5: routes[0].pol: unknown key`);
    expect(text.text).toContain(`${gw.file}:5:5: routes[0].pool: is required`);

    const json = await admin(gw.adminPort, '/reload', { method: 'POST', accept: 'application/json' });
    expect(json.status).toBe(400);
    const body = json.json<{
      ok: boolean;
      errors: string[];
      issues: { line: number; column: number; path: string }[];
    }>();
    expect(body.ok).toBe(false);
    expect(body.issues).toContainEqual(expect.objectContaining({ line: 7, column: 5, path: 'routes[0].pol' }));

    // Still generation 1, both failures counted, the old connection and new ones work.
    const metrics = await gw.metrics();
    expect(metricValue(metrics, 'wsgate_config_generation')).toBe(1);
    expect(metricValue(metrics, 'wsgate_config_reload_total', { result: 'failure' })).toBe(2);
    expect(metricValue(metrics, 'wsgate_config_reload_total', { result: 'success' })).toBe(0);
    expect(await before.echo('after a failed reload')).toBe('after a failed reload');
    const after = await connectClient(`ws://127.0.0.1:${gw.port()}/`, { 'x-user-id': 'y' });
    cleanups.push(() => after.ws.terminate());
    expect(after.backend).toBe('a');

    const status = (await admin(gw.adminPort, '/api/status')).json<Status>();
    expect(status.generation).toBe(1);
    expect(status.lastReload).toMatchObject({ result: 'failure', trigger: 'admin' });
    expect(status.lastReload?.errors.join('\n')).toContain('routes[0].pol: unknown key');
  });

  it("a removed route's connections get 1001 within timeouts.drain; the unchanged route's stay open", async () => {
    const a = await echo('a');
    const b = await echo('b');
    const gw = await fileGateway(baseConfig({ main: a.url, other: b.url }, [freshRoute, mainRoute]));
    const doomed = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        connectClient(`ws://127.0.0.1:${gw.port()}/fresh`, { 'x-user-id': `d${i}` }),
      ),
    );
    const kept = await connectMany(`ws://127.0.0.1:${gw.port()}/`, 20);
    cleanups.push(() => closeAll([...doomed, ...kept]));

    gw.write(baseConfig({ main: a.url }, [mainRoute]));
    const started = performance.now();
    const outcome = await gw.control.reload('signal');
    expect(outcome).toMatchObject({ ok: true, generation: 2 });
    const codes = await Promise.all(doomed.map((c) => c.closed()));
    expect(codes).toEqual(doomed.map(() => 1001));
    // Spread over the first half of the 2 s drain, all within the drain.
    const times = doomed.map((c) => (c.closedAtMs ?? 0) - started);
    expect(Math.max(...times)).toBeLessThan(2000);
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThan(300);
    expect(kept.every((c) => c.closeCode === undefined)).toBe(true);
    expect(await kept[0]?.echo('unchanged route')).toBe('unchanged route');
  });

  it('a file change reloads by itself (debounced); rewriting the same content does not', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const gw = await fileGateway(baseConfig({ main: a.url }, [mainRoute]), { watch: true });
    const next = baseConfig({ main: a.url, other: b.url }, [freshRoute, mainRoute]);
    gw.write(next);
    await waitFor(() => gw.gateway.generation === 2, 5000, 'reload after the file changed').catch(
      async (err: Error) => {
        throw new Error(`${err.message}; last reload ${JSON.stringify(gw.control.controller?.lastReload)}`);
      },
    );
    const fresh = await connectClient(`ws://127.0.0.1:${gw.port()}/fresh`, { 'x-user-id': 'w' });
    cleanups.push(() => fresh.ws.terminate());
    expect(fresh.backend).toBe('b');
    gw.write(next);
    await delay(400);
    expect(gw.gateway.generation).toBe(2);
    expect(metricValue(await gw.metrics(), 'wsgate_config_reload_total', { result: 'success' })).toBe(1);
  });

  it('a broken file put back as it was: the status reports the failure, then success again, same generation', async () => {
    const a = await echo('a');
    const good = baseConfig({ main: a.url }, [mainRoute]);
    const gw = await fileGateway(good, { watch: true });
    gw.write({ ...good, routes: [{ ...mainRoute, pol: 'main' }] });
    await waitFor(() => gw.control.controller?.lastReload?.result === 'failure', 5000, 'the broken file refused');
    gw.write(good);
    await waitFor(() => gw.control.controller?.lastReload?.result === 'success', 5000, 'the file back as it was');
    const status = (await admin(gw.adminPort, '/api/status')).json<Status>();
    expect(status.generation).toBe(1);
    expect(status.lastReload).toMatchObject({ result: 'success', trigger: 'watch', errors: [] });
  });
});

describe('listeners and TLS on reload', () => {
  it('a listener that moves binds the new socket first; tunnels on the old one continue', async () => {
    const a = await echo('a');
    const config = baseConfig({ main: a.url }, [mainRoute]);
    const gw = await fileGateway(config);
    const oldPort = gw.port('public');
    const live = await connectClient(`ws://127.0.0.1:${oldPort}/`, { 'x-user-id': 'l' });
    cleanups.push(() => live.ws.terminate());

    gw.write({
      ...config,
      listeners: [
        { name: 'public', address: '127.0.0.2', port: 0 },
        { name: 'extra', address: '127.0.0.1', port: 0 },
      ],
    });
    const outcome = await gw.control.reload('admin');
    expect(outcome.ok).toBe(true);
    const changes = (outcome as { changes: ReloadSummary }).changes;
    expect(changes.listeners).toMatchObject({ rebound: ['public'], added: ['extra'], removed: [] });
    const moved = gw.gateway.boundListeners.find((l) => l.name === 'public');
    expect(moved?.address).toBe('127.0.0.2');

    const viaNew = await connectClient(`ws://127.0.0.2:${moved?.port}/`, { 'x-user-id': 'n' });
    const viaExtra = await connectClient(`ws://127.0.0.1:${gw.port('extra')}/`, { 'x-user-id': 'e' });
    cleanups.push(() => closeAll([viaNew, viaExtra]));
    await expect(connectClient(`ws://127.0.0.1:${oldPort}/`, { 'x-user-id': 'o' })).rejects.toThrow(/ECONNREFUSED/);
    expect(await live.echo('old listener, live tunnel')).toBe('old listener, live tunnel');
    expect(live.closeCode).toBeUndefined();
  });

  it('new certificate files on disk serve new handshakes, without a restart, while old sessions continue', async () => {
    const a = await echo('a');
    const first = await generateSelfSigned();
    const second = await generateSelfSigned();
    const gw = await fileGateway(
      {
        ...baseConfig({ main: a.url }, [mainRoute]),
        listeners: [{ name: 'tls', address: '127.0.0.1', port: 0, tls: { cert: 'server.crt', key: 'server.key' } }],
      },
      { watch: true, files: { 'server.crt': first.cert, 'server.key': first.key } },
    );
    expect(await servedFingerprint(gw.port('tls'))).toBe(fingerprint(first.cert));
    const live = await connectClient(
      `wss://127.0.0.1:${gw.port('tls')}/`,
      { 'x-user-id': 't' },
      { rejectUnauthorized: false },
    );
    cleanups.push(() => live.ws.terminate());
    const generation = gw.gateway.generation;

    // Key first, then certificate, as a careless operator would: the debounce makes it one reload.
    writeFileSync(join(gw.dir, 'server.key'), second.key);
    writeFileSync(join(gw.dir, 'server.crt'), second.cert);
    await waitFor(() => gw.gateway.generation > generation, 5000, 'reload after the certificate changed');
    expect(await servedFingerprint(gw.port('tls'))).toBe(fingerprint(second.cert));
    expect(await live.echo('same session')).toBe('same session');

    // A key that does not belong to the certificate is refused before anything changes.
    writeFileSync(join(gw.dir, 'server.key'), first.key);
    const refused = await gw.control.reload('admin');
    expect(refused).toMatchObject({ ok: false, status: 400 });
    expect(refused.ok ? '' : refused.errors.join()).toMatch(
      /listeners\[0\]\.tls\.cert: TLS certificate .* not usable together: .*key values mismatch/,
    );
    expect(gw.gateway.generation).toBe(generation + 1);
    expect(await servedFingerprint(gw.port('tls'))).toBe(fingerprint(second.cert));
  });
});

describe('admin token', () => {
  it('guards /reload and /api/*, leaves probes, /metrics and the page open', async () => {
    const a = await echo('a');
    const token = 'correct-horse-battery-staple';
    const gw = await fileGateway({
      ...baseConfig({ main: a.url }, [mainRoute]),
      admin: { address: '127.0.0.1', port: 0, token },
    });
    for (const [path, method] of [
      ['/reload', 'POST'],
      ['/api/status', 'GET'],
    ] as const) {
      const none = await admin(gw.adminPort, path, { method });
      expect(none.status, path).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((await admin(gw.adminPort, path, { method, token: 'wrong-token-of-some-length' })).status).toBe(401);
      expect((await admin(gw.adminPort, path, { method, token })).status, path).toBe(200);
    }
    for (const path of ['/healthz', '/readyz', '/metrics', '/']) {
      expect((await admin(gw.adminPort, path)).status, path).toBe(200);
    }
    expect((await admin(gw.adminPort, '/reload')).status).toBe(405);
  });
});

function fingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** The SHA-256 fingerprint of the certificate a fresh TLS handshake gets. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername: 'localhost' }, () => {
      const raw = socket.getPeerX509Certificate();
      socket.destroy();
      if (!raw) return reject(new Error('no peer certificate'));
      resolve(raw.fingerprint256);
    });
    socket.once('error', reject);
  });
}
