// The operator's control surface and TLS as an operator meets them: SNI policy, cipher lists, certificate reload
// and resumption, admin API edges, CLI signals during start-up, and workers (one generated certificate, reload
// and drain reaching every worker). Real sockets and real processes.

import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { stringify } from 'yaml';
import type { Status } from '../../src/control/status.js';
import { generateSelfSigned } from '../../src/listen/tls.js';
import { admin, type Client, connectClient, startFileGateway } from '../control/support.js';
import { echoBackendFor, type TestBackend } from '../helpers/backends.js';
import { commonNameOf, makeCert, tryTls } from '../helpers/certs.js';
import { ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, simpleConfig } from '../helpers/gateway.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();
const run = promisify(execFile);
const CLI = join(ROOT, 'dist', 'src', 'cli.js');

const echo = (id: string): Promise<TestBackend> => echoBackendFor(cleanups, id);

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(NODE_BIN, [CLI, ...args], { timeout: 15_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The served certificate's fingerprint and whether the session was resumed. */
async function handshake(port: number, options: ConnectionOptions = {}): Promise<{ fp: string; reused: boolean }> {
  const out = await tryTls(port, options);
  if (!out.ok) throw new Error(`TLS handshake failed: ${out.error}`);
  const fp = out.socket.getPeerX509Certificate()?.fingerprint256 ?? '';
  const reused = out.socket.isSessionReused();
  out.socket.destroy();
  return { fp, reused };
}

/** A raw admin call with an arbitrary method, headers and body size (fetch refuses some of these). */
function rawAdmin(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  bodyBytes = 0,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    if (bodyBytes > 0) {
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let left = bodyBytes;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    } else req.end();
  });
}

// ── TLS: SNI policy ──────────────────────────────────────────────────────────────────────────────

describe('TLS: unknownSni: refuse', () => {
  it("a client that sends no SNI at all is refused too, and the main certificate's names count as known", async () => {
    const a = await echo('a');
    const def = makeCert('default.review.test');
    const chat = makeCert('chat.review.test');
    const gw = await startFileGateway(
      simpleConfig([a.url], {
        listeners: [
          {
            name: 'tls',
            address: '127.0.0.1',
            port: 0,
            tls: {
              cert: def.cert,
              key: def.key,
              unknownSni: 'refuse',
              sni: { 'chat.review.test': { cert: chat.cert, key: chat.key } },
            },
          },
        ],
      }),
    );
    cleanups.push(() => gw.stop());
    const port = gw.port('tls');
    // Sanity: a configured name is served, an unknown one refused (as test/security/tls.test.ts checks).
    const known = await tryTls(port, { servername: 'chat.review.test' });
    expect(known.ok && commonNameOf(known.socket)).toBe('chat.review.test');
    if (known.ok) known.socket.destroy();
    expect((await tryTls(port, { servername: 'unknown.review.test' })).ok).toBe(false);
    // The main certificate's own names are known names too.
    const main = await tryTls(port, { servername: 'default.review.test' });
    expect(main.ok && commonNameOf(main.socket)).toBe('default.review.test');
    if (main.ok) main.socket.destroy();
    // No SNI (an IP-address scanner, `openssl s_client` without -servername): node never calls SNICallback,
    // so the main certificate must not be a default the handshake falls back on.
    const noSni = await tryTls(port, {}); // host is an IP address: node sends no server_name
    const served = noSni.ok ? commonNameOf(noSni.socket) : undefined;
    if (noSni.ok) noSni.socket.destroy();
    expect(served, 'default certificate served to a client without SNI despite unknownSni: refuse').toBeUndefined();
    expect(noSni.ok).toBe(false);
  });
});

// ── TLS: cipher list validation ──────────────────────────────────────────────────────────────────

