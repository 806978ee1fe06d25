// Cluster mode of the real CLI (`workers: 2`): both workers serve the shared listener, /metrics on the primary's
// admin listener is the sum over workers (nothing counted twice), a killed worker is restarted, a reload reaches
// every worker, and SIGTERM drains all of them.

import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { stringify } from 'yaml';
import type { Status } from '../../src/control/status.js';
import { echoBackendFor, type TestBackend } from '../helpers/backends.js';
import { ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, simpleConfig } from '../helpers/gateway.js';
import { waitFor } from '../helpers/wait.js';
import {
  admin,
  type Client,
  connectClient,
  connectMany,
  PROMTOOL,
  promtoolMetricProblems,
  withFreshRoute,
} from './support.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();

const echo = (id: string): Promise<TestBackend> => echoBackendFor(cleanups, id);

async function status(adminPort: number): Promise<Status> {
  const answer = await admin(adminPort, '/api/status');
  expect(answer.status, answer.text).toBe(200);
  return answer.json<Status>();
}

/** Aggregated /metrics must equal the per-worker reports summed, and the number of connections opened. */
/** `fromDeadWorkers`: connections counted by workers that died since (their counters stay in the totals). */
async function expectTotals(adminPort: number, opened: number, fromDeadWorkers = 0): Promise<void> {
  const text = (await admin(adminPort, '/metrics')).text;
  const s = await status(adminPort);
  const perWorker = s.workers.list.reduce((sum, w) => sum + w.connectionsTotal, 0);
  expect(metricValue(text, 'wsgate_connections_total')).toBe(perWorker + fromDeadWorkers);
  expect(perWorker + fromDeadWorkers).toBe(opened);
  expect(metricValue(text, 'wsgate_connections_active')).toBe(
    s.workers.list.reduce((sum, w) => sum + w.connections, 0),
  );
  expect(metricValue(text, 'wsgate_workers')).toBe(2);
  // Counted once, by the primary: a per-worker copy would double these.
  expect(metricValue(text, 'wsgate_config_generation')).toBe(s.generation);
  expect(text.match(/^wsgate_config_generation /gm)).toHaveLength(1);
}

describe('workers: 2', () => {
  it('shares the listener, aggregates /metrics, heals a killed worker, reloads and drains every worker', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const config = simpleConfig([a.url], { timeouts: { handshake: '2s', idle: '5m', drain: '2s' }, workers: 2 });
    const file = writeConfig(config);
    const cli = runCli(file, ['--no-watch']);
    cleanups.push(() => cli.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${cli.lines.join('\n')}\n`);
    });
    const { port, adminPort } = await cli.ready();

    const first = await status(adminPort);
    expect(first.workers).toMatchObject({ configured: 2, live: 2 });
    const pids = first.workers.list.map((w) => w.pid);
    expect(new Set(pids).size).toBe(2);

    const clients: Client[] = await connectMany(`ws://127.0.0.1:${port}/`, 40, 10);
    cleanups.push(() => {
      for (const c of clients) c.ws.terminate();
    });
    const spread = await status(adminPort);
    expect(spread.connections.active).toBe(40);
    for (const w of spread.workers.list) expect(w.connections, `worker ${w.id} serves some`).toBeGreaterThan(0);
    await expectTotals(adminPort, 40);
    checkMetricsFormat((await admin(adminPort, '/metrics')).text);

    // Kill one worker the hard way: its clients drop, the primary starts a replacement.
    const victim = spread.workers.list[0]!;
    const survivors = victim.connections;
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(
      async () => {
        const answer = await admin(adminPort, '/api/status');
        if (answer.status !== 200) return false;
        const s = answer.json<Status>();
        const slot = s.workers.list.find((w) => w.id === victim.id);
        return s.workers.live === 2 && slot !== undefined && slot.pid !== victim.pid && slot.state === 'ready';
      },
      10_000,
      'the killed worker to be replaced',
    );
    await cli.logLine('worker exited unexpectedly; restarting', (l) => l.workerPid === victim.pid);
    const healed = await status(adminPort);
    expect(healed.workers.list.find((w) => w.id === victim.id)?.restarts).toBe(1);
    await waitFor(
      () => clients.filter((c) => c.closeCode !== undefined).length === survivors,
      5000,
      'victim clients closed',
    );
    const more = await connectMany(`ws://127.0.0.1:${port}/`, 20, 10);
    clients.push(...more);
    // The dead worker's counters stay in the totals at their last scraped values (the scrapes above), so the
    // total never goes back; its gauges went with it.
    await expectTotals(adminPort, 40 + 20, victim.connectionsTotal);

    // Reload: the primary validates, every worker applies, the status shows one generation everywhere.
    writeFileSync(file, stringify(withFreshRoute(config, b.url)));
    const reload = await admin(adminPort, '/reload', { method: 'POST', accept: 'application/json' });
    expect(reload.status, reload.text).toBe(200);
    const afterReload = await status(adminPort);
    expect(afterReload.generation).toBe(2);
    expect(afterReload.workers.list.map((w) => w.generation)).toEqual([2, 2]);
    const fresh = await connectClient(`ws://127.0.0.1:${port}/fresh`);
    clients.push(fresh);
    expect(fresh.backend).toBe('b');
    expect(clients.filter((c) => c.closeCode === undefined).every((c) => c.ws.readyState === c.ws.OPEN)).toBe(true);

    // Drain: every open client hears 1001, the primary exits 0.
    const open = clients.filter((c) => c.closeCode === undefined);
    cli.kill('SIGTERM');
    expect(await Promise.all(open.map((c) => c.closed()))).toEqual(open.map(() => 1001));
    expect(await cli.exited).toMatchObject({ code: 0 });
  }, 60_000);
});

/** Pids among `pids` that hold the TCP socket listening on `port` (from /proc/net/tcp and /proc/PID/fd). */
function listenerHolders(port: number, pids: readonly number[]): number[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is "ADDR:PORT", st 0A is LISTEN, the inode is field 9.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9] !== undefined) inodes.add(f[9]);
    }
  }
  return pids.filter((pid) =>
    readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '');
      } catch {
        return false; // closed meanwhile
      }
    }),
  );
}

describe('workersAccept', () => {
  for (const mode of ['kernel', 'primary'] as const) {
    it(`${mode}: ${mode === 'kernel' ? 'every worker accepts from the shared socket' : 'only the primary holds the listening socket'}; connections are served`, async () => {
      const a = await echo('a');
      const config = simpleConfig([a.url], { workers: 2, ...(mode === 'primary' ? { workersAccept: 'primary' } : {}) });
      const cli = runCli(writeConfig(config), ['--no-watch']);
      cleanups.push(() => cli.kill('SIGKILL'));
      const { port, adminPort } = await cli.ready();
      const workers = (await status(adminPort)).workers.list.map((w) => w.pid);
      const holders = listenerHolders(port, [cli.child.pid as number, ...workers]);
      if (mode === 'kernel') expect(holders).toEqual(expect.arrayContaining(workers));
      else expect(holders).toEqual([cli.child.pid]);
      const clients = await connectMany(`ws://127.0.0.1:${port}/`, 40, 10);
      cleanups.push(() => {
        for (const c of clients) c.ws.terminate();
      });
      expect((await status(adminPort)).connections.active).toBe(40);
    });
  }
});

/** `promtool check metrics` on the aggregated exposition, when promtool is installed (CI installs it). */
function checkMetricsFormat(text: string): void {
  if (!existsSync(PROMTOOL)) return;
  expect(promtoolMetricProblems(text)).toEqual([]);
}
