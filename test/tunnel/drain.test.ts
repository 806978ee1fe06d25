// Graceful shutdown of the real CLI (`node dist/src/cli.js --config FILE`) in a child process: SIGTERM turns
// /readyz to 503 at once, the listeners keep accepting for shutdown.acceptDelay, every live WebSocket gets close
// 1001 spread over the drain window, and the process exits 0 within timeouts.drain. A second signal exits at once.

import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { admin, connectClient, connectMany, withFreshRoute } from '../control/support.js';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { type CliProcess, ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, simpleConfig } from '../helpers/gateway.js';
import { upgradeRequest } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();

async function echo(id: string): Promise<TestBackend> {
  const b = await startEchoBackend(id);
  cleanups.push(() => b.close());
  return b;
}

function start(config: ConfigObject, file = writeConfig(config)): CliProcess {
  const cli = runCli(file);
  cleanups.push(() => cli.kill('SIGKILL'));
  return cli;
}

function config(backend: string, drain: string, acceptDelay: string): ConfigObject {
  return simpleConfig([backend], {
    timeouts: { handshake: '2s', idle: '5m', drain },
    shutdown: { acceptDelay },
    log: { level: 'info' },
  });
}

describe('SIGTERM drains and exits 0', () => {
  it('readiness off at once, accepting during acceptDelay, 1001 to every client spread over the drain, exit 0 in time', async () => {
    const backend = await echo('a');
    const cli = start(config(backend.url, '3s', '500ms'));
    const { port, adminPort } = await cli.ready();
    expect((await admin(adminPort, '/readyz')).status).toBe(200);
    const clients = await connectMany(`ws://127.0.0.1:${port}/`, 40);
    cleanups.push(() => {
      for (const c of clients) c.ws.terminate();
    });

    const signalled = performance.now();
    cli.kill('SIGTERM');
    await waitFor(
      async () => (await admin(adminPort, '/readyz')).status === 503,
      300,
      '/readyz 503 right after SIGTERM',
    );
    // Still inside shutdown.acceptDelay: a load balancer that has not noticed yet must not see refusals.
    const late = await connectClient(`ws://127.0.0.1:${port}/`, { 'x-user-id': 'late' });
    clients.push(late);

    const codes = await Promise.all(clients.map((c) => c.closed()));
    expect(codes).toEqual(clients.map(() => 1001));
    const exit = await cli.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    // acceptDelay 0.5 s + drain 3 s, with a little room for process start-up of the exit path.
    expect(exit.atMs - signalled).toBeLessThan(3500 + 1000);

    const times = clients.map((c) => (c.closedAtMs ?? 0) - signalled).sort((x, y) => x - y);
    expect(times[0]).toBeGreaterThanOrEqual(450); // nobody is closed during the accept delay
    expect((times.at(-1) ?? 0) - (times[0] ?? 0), 'closes are spread, not one burst').toBeGreaterThan(400);
    const finished = await cli.logLine('drain finished');
    expect(finished).toMatchObject({ closed: 41, destroyed: 0 });
    await cli.logLine('stopped');
  });

  it('a second signal exits at once, without waiting for clients that never close', async () => {
    const backend = await echo('a');
    const cli = start(config(backend.url, '20s', '0s'));
    const { port } = await cli.ready();
    // A client that completes the handshake and then ignores everything, keeping its half of TCP open.
    const stubborn = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    stubborn.on('error', () => {});
    stubborn.write(upgradeRequest({ headers: { 'x-user-id': 's' } }));
    await new Promise((resolve) => stubborn.once('data', resolve));
    cleanups.push(() => stubborn.destroy());

    cli.kill('SIGTERM');
    await cli.logLine('stopped accepting; draining');
    const second = performance.now();
    cli.kill('SIGTERM');
    const exit = await cli.exited;
    expect(exit.atMs - second).toBeLessThan(1000);
    expect(exit.code).toBe(1);
    await cli.logLine('second signal: exiting now');
  });
});

describe('SIGHUP', () => {
  it('reloads the file in the running process; a bad file is reported and changes nothing', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const first = config(a.url, '1s', '0s');
    const file = writeConfig(first);
    const cli = start(first, file);
    const { port, adminPort } = await cli.ready();
    const live = await connectClient(`ws://127.0.0.1:${port}/`, { 'x-user-id': 'h' });
    cleanups.push(() => live.ws.terminate());

    writeFileSync(file, stringify(withFreshRoute(first, b.url)));
    cli.kill('SIGHUP');
    await cli.logLine('configuration reloaded', (l) => l.trigger === 'signal' && l.generation === 2);
    const fresh = await connectClient(`ws://127.0.0.1:${port}/fresh`);
    cleanups.push(() => fresh.ws.terminate());
    expect(fresh.backend).toBe('b');

    writeFileSync(file, 'listeners: [}\n');
    cli.kill('SIGHUP');
    await waitFor(() => cli.logs.some((l) => l.event === 'reload_failed'), 5000, 'the rejected reload to be logged');
    const rejected = cli.logs.find((l) => l.event === 'reload_failed');
    expect(String(rejected?.msg)).toMatch(/^configuration rejected, still running generation 2:\n/);
    expect(String(rejected?.msg)).toContain(`${file}:1:`);
    const status = (await admin(adminPort, '/api/status')).json<{ generation: number }>();
    expect(status.generation).toBe(2);
    expect(await live.echo('still tunnelled')).toBe('still tunnelled');
  });
});
