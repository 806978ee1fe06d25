// Graceful shutdown of the real CLI (`node dist/src/cli.js --config FILE`) in a child process: SIGTERM turns
// /readyz to 503 at once, the listeners keep accepting for shutdown.acceptDelay, every live WebSocket gets close
// 1001 spread over the drain window, and the process exits 0 within timeouts.drain. A second signal exits at once.

import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Endings } from '../../src/errors.js';
import { DRAIN_TICK_MS, drainTunnels, LATE_SCAN_MS, MIN_DRAIN_CLOSES_PER_SECOND } from '../../src/tunnel/drain.js';
import type { Tunnel } from '../../src/tunnel/tunnel.js';
import { admin, connectClient, connectMany, withFreshRoute } from '../control/support.js';
import { echoBackendFor, type TestBackend } from '../helpers/backends.js';
import { type CliProcess, ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, simpleConfig } from '../helpers/gateway.js';
import { upgradeRequest } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();

const echo = (id: string): Promise<TestBackend> => echoBackendFor(cleanups, id);

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

/** A stand-in for a live tunnel: records when it was told to close and answers (ends) on the next turn. */
function fakeTunnels(n: number, startedAt: () => number) {
  const open = new Set<number>();
  const toldAt: number[] = [];
  const aborted: number[] = [];
  const tunnels = Array.from({ length: n }, (_, i) => {
    open.add(i);
    return {
      id: i,
      closeWith: () => {
        toldAt.push(performance.now() - startedAt());
        setImmediate(() => open.delete(i));
      },
      abort: () => {
        aborted.push(i);
        open.delete(i);
      },
    } as unknown as Tunnel & { id: number };
  });
  return { tunnels, toldAt, aborted, isOpen: (t: Tunnel) => open.has((t as Tunnel & { id: number }).id) };
}

describe('drainTunnels paces its closes by the clock', () => {
  it('3,000 tunnels on a busy event loop: closes spread over the first half and all sent by its end', async () => {
    let started = 0;
    const { tunnels, toldAt, aborted, isOpen } = fakeTunnels(3000, () => started);
    // The loop is busy about 90% of the time: a tick-counting drain falls behind by the same factor.
    const busy = setInterval(() => {
      const until = performance.now() + 40;
      while (performance.now() < until);
    }, 5);
    started = performance.now();
    const result = await drainTunnels(tunnels, {
      deadlineMs: 2000,
      ending: Endings.SHUTDOWN,
      isOpen,
      told: new WeakSet(),
    }).finally(() => clearInterval(busy));
    expect(result).toEqual({ closed: 3000, destroyed: 0 });
    expect(aborted).toEqual([]);
    // Even pacing over 1 s: the middle one near 0.5 s, the last by 1 s plus one busy stretch and one tick.
    expect(toldAt[1499]).toBeGreaterThan(300);
    expect(toldAt[1499]).toBeLessThan(800);
    expect(toldAt[2999]).toBeLessThan(1000 + 40 + DRAIN_TICK_MS + 100);
  });

  it('a handful of tunnels goes at MIN_DRAIN_CLOSES_PER_SECOND, not over half of a long window', async () => {
    let started = 0;
    const { tunnels, toldAt, isOpen } = fakeTunnels(10, () => started);
    started = performance.now();
    const result = await drainTunnels(tunnels, {
      deadlineMs: 30_000,
      ending: Endings.SHUTDOWN,
      isOpen,
      told: new WeakSet(),
    });
    expect(result).toEqual({ closed: 10, destroyed: 0 });
    const expectedSpread = (10 * 1000) / MIN_DRAIN_CLOSES_PER_SECOND;
    expect(toldAt.at(-1)).toBeGreaterThan(expectedSpread * 0.8);
    expect(toldAt.at(-1)).toBeLessThan(expectedSpread + 500);
  });

  it('tunnels that open after the drain began are told at once; a tunnel another drain told is left alone', async () => {
    let started = 0;
    const { tunnels, toldAt, isOpen } = fakeTunnels(4, () => started);
    const [first, second, lateOne, toldElsewhere] = tunnels as unknown as [Tunnel, Tunnel, Tunnel, Tunnel];
    const told = new WeakSet<Tunnel>([toldElsewhere]);
    started = performance.now();
    let lateAvailable = false;
    setTimeout(() => {
      lateAvailable = true;
    }, 100);
    const drained = drainTunnels([first, second, toldElsewhere], {
      deadlineMs: 1000,
      ending: Endings.SHUTDOWN,
      isOpen: (t) => t !== toldElsewhere && isOpen(t),
      told,
      late: () => (lateAvailable ? [lateOne] : []),
      // An upgrade in flight when the drain began, which becomes the late tunnel.
      inFlight: () => (lateAvailable ? 0 : 1),
    });
    expect(await drained).toEqual({ closed: 3, destroyed: 0 });
    expect(toldAt).toHaveLength(3);
    // The late one is adopted at the next late scan and told then, well before the end of the window.
    expect(toldAt.at(-1)).toBeLessThan(LATE_SCAN_MS + 2 * DRAIN_TICK_MS + 200);
  });
});