describe('TLS: an unusable tls.ciphers', () => {
  const config = (ciphers: string, cert?: { cert: string; key: string }) =>
    stringify(
      simpleConfig(['ws://127.0.0.1:1'], {
        listeners: [{ name: 'tls', address: '127.0.0.1', port: 0, tls: { ...(cert ?? {}), ciphers } }],
      }),
    );

  it('--check rejects it (exit 1) rather than calling a file valid that cannot start', async () => {
    const pair = makeCert('ciphers.review.test');
    const file = writeConfig({});
    writeFileSync(file, config('NOT-A-CIPHER', { cert: pair.cert, key: pair.key }));
    const check = await cli(['--config', file, '--check']);
    const start = await cli(['--config', file, '--no-watch']);
    onTestFailed(() => {
      process.stderr.write(
        `--check: ${check.code} ${check.stdout}${check.stderr}\nstart: ${start.code} ${start.stderr.slice(0, 400)}\n`,
      );
    });
    // The same file does not start: the https server throws "No cipher match" at bind.
    expect(start.code).toBe(1);
    expect(start.stderr).toMatch(/cipher/i);
    // docs/operations.md "Command line": --check = "validate the file and exit: 0 valid, 1 invalid".
    expect(check.code, '--check said valid for a file the gateway cannot start with').toBe(1);
  });

  it('POST /reload with it is answered 400 (invalid file, with file:line), not 500 "valid but could not be applied"', async () => {
    const a = await echo('a');
    const pair = makeCert('ciphers2.review.test');
    const base = simpleConfig([a.url], {
      listeners: [{ name: 'tls', address: '127.0.0.1', port: 0, tls: { cert: pair.cert, key: pair.key } }],
    });
    const gw = await startFileGateway(base);
    cleanups.push(() => gw.stop());
    gw.write({
      ...base,
      listeners: [
        {
          name: 'tls',
          address: '127.0.0.1',
          port: 0,
          tls: { cert: pair.cert, key: pair.key, ciphers: 'NOT-A-CIPHER' },
        },
      ],
    });
    const answer = await admin(gw.adminPort, '/reload', { method: 'POST', accept: 'application/json' });
    const outcome = answer.json<{ ok: boolean; status: number; errors: string[] }>();
    expect(outcome.ok).toBe(false);
    // docs/admin-api.md: 400 = the file is invalid (file:line:column: key.path); 500 = valid but not applicable.
    expect(answer.status, answer.text).toBe(400);
  });
});

// ── TLS: reload on SIGHUP (real CLI, watcher off) and session resumption ─────────────────────────

