// The edge controls with `workers: 2`, on the built CLI (a real primary and two real workers; workersAccept:
// primary, so connections alternate between the workers exactly): access lists refuse in every worker, and
// limits.connectionRate is per process, so two workers admit up to twice perSecond and twice perIpBurst.

import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { type CliProcess, ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, simpleConfig } from '../helpers/gateway.js';
import { delay, waitFor } from '../helpers/wait.js';
import { countingBackend, expectRefused, statusOf } from './edge-support.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();
const PER_SECOND = 2;

/** The pids of the worker processes that logged a refusal with `code`. */
function refusingPids(cli: CliProcess, code: string): Set<unknown> {
  return new Set(cli.logs.filter((l) => l.event === 'rejected' && l.code === code).map((l) => l.pid));
}

async function metrics(adminPort: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
}

describe('workers: 2', () => {
  it('every worker applies the access list and its own connection-rate buckets (per process)', async () => {
    const backend = await countingBackend(cleanups);
    const config = simpleConfig([backend.url], {
      workers: 2,
      workersAccept: 'primary',
      log: { level: 'info' },
      limits: {
        maxConnections: 1000,
        maxConnectionsPerIp: 1000,
        connectionRate: { perSecond: PER_SECOND, perIpPerSecond: 0.1, perIpBurst: 1 },
      },
    });
    config.routes = [
      { name: 'denied', match: { path: '/denied' }, pool: 'main', access: { deny: ['127.0.0.0/8'] } },
      { name: 'main', match: { path: '/' }, pool: 'main' },
    ];
    const cli = runCli(writeConfig(config), ['--no-watch']);
    cleanups.push(() => cli.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${cli.lines.slice(-60).join('\n')}\n`);
    });
    const { port, adminPort } = await cli.ready();

    // Access lists: refused whichever worker takes the connection (and before any rate token is spent).
    for (let i = 0; i < 6; i++) {
      await expectRefused(
        port,
        backend,
        { path: '/denied', kind: i % 2 ? 'get' : 'upgrade' },
        403,
        'WSG_ADDRESS_DENIED',
      );
    }
    await waitFor(() => refusingPids(cli, 'WSG_ADDRESS_DENIED').size === 2, 5000, 'refusals logged by both workers');

    // The process bucket: eight new connections from eight addresses, one after the other (so the primary hands
    // them to the workers in turn); each worker admits its own perSecond.
    const started = performance.now();
    const burst: number[] = [];
    for (let i = 0; i < 8; i++) burst.push((await statusOf(port, { from: `127.0.2.${i + 1}` })).status);
    const seconds = (performance.now() - started) / 1000;
    const passed = burst.filter((s) => s === 101).length;
    // More than one process's bucket, and no more than two buckets plus what they refilled meanwhile.
    const refilled = Math.floor(2 * PER_SECOND * seconds);
    expect(passed).toBeGreaterThanOrEqual(2 * PER_SECOND);
    expect(passed).toBeLessThanOrEqual(2 * PER_SECOND + refilled);
    expect(burst.filter((s) => s === 503)).toHaveLength(8 - passed);
    await waitFor(() => refusingPids(cli, 'WSG_CONNECTION_RATE').size === 2, 5000, '503s logged by both workers');

    // The per-address bucket: six from one address; each worker lets its burst of one through.
    await delay(1100); // the process buckets full again
    const one: number[] = [];
    for (let i = 0; i < 6; i++) one.push((await statusOf(port, { from: '127.0.3.1' })).status);
    expect(one.filter((s) => s === 101)).toHaveLength(2);
    expect(one.filter((s) => s === 429)).toHaveLength(4);
    await waitFor(() => refusingPids(cli, 'WSG_CONNECTION_RATE_PER_IP').size === 2, 5000, '429s logged by both');
    expect(backend.accepted).toBe(passed + 2);

    await waitFor(
      async () => metricValue(await metrics(adminPort), 'wsgate_connections_active') === 0,
      8000,
      'no connection left open in either worker',
    );
    const text = await metrics(adminPort);
    expect(metricValue(text, 'wsgate_connection_rate_limited_total', { scope: 'process' })).toBe(8 - passed);
    expect(metricValue(text, 'wsgate_connection_rate_limited_total', { scope: 'ip' })).toBe(4);
    expect(metricValue(text, 'wsgate_access_denied_total', { route: 'denied', reason: 'denied_address' })).toBe(6);
  }, 60_000);
});
