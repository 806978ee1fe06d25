// routes[].auth.jwt under `workers: 2` (the built CLI in a child process): every worker loads the route's keys (a
// JWKS file, or its own fetch of a JWKS URL), so a valid token opens a tunnel and an invalid one is refused 401
// whichever worker accepts the connection.

import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { Status } from '../../src/control/status.js';
import { admin, type Client, connectClient } from '../control/support.js';
import { echoBackendFor } from '../helpers/backends.js';
import { ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, simpleConfig } from '../helpers/gateway.js';
import { jwtAuth, makeKey, sign, startJwksServer, writeJwks } from '../helpers/jwt.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();

const CONNECTIONS = 30;

describe('auth.jwt with workers: 2', () => {
  it('a valid token opens and an invalid one is refused in each worker', async () => {
    const key = await makeKey('ES256', 'k1');
    const stranger = await makeKey('ES256', 'k1');
    const backend = await echoBackendFor(cleanups, 'b1');
    const jwks = await startJwksServer([key], cleanups);
    const config = simpleConfig([backend.url], {
      workers: 2,
      routes: [
        {
          name: 'url',
          match: { path: '/url' },
          pool: 'main',
          auth: jwtAuth({ keys: jwks.url }, { keysCa: jwks.caFile }),
        },
        { name: 'chat', match: { path: '/' }, pool: 'main', auth: jwtAuth({ keys: writeJwks([key]) }) },
      ],
    });
    const cli = runCli(writeConfig(config), ['--no-watch']);
    cleanups.push(() => cli.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${cli.lines.join('\n')}\n`);
    });
    const { port, adminPort } = await cli.ready();

    const clients: Client[] = [];
    cleanups.push(() => {
      for (const c of clients) c.ws.terminate();
    });
    for (let i = 0; i < CONNECTIONS; i++) {
      clients.push(
        await connectClient(`ws://127.0.0.1:${port}/`, {
          Authorization: `Bearer ${await sign(key, { sub: `u${i}` })}`,
        }),
      );
    }
    const status = (await admin(adminPort, '/api/status')).json<Status>();
    expect(status.workers.list).toHaveLength(2);
    for (const w of status.workers.list) expect(w.connections, `worker ${w.id} holds some tunnels`).toBeGreaterThan(0);

    const refused: number[] = [];
    for (let i = 0; i < CONNECTIONS; i++) {
      const res = await rawUpgrade(port, { headers: { Authorization: `Bearer ${await sign(stranger)}` } });
      res.socket.destroy();
      refused.push(res.status);
    }
    expect(refused).toEqual(refused.map(() => 401));
    // Each worker logs its own refusals: both did some.
    const workerPids = [...status.workers.list.map((w) => w.pid)].sort();
    const refusingPids = () =>
      [
        ...new Set(
          cli.logs.filter((l) => l.event === 'rejected' && l.code === 'WSG_AUTH_INVALID').map((l) => l.pid as number),
        ),
      ].sort();
    await waitFor(() => refusingPids().length === 2, 5000, 'refusals logged by both workers');
    expect(refusingPids()).toEqual(workerPids);
    expect(backend.requests.length).toBe(CONNECTIONS);

    const text = (await admin(adminPort, '/metrics')).text;
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'chat', result: 'ok' })).toBe(CONNECTIONS);
    // Signed by a stranger's key under the right kid: a bad signature.
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'chat', result: 'invalid' })).toBe(CONNECTIONS);
    expect(metricValue(text, 'wsgate_connections_active')).toBe(CONNECTIONS);

    // A JWKS URL is fetched by each worker for itself (the cache and its 30 s cooldown are per process).
    await waitFor(() => jwks.requests === 2, 5000, 'one JWKS fetch per worker');
    const viaUrl: number[] = [];
    for (let i = 0; i < 10; i++) {
      const token = await sign(i % 2 === 0 ? key : stranger);
      const res = await rawUpgrade(port, { path: '/url', headers: { Authorization: `Bearer ${token}` } });
      res.socket.destroy();
      viaUrl.push(res.status);
    }
    expect(viaUrl).toEqual(viaUrl.map((_, i) => (i % 2 === 0 ? 101 : 401)));
    expect(jwks.requests).toBe(2);
  }, 60_000);
});