describe('TLS: certificates on SIGHUP and resumption', () => {
  it('--no-watch: a replaced certificate is not picked up by itself, SIGHUP applies it; sessions resume', async () => {
    const a = await echo('a');
    const first = await generateSelfSigned();
    const second = await generateSelfSigned();
    const file = writeConfig({});
    const dir = join(file, '..');
    writeFileSync(join(dir, 'server.crt'), first.cert);
    writeFileSync(join(dir, 'server.key'), first.key);
    writeFileSync(
      file,
      stringify(
        simpleConfig([a.url], {
          listeners: [{ name: 'tls', address: '127.0.0.1', port: 0, tls: { cert: 'server.crt', key: 'server.key' } }],
          log: { level: 'info' },
        }),
      ),
    );
    const proc = runCli(file, ['--no-watch']);
    cleanups.push(() => proc.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${proc.lines.join('\n')}\n`);
    });
    const { port } = await proc.ready();
    const fp1 = (await handshake(port)).fp;

    // Session resumption (TLS 1.2 tickets and TLS 1.3 PSK) on the wss listener.
    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      const session = await new Promise<Buffer>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, maxVersion: version });
        s.once('session', (sess: Buffer) => {
          resolve(sess);
          s.destroy();
        });
        s.once('error', reject);
      });
      const again = await handshake(port, { maxVersion: version, session });
      expect(again.reused, `${version} session resumed`).toBe(true);
    }

    writeFileSync(join(dir, 'server.key'), second.key);
    writeFileSync(join(dir, 'server.crt'), second.cert);
    await new Promise((r) => setTimeout(r, 1500)); // longer than a watch poll + debounce would take
    expect((await handshake(port)).fp, '--no-watch must not reload on a file change').toBe(fp1);
    proc.kill('SIGHUP');
    await proc.logLine('configuration reloaded');
    expect((await handshake(port)).fp).not.toBe(fp1);
    const exited = proc.exited;
    proc.kill('SIGTERM');
    expect((await exited).code).toBe(0);
  });
});

// ── Admin API ────────────────────────────────────────────────────────────────────────────────────

describe('admin API edges', () => {
  it('token on HEAD and query-stringed paths, 405 with Allow, path tricks, a huge unauthorized body', async () => {
    const a = await echo('a');
    const token = 'review-admin-token-0123456789';
    const gw = await startFileGateway(simpleConfig([a.url], { admin: { address: '127.0.0.1', port: 0, token } }));
    cleanups.push(() => gw.stop());
    const port = gw.adminPort;
    const auth = { authorization: `Bearer ${token}` };

    // Every data endpoint needs the token, whatever the method spelling or query string.
    for (const [method, path] of [
      ['GET', '/api/status'],
      ['HEAD', '/api/status'],
      ['GET', '/api/status?x=1'],
      ['GET', '/api/status/'],
      ['GET', '/api/'],
      ['POST', '/reload'],
      ['POST', '/reload?force=1'],
    ] as const) {
      const r = await rawAdmin(port, method, path);
      expect(r.status, `${method} ${path} without token`).toBe(401);
      expect(r.body).not.toContain('"pools"');
    }
    for (const bad of [`Bearer ${token}x`, `Basic ${token}`, `Bearer ${token.slice(0, -1)}`, 'Bearer', `${token}`]) {
      expect((await rawAdmin(port, 'GET', '/api/status', { authorization: bad })).status, bad).toBe(401);
    }
    expect((await rawAdmin(port, 'GET', '/api/status', { authorization: `bearer   ${token}` })).status).toBe(200);
    const head = await rawAdmin(port, 'HEAD', '/api/status', auth);
    expect(head.status).toBe(200);
    expect(head.body).toBe('');

    // Path tricks do not reach /api/* without the token, nor anything on disk.
    for (const path of ['//api/status', '/API/status', '/%61pi/status', '/x/../api/status', '/../../etc/passwd']) {
      const r = await rawAdmin(port, 'GET', path);
      expect(r.status, path).not.toBe(200);
      expect(r.body).not.toContain('"pools"');
      expect(r.body).not.toContain('root:');
    }

    // Wrong methods: 405 with Allow, before any auth question.
    for (const [method, path, allow] of [
      ['PUT', '/reload', 'POST'],
      ['GET', '/reload', 'POST'],
      ['DELETE', '/api/status', 'GET, HEAD'],
      ['POST', '/metrics', 'GET, HEAD'],
      ['OPTIONS', '/', 'GET, HEAD'],
    ] as const) {
      const r = await rawAdmin(port, method, path);
      expect(r.status, `${method} ${path}`).toBe(405);
      expect(r.headers.allow).toBe(allow);
      expect(r.headers['cache-control']).toBe('no-store');
    }

    // An unauthorized POST /reload with a 32 MiB body: refused, no reload counted, the server still answers.
    const generation = gw.gateway.generation;
    const big = await rawAdmin(port, 'POST', '/reload', { 'content-type': 'application/octet-stream' }, 32 << 20);
    expect(big.status).toBe(401);
    expect(gw.gateway.generation).toBe(generation);
    expect((await rawAdmin(port, 'GET', '/healthz')).status).toBe(200);
  });

  it('ten concurrent POST /reload: all 200, generations 2..11 each once, in order, the last file wins', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const config = simpleConfig([a.url]);
    const gw = await startFileGateway(config);
    cleanups.push(() => gw.stop());
    gw.write(simpleConfig([b.url]));
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => admin(gw.adminPort, '/reload', { method: 'POST', accept: 'application/json' })),
    );
    expect(answers.map((r) => r.status)).toEqual(answers.map(() => 200));
    const generations = answers.map((r) => r.json<{ generation: number }>().generation).sort((x, y) => x - y);
    expect(generations).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const s = (await admin(gw.adminPort, '/api/status')).json<Status>();
    expect(s.generation).toBe(11);
    const client = await connectClient(`ws://127.0.0.1:${gw.port()}/`, { 'x-user-id': 'u' });
    cleanups.push(() => client.ws.terminate());
    expect(client.backend).toBe('b');
  });
});

// ── Cluster mode ─────────────────────────────────────────────────────────────────────────────────

function clusterConfig(backend: string, extra: ConfigObject = {}): ConfigObject {
  return simpleConfig([backend], {
    workers: 2,
    workersAccept: 'primary', // round robin: consecutive connections alternate between the workers
    timeouts: { handshake: '2s', idle: '5m', drain: '1s' },
    log: { level: 'info' },
    ...extra,
  });
}

describe('workers: 2', () => {
  it('a TLS listener with a generated certificate serves ONE certificate, whichever worker accepts', async () => {
    const a = await echo('a');
    const proc = runCli(
      writeConfig(clusterConfig(a.url, { listeners: [{ name: 'tls', address: '127.0.0.1', port: 0, tls: {} }] })),
      ['--no-watch'],
    );
    cleanups.push(() => proc.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${proc.lines.slice(0, 40).join('\n')}\n`);
    });
    const { port } = await proc.ready();
    const fingerprints = new Set<string>();
    for (let i = 0; i < 8; i++) fingerprints.add((await handshake(port, { servername: 'localhost' })).fp);
    // Each worker runs Gateway.start → generateSelfSigned() for itself: two different certificates on one port,
    // so a client that accepted (or pinned) the one it saw gets a different one on its next connection.
    expect(fingerprints.size, 'distinct certificates served on one listener').toBe(1);
  });

  it('SIGHUP to the primary reloads every worker; SIGTERM drains them and exits 0', async () => {
    const a = await echo('a');
    const b = await echo('b');
    const file = writeConfig(clusterConfig(a.url));
    const proc = runCli(file, ['--no-watch']);
    cleanups.push(() => proc.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${proc.lines.join('\n')}\n`);
    });
    const { port, adminPort } = await proc.ready();
    writeFileSync(file, stringify(clusterConfig(b.url)));
    proc.kill('SIGHUP');
    await waitFor(
      async () => {
        const s = (await admin(adminPort, '/api/status')).json<Status>();
        return s.generation === 2 && s.workers.list.every((w) => w.generation === 2);
      },
      10_000,
      'generation 2 on every worker',
    );
    // Both workers (round robin) now send to b.
    const clients: Client[] = [];
    for (let i = 0; i < 4; i++) clients.push(await connectClient(`ws://127.0.0.1:${port}/`, { 'x-user-id': `u${i}` }));
    cleanups.push(() => {
      for (const c of clients) c.ws.terminate();
    });
    expect(clients.map((c) => c.backend)).toEqual(['b', 'b', 'b', 'b']);
    const exited = proc.exited;
    proc.kill('SIGTERM');
    expect(await Promise.all(clients.map((c) => c.closed()))).toEqual([1001, 1001, 1001, 1001]);
    expect((await exited).code).toBe(0);
  });
});

