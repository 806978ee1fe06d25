// Why wsgate could not start, as the built CLI prints it: one line naming what failed and the config key to
// change, exit status 1, no stack trace unless log.level is debug. Ports are held by the test (port 0), never fixed.

import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';

const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const cleanups = cleanupAfterEach();

interface Outcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function wsgate(args: string[], options: { uid?: number; gid?: number } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(NODE_BIN, [CLI, ...args], { cwd: ROOT, timeout: 30_000, ...options }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

/** A port the test holds (on 127.0.0.1), released after the test. */
async function busyPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as { port: number }).port;
}

/** A config file in a fresh directory anyone may read (the low-port case runs as another user). */
function configFile(config: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-start-'));
  chmodSync(dir, 0o755);
  const file = join(dir, 'config.yaml');
  writeFileSync(file, stringify(config), { mode: 0o644 });
  return file;
}

function config(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
    admin: { address: '127.0.0.1', port: 0 },
    routes: [{ name: 'main', pool: 'main' }],
    pools: { main: { backends: ['ws://127.0.0.1:1'] } },
    ...extra,
  };
}

function expectOneLine(outcome: Outcome, line: string): void {
  expect(outcome.code, outcome.stderr).toBe(1);
  expect(outcome.stderr).toBe(`wsgate: ${line}\n`);
  // Whatever reached stdout before is log lines, nothing else.
  for (const l of outcome.stdout.split('\n').filter(Boolean)) expect(() => JSON.parse(l), l).not.toThrow();
}

describe('start-up errors: one line, the key to change, exit 1', () => {
  it('a listener on a busy port', async () => {
    const port = await busyPort();
    const listeners = [
      { name: 'public', address: '127.0.0.1', port: 0 },
      { name: 'second', address: '127.0.0.1', port },
    ];
    expectOneLine(
      await wsgate(['--config', configFile(config({ listeners }))]),
      `listener "second" (listeners[1].port): 127.0.0.1:${port} is in use; pick another port or stop what holds it`,
    );
  });

  it('the admin listener on a busy port', async () => {
    const port = await busyPort();
    expectOneLine(
      await wsgate(['--config', configFile(config({ admin: { address: '127.0.0.1', port } }))]),
      `admin listener (admin.port): 127.0.0.1:${port} is in use; pick another port or stop what holds it`,
    );
  });

  it('with workers: 2, where the bind fails in a worker', async () => {
    const port = await busyPort();
    const listeners = [{ name: 'public', address: '127.0.0.1', port }];
    expectOneLine(
      await wsgate(['--config', configFile(config({ listeners, workers: 2 }))]),
      `listener "public" (listeners[0].port): 127.0.0.1:${port} is in use; pick another port or stop what holds it`,
    );
  });

  it('with log.level debug, the stack follows the line', async () => {
    const port = await busyPort();
    const listeners = [{ name: 'public', address: '127.0.0.1', port }];
    const outcome = await wsgate(['--config', configFile(config({ listeners, log: { level: 'debug' } }))]);
    expect(outcome.code).toBe(1);
    const [first, second] = outcome.stderr.split('\n');
    expect(first).toBe(
      `wsgate: listener "public" (listeners[0].port): 127.0.0.1:${port} is in use; pick another port or stop what holds it`,
    );
    expect(second).toBe(`Error: listen EADDRINUSE: address already in use 127.0.0.1:${port}`);
    expect(outcome.stderr).toMatch(/\n {4}at /);
  });

  it('an address this host does not have', async () => {
    const listeners = [{ name: 'public', address: '192.0.2.1', port: 0 }];
    expectOneLine(
      await wsgate(['--config', configFile(config({ listeners }))]),
      'listener "public" (listeners[0].address): 192.0.2.1 is not an address of this host; use one it has, or 0.0.0.0 for all',
    );
  });

  it('a port below the privileged limit, for a user without the privilege', async () => {
    const unprivilegedFrom = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'));
    expect(unprivilegedFrom, 'this host lets anyone bind any port').toBeGreaterThan(1);
    const port = unprivilegedFrom - 1;
    const listeners = [{ name: 'public', address: '127.0.0.1', port }];
    // Run as nobody when the tests run as root (CI does), who could bind it.
    const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const outcome = await wsgate(['--config', configFile(config({ listeners }))], user);
    const why = `needs privileges (ports below 1024); pick a port from 1024 up or grant the process CAP_NET_BIND_SERVICE`;
    expectOneLine(outcome, `listener "public" (listeners[0].port): 127.0.0.1:${port} ${why}`);
  });

  it('a demo backend on a busy port', async () => {
    const port = await busyPort();
    const file = configFile(config({ pools: { main: { backends: ['ws://127.0.0.1:1', `ws://127.0.0.1:${port}`] } } }));
    expectOneLine(
      await wsgate(['--demo', '--config', file]),
      `demo backend on 127.0.0.1:${port} (pools.main.backends[1] in ${file}): the port is in use; stop what holds it, or run wsgate --config FILE with your own backends`,
    );
  });

  it('a missing config file', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'wsgate-start-')), 'nope.yaml');
    for (const args of [
      ['--config', file],
      ['--config', file, '--check'],
    ]) {
      const outcome = await wsgate(args);
      expect(outcome.code).toBe(1);
      expect(outcome.stderr).toBe(`wsgate: cannot read config file ${file} (--config): does not exist\n`);
    }
  });

  it('unreadable TLS files at start, as at --check: each one, at its key', async () => {
    const listeners = [{ name: 'tls', address: '127.0.0.1', port: 0, tls: { cert: './no.crt', key: './no.key' } }];
    const file = configFile(config({ listeners }));
    const dir = join(file, '..');
    const text = readFileSync(file, 'utf8').split('\n');
    const at = (value: string) => {
      const line = text.findIndex((l) => l.includes(value));
      return `${line + 1}:${(text[line] as string).indexOf(value) + 1}`;
    };
    for (const args of [
      ['--config', file],
      ['--config', file, '--check'],
    ]) {
      const outcome = await wsgate(args);
      expect(outcome.code).toBe(1);
      const lines = outcome.stderr.split('\n').filter((l) => l.startsWith(file));
      expect(lines).toEqual([
        `${file}:${at('./no.crt')}: listeners[0].tls.cert: cannot read TLS file ${dir}/no.crt: does not exist`,
        `${file}:${at('./no.key')}: listeners[0].tls.key: cannot read TLS file ${dir}/no.key: does not exist`,
      ]);
      expect(outcome.stderr).not.toMatch(/\n {4}at /);
    }
  });
});
