// `wsgate ctl` against a real gateway (the built CLI on both sides, `workers: 1` and `2`): pools, drain, enable,
// weight and conns, human-readable and --json, and its exit statuses when the gateway refuses or is not there.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import WebSocket from 'ws';
import type { ConnectionList } from '../../src/gateway/connections.js';
import type { PoolStatus } from '../../src/gateway/process-status.js';
import { refusedPort, startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { simpleConfig } from '../helpers/gateway.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();
const TOKEN = 'ctl-test-token-0123456789';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `wsgate ctl ARGS` (the built CLI) with `env` added. */
function ctl(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      NODE_BIN,
      [join(ROOT, 'dist', 'src', 'cli.js'), 'ctl', ...args],
      { env: { ...process.env, WSGATE_ADMIN_TOKEN: '', ...env }, encoding: 'utf8' },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
    );
  });
}

async function echo(id: string): Promise<TestBackend> {
  const b = await startEchoBackend(id);
  cleanups.push(() => b.close());
  return b;
}

interface Opened {
  readonly id: string;
  readonly backend: string;
  readonly ws: WebSocket;
}

/** Opens a client; resolves with its request id (from the 101) and the backend that welcomed it. */
function openClient(url: string, user: string): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { 'x-user-id': user } });
    let id = '';
    ws.once('upgrade', (res) => {
      id = res.headers['x-request-id'] as string;
    });
    ws.once('message', (data) =>
      resolve({ id, backend: (JSON.parse(data.toString()) as { backend: string }).backend, ws }),
    );
    ws.once('error', reject);
    cleanups.push(() => ws.terminate());
  });
}

describe.each([1, 2])('workers: %i', (workers) => {
  it('lists pools, drains, reweights and enables a backend, and finds connections, human and --json', async () => {
    const [a, b] = [await echo('a'), await echo('b')];
    const config = simpleConfig([a.url, b.url], {
      workers,
      admin: { address: '127.0.0.1', port: 0, token: TOKEN },
    });
    const cli = runCli(writeConfig(config), ['--no-watch']);
    cleanups.push(() => cli.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${cli.lines.slice(-60).join('\n')}\n`);
    });
    const { port, adminPort } = await cli.ready();
    const adminUrl = `http://127.0.0.1:${adminPort}`;
    const withAdmin = ['--admin', adminUrl, '--token', TOKEN];
    const clients = await Promise.all(
      Array.from({ length: 12 }, (_, i) => openClient(`ws://127.0.0.1:${port}/`, `user${i}`)),
    );
    const onA = clients.filter((c) => c.backend === 'a');
    expect(onA.length).toBeGreaterThan(0);
    const aName = `127.0.0.1:${a.port}`;

    // The token from the environment, the human table.
    const pools = await ctl(['pools', '--admin', adminUrl], { WSGATE_ADMIN_TOKEN: TOKEN });
    expect(pools.code, pools.stderr).toBe(0);
    expect(pools.stdout).toContain('pool main (hash header:x-user-id, 12 connections)');
    expect(pools.stdout).toMatch(/BACKEND\s+ADMIN\s+HEALTH\s+WEIGHT\s+CONNECTIONS/);
    expect(pools.stdout).toMatch(new RegExp(`${aName}\\s+active\\s+healthy\\s+1\\s+${onA.length}\\n`));

    const drained = await ctl(['drain', 'main', aName, ...withAdmin]);
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.stdout).toBe(`main ${aName}: drain (health healthy, weight 1, ${onA.length} connections)\n`);
    const asJson = await ctl(['pools', '--json', ...withAdmin]);
    const listed = (JSON.parse(asJson.stdout) as { pools: PoolStatus[] }).pools[0]?.backends;
    expect(listed?.find((x) => x.address === aName)).toMatchObject({ adminState: 'drain', active: onA.length });

    // conns: one client's messages are counted, its id is the one its 101 carried.
    const talker = onA[0] as Opened;
    for (let i = 0; i < 3; i++) talker.ws.send(`m${i}`);
    await new Promise<void>((resolve) => {
      let echoes = 0;
      talker.ws.on('message', () => {
        if (++echoes === 3) resolve();
      });
    });
    const conns = await ctl(['conns', '--backend', aName, ...withAdmin]);
    expect(conns.code, conns.stderr).toBe(0);
    expect(conns.stdout).toMatch(/^ID\s+ROUTE\s+BACKEND\s+CLIENT\s+AGE\s+MESSAGES IN\/OUT\n/);
    for (const c of onA) expect(conns.stdout).toContain(c.id);
    for (const c of clients.filter((x) => x.backend === 'b')) expect(conns.stdout).not.toContain(c.id);
    expect(conns.stdout).toMatch(
      new RegExp(`${talker.id}\\s+main\\s+${aName}\\s+127\\.0\\.0\\.1\\s+[\\d.]+s\\s+3/4\\n`),
    );
    expect(conns.stdout).toContain(`${onA.length} of ${onA.length} connections shown`);
    const limited = await ctl(['conns', '--limit', '2', '--json', ...withAdmin]);
    const list = JSON.parse(limited.stdout) as ConnectionList;
    expect(list.matched).toBe(12);
    expect(list.connections).toHaveLength(2);
    expect(list.connections[0]).toMatchObject({ route: 'main', pool: 'main', client: '127.0.0.1' });

    // Back in the ring with a runtime weight (the ring moves keys back to it: rebalancing may close some).
    const weighted = await ctl(['weight', 'main', aName, '2.5', ...withAdmin]);
    expect(weighted.stdout).toBe(
      `main ${aName}: drain (health healthy, weight 2.5 (config 1), ${onA.length} connections)\n`,
    );
    const enabled = await ctl(['enable', 'main', aName, '--json', ...withAdmin]);
    expect(JSON.parse(enabled.stdout)).toMatchObject({ pool: 'main', adminState: 'active', weight: 2.5 });

    // Refusals and mistakes.
    const noToken = await ctl(['pools', '--admin', adminUrl]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('401');
    const unknown = await ctl(['drain', 'nope', aName, ...withAdmin]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('404: no pool named nope');
    const badWeight = await ctl(['weight', 'main', aName, '500', ...withAdmin]);
    expect(badWeight.code).toBe(1);
    expect(badWeight.stderr).toContain('400: weight: expected a number above 0 and at most 100');
    expect((await ctl(['weight', 'main', aName, ...withAdmin])).code).toBe(2);
    expect((await ctl(['frobnicate', ...withAdmin])).code).toBe(2);
  });
});

it('says when the admin listener cannot be reached', async () => {
  const port = await refusedPort();
  const run = await ctl(['pools', '--admin', `http://127.0.0.1:${port}`]);
  expect(run.code).toBe(1);
  expect(run.stderr).toContain(`cannot reach the admin listener at http://127.0.0.1:${port}: ECONNREFUSED`);
});