// ── CLI: signals while starting ──────────────────────────────────────────────────────────────────

describe('CLI signals during start-up (single process)', () => {
  it('a SIGHUP while the first DNS lookup is pending does not kill the process', async () => {
    const a = await echo('a');
    // A nameserver that never answers: the first lookup (awaited by Gateway.start) takes ~4 s.
    const silent = createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    cleanups.push(() => silent.close());
    silent.on('message', () => {
      silentGotQuery = true;
    });
    const dnsPort = silent.address().port;
    const config = simpleConfig([a.url], {
      pools: {
        main: { hashKey: 'header:x-user-id', backends: [a.url] },
        discovered: { discovery: { dns: 'ws.review.test', port: 3000, nameservers: [`127.0.0.1:${dnsPort}`] } },
      },
      log: { level: 'info' },
    });
    const proc = runCli(writeConfig(config), ['--no-watch']);
    cleanups.push(() => proc.kill('SIGKILL'));
    onTestFailed(() => {
      process.stderr.write(`wsgate output:\n${proc.lines.join('\n')}\n`);
    });
    // Past node's start-up, inside Gateway.start (waiting for DNS): docs/operations.md says SIGHUP reloads the config.
    await waitFor(() => silentGotQuery, 5000, 'the first DNS query');
    proc.kill('SIGHUP');
    const early = await Promise.race([proc.exited, new Promise((r) => setTimeout(() => r(undefined), 1000))]);
    expect(early, 'killed by SIGHUP before its handler was installed').toBeUndefined();
    const { port } = await proc.ready();
    const client = await connectClient(`ws://127.0.0.1:${port}/`, { 'x-user-id': 'u' });
    client.ws.terminate();
  });
});

let silentGotQuery = false;
