// Admission and resource limits. What keeps one bad client or one bad backend from hurting everyone:
// admission slots released in every ending, per-IP keying, connections that never become WebSockets, file
// descriptors, memory held for slow readers, and the metrics that tell. Real sockets, port 0, bounded counts.

import { type ChildProcess, spawn } from 'node:child_process';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  listenFor,
  type RawBackend,
  rawBackendFor,
  refusedPort,
  startEchoBackend,
  type startRawBackend,
} from '../helpers/backends.js';
import { writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import {
  type ConfigObject,
  expectNoLeaks,
  listenersOf,
  metricValue,
  simpleConfig,
  startGateway,
  startGatewayFor,
} from '../helpers/gateway.js';
import { switchingProtocols } from '../helpers/hostile-backends.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';
import { closesWithin, rawUpgrade, readResponseHead, upgradeRequest } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();
const MiB = 1 << 20;

const gatewayFor = (backends: string[], extra: ConfigObject = {}) =>
  startGatewayFor(cleanups, simpleConfig(backends, extra));

const rawBackend = (respond: Parameters<typeof startRawBackend>[0]): Promise<RawBackend> =>
  rawBackendFor(cleanups, respond);

/** A TCP connection from a chosen loopback source address (127.0.0.x all route to lo on Linux). */
function connectFrom(port: number, localAddress: string, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host, localAddress }, () => resolve(s));
    s.once('error', reject);
  });
}

async function upgradeFrom(port: number, localAddress: string, host = '127.0.0.1') {
  const s = await connectFrom(port, localAddress, host);
  cleanups.push(() => s.destroy());
  s.write(upgradeRequest());
  return readResponseHead(s);
}

/** A node:http backend whose plain requests are held (a long poll) until the test ends. */
async function holdingHttpBackend(): Promise<{ url: string; live: () => number; seen: () => number }> {
  const held = new Set<ServerResponse>();
  let seen = 0;
  const server = createHttpServer((_req: IncomingMessage, res: ServerResponse) => {
    seen++;
    held.add(res);
    res.on('close', () => held.delete(res));
  });
  const port = await listenFor(cleanups, server);
  return { url: `ws://127.0.0.1:${port}`, live: () => held.size, seen: () => seen };
}

// ── Admission slots in every ending ────────────────────────────────────────────────────────────────────

describe('admission slots are released in every ending', () => {
  it('refusal relay, 502 connect, 504 timeout, bad 101, client RST in the tunnel: slots, per-IP map and gauge back to 0', async () => {
    // One backend per ending, each its own route, so every ending passes through admission.
    const refusing = await rawBackend(() => 'HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!');
    const silent = await rawBackend(() => undefined);
    const badAccept = await rawBackend(
      () =>
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n',
    );
    const good = await rawBackend((req) => switchingProtocols(req));
    const dead = await refusedPort();
    const gw = await startGateway({
      ...simpleConfig([good.url]),
      routes: [
        { name: 'refusing', match: { path: '/refusing' }, pool: 'refusing' },
        { name: 'silent', match: { path: '/silent' }, pool: 'silent' },
        { name: 'bad', match: { path: '/bad' }, pool: 'bad' },
        { name: 'dead', match: { path: '/dead' }, pool: 'dead' },
        { name: 'main', match: { path: '/' }, pool: 'main' },
      ],
      pools: {
        refusing: { backends: [refusing.url] },
        silent: { backends: [silent.url] },
        bad: { backends: [badAccept.url] },
        dead: { backends: [`ws://127.0.0.1:${dead}`] },
        main: { backends: [good.url] },
      },
      timeouts: { handshake: '1s', idle: '60s', drain: '1s' },
      limits: { maxConnections: 4, maxConnectionsPerIp: 2 },
    });
    cleanups.push(() => gw.stop());
    // Three rounds: a leak of one slot per ending would exhaust maxConnections 4 / per-IP 2 on the 2nd or 3rd.
    for (let round = 0; round < 3; round++) {
      const statuses = await Promise.all(
        ['/refusing', '/silent', '/bad', '/dead'].map(async (path) => {
          const r = await rawUpgrade(gw.port, { path });
          r.socket.destroy();
          return r.status;
        }),
      );
      // Concurrent: 4 attempts against per-IP 2 means 2 of them are 429 — all on different routes though.
      for (const s of statuses) expect([403, 504, 502, 429]).toContain(s);
      const t = await rawUpgrade(gw.port, { path: '/' });
      expect(t.status).toBe(101);
      t.socket.resetAndDestroy();
      await waitFor(() => gw.gateway.admission.active === 0, 5000, `round ${round}: admission back to 0`);
    }
    expect(gw.gateway.admission.distinctIps).toBe(0);
    // Now sequentially: every one of them must get its real answer (no 429/503 from leaked slots).
    const seq: number[] = [];
    for (const path of ['/refusing', '/silent', '/bad', '/dead', '/refusing', '/bad', '/dead']) {
      const r = await rawUpgrade(gw.port, { path });
      seq.push(r.status);
      r.socket.destroy();
    }
    expect(seq).toEqual([403, 504, 502, 502, 403, 502, 502]);
    await expectNoLeaks(gw);
    expect(gw.gateway.admission.distinctIps).toBe(0);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_handshake_rejections_total', { reason: 'backend_refused' })).toBeGreaterThan(0);
  });

  it('a reload removing a route: its tunnels get 1001 and their slots come back', async () => {
    const b = await startEchoBackend('b', { welcome: false });
    cleanups.push(() => b.close());
    const base = simpleConfig([b.url], { limits: { maxConnections: 3, maxConnectionsPerIp: 3 } });
    const gw = await startGateway({
      ...base,
      routes: [
        { name: 'old', match: { path: '/old' }, pool: 'main' },
        { name: 'main', match: { path: '/' }, pool: 'main' },
      ],
    });
    cleanups.push(() => gw.stop());
    const open = await Promise.all([0, 1, 2].map(() => rawUpgrade(gw.port, { path: '/old' })));
    for (const r of open) expect(r.status).toBe(101);
    expect((await rawUpgrade(gw.port, { path: '/' })).status).toBe(503);
    const { parseConfig } = await import('../../src/config/load.js');
    const { stringify } = await import('yaml');
    await gw.gateway.reload(parseConfig(stringify(base), '/virtual/reload.yaml'));
    await waitFor(() => gw.gateway.admission.active === 0, 5000, 'slots of the removed route released');
    const again = await rawUpgrade(gw.port, { path: '/' });
    expect(again.status).toBe(101);
    again.socket.destroy();
    for (const r of open) r.socket.destroy();
    await expectNoLeaks(gw);
  });
});

// ── Per-IP keying ──────────────────────────────────────────────────────────────────────────────────────

describe('per-IP keying', () => {
  it('an IPv4 client seen as ::ffff:127.0.0.1 on a dual-stack listener and as 127.0.0.1 on an IPv4 one is one IP', async () => {
    const b = await rawBackend((req) => switchingProtocols(req));
    const gw = await gatewayFor([b.url], {
      listeners: [
        { name: 'v4', address: '127.0.0.1', port: 0 },
        { name: 'dual', address: '::', port: 0 },
      ],
      limits: { maxConnections: 100, maxConnectionsPerIp: 1 },
    });
    const dual = gw.gateway.boundListeners.find((l) => l.name === 'dual')!;
    const first = await upgradeFrom(gw.port, '127.0.0.1');
    expect(first.status).toBe(101);
    const second = await upgradeFrom(dual.port, '127.0.0.1', '127.0.0.1');
    expect(second.status).toBe(429);
    expect(gw.gateway.admission.distinctIps).toBe(1);
    first.socket.destroy();
    await expectNoLeaks(gw);
  });

  it('different source addresses are counted apart (127.0.0.2 at its cap does not refuse 127.0.0.3)', async () => {
    const b = await rawBackend((req) => switchingProtocols(req));
    const gw = await gatewayFor([b.url], { limits: { maxConnections: 100, maxConnectionsPerIp: 2 } });
    const a = await Promise.all([0, 1].map(() => upgradeFrom(gw.port, '127.0.0.2')));
    for (const r of a) expect(r.status).toBe(101);
    expect((await upgradeFrom(gw.port, '127.0.0.2')).status).toBe(429);
    expect((await upgradeFrom(gw.port, '127.0.0.3')).status).toBe(101);
    expect(metricValue(await gw.metrics(), 'wsgate_handshake_rejections_total', { reason: 'too_many_from_ip' })).toBe(
      1,
    );
  });
});

// ── Connections that never become WebSockets ─────────────────────────────────────────────────────────

describe('plain HTTP connections and the connection caps', () => {
  it('plain HTTP requests held by a long-polling backend are bounded by limits.maxConnections', async () => {
    const backend = await holdingHttpBackend();
    const gw = await gatewayFor([backend.url], { limits: { maxConnections: 2, maxConnectionsPerIp: 2 } });
    const clients: Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const s = await connectFrom(gw.port, '127.0.0.1');
      cleanups.push(() => s.destroy());
      s.on('error', () => {});
      s.write(`GET /poll?i=${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      clients.push(s);
    }
    await delay(500);
    // src/proxy/plain-http.ts: "node:http serves one request per client connection at a time, and
    // limits.maxConnections bounds those". One client IP, maxConnections 2 and maxConnectionsPerIp 2: at most 2 of
    // these 20 connections should reach (and each hold a socket to) the backend.
    expect(backend.live()).toBeLessThanOrEqual(2);
  });
});

describe('keep-alive: a slowloris on the second request of a connection', () => {
  it('a second request head trickled one line every 300 ms is cut at about timeouts.handshake (1 s)', async () => {
    const b = await startEchoBackend('b', { welcome: false });
    cleanups.push(() => b.close());
    const gw = await gatewayFor([b.url], { timeouts: { handshake: '1s', idle: '60s', drain: '1s' } });
    const s = await connectFrom(gw.port, '127.0.0.1');
    cleanups.push(() => s.destroy());
    s.write('GET /plain HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const first = await readResponseHead(s);
    expect(first.status).toBe(200);
    s.resume();
    s.write('GET /plain HTTP/1.1\r\nHost: localhost\r\n');
    const started = performance.now();
    const trickle = setInterval(() => {
      if (!s.destroyed && s.writable) s.write(`X-Slow-${Math.random().toString(36).slice(2, 6)}: 1\r\n`);
    }, 300);
    cleanups.push(() => clearInterval(trickle));
    const closed = await closesWithin(s, 6000);
    clearInterval(trickle);
    expect(closed).toBe(true);
    expect(performance.now() - started).toBeLessThan(3000);
  });
});

// ── Memory held for slow readers ─────────────────────────────────────────────────────────────────────

describe('slow-reading clients do not make the proxy buffer', () => {
  it('a backend refusal with a 64 MiB body to a client that does not read: the proxy holds < 4 MiB', async () => {
    let pushed = 0;
    let backendSocket: Socket | undefined;
    const b = await rawBackend((_req, socket) => {
      backendSocket = socket;
      const size = 64 * MiB;
      socket.write(`HTTP/1.1 403 Forbidden\r\nContent-Length: ${size}\r\n\r\n`);
      const chunk = Buffer.alloc(MiB, 0x41);
      const pump = () => {
        while (pushed < size) {
          pushed += chunk.length;
          if (!socket.write(chunk)) {
            socket.once('drain', pump);
            return;
          }
        }
      };
      pump();
      return undefined;
    });
    const gw = await gatewayFor([b.url]);
    const s = await connectFrom(gw.port, '127.0.0.1');
    cleanups.push(() => s.destroy());
    s.on('error', () => {});
    s.write(upgradeRequest());
    const head = await readResponseHead(s);
    expect(head.status).toBe(403);
    s.pause();
    await delay(1200);
    // Bytes that left the backend's user space but the client has not read: the kernel's socket buffers on two
    // loopback connections (a few MiB) plus whatever the proxy queued in user space.
    const inFlight = pushed - (backendSocket?.writableLength ?? 0) - head.rest.length;
    expect(inFlight).toBeLessThan(16 * MiB);
    expect(backendSocket?.writableLength ?? 0).toBeGreaterThan(0);
  });

  it('a plain HTTP response of 64 MiB to a client that does not read: the proxy holds < 16 MiB in flight', async () => {
    let pushed = 0;
    let res: ServerResponse | undefined;
    const server = createHttpServer((_req, r) => {
      res = r;
      r.writeHead(200, { 'Content-Length': String(64 * MiB) });
      const chunk = Buffer.alloc(MiB, 0x42);
      const pump = () => {
        while (pushed < 64 * MiB) {
          pushed += chunk.length;
          if (!r.write(chunk)) {
            r.once('drain', pump);
            return;
          }
        }
        r.end();
      };
      pump();
    });
    const port = await listenFor(cleanups, server);
    const gw = await gatewayFor([`ws://127.0.0.1:${port}`]);
    const s = await connectFrom(gw.port, '127.0.0.1');
    cleanups.push(() => s.destroy());
    s.on('error', () => {});
    s.write('GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const head = await readResponseHead(s);
    expect(head.status).toBe(200);
    s.pause();
    await delay(1500);
    const inFlight = pushed - (res?.writableLength ?? 0);
    expect(inFlight).toBeLessThan(16 * MiB);
  });
});

// ── File descriptors: connections before the upgrade ────────────────────────────────────────────────

interface Cli {
  child: ChildProcess;
  lines: string[];
  port: number;
  adminPort: number;
  exited: Promise<number | null>;
}

async function startCliWithUlimit(config: ConfigObject, nofile: number): Promise<Cli> {
  const file = writeConfig(config);
  const child = spawn('bash', ['-c', `ulimit -n ${nofile}; exec "$0" dist/src/cli.js --config "$1"`, NODE_BIN, file], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
  });
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let partial = '';
  const onText = (t: string) => {
    const parts = (partial + t).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts.filter((l) => l !== ''));
  };
  child.stdout?.setEncoding('utf8').on('data', onText);
  child.stderr?.setEncoding('utf8').on('data', (t: string) => lines.push(`stderr: ${t}`));
  cleanups.push(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let ready: Record<string, unknown> | undefined;
  await waitFor(
    () => {
      for (const l of lines) {
        if (!l.startsWith('{')) continue;
        const j = JSON.parse(l) as Record<string, unknown>;
        if (j.msg === 'wsgate ready') ready = j;
      }
      return ready !== undefined;
    },
    15_000,
    `wsgate ready (${lines.join('\n')})`,
  );
  const listeners = (ready as { listeners: { port: number }[] }).listeners;
  return {
    child,
    lines,
    port: listeners[0]?.port ?? 0,
    adminPort: (ready as { adminPort: number }).adminPort,
    exited,
  };
}

describe('file descriptors under ulimit -n 200 (built CLI)', () => {
  it('a flood of silent connections from one address: the excess is closed at once and counted, nobody else is locked out', {
    timeout: 30_000,
  }, async () => {
    const b = await startEchoBackend('b', { welcome: false });
    cleanups.push(() => b.close());
    const cli = await startCliWithUlimit(
      {
        ...simpleConfig([b.url], { limits: { maxConnections: 20, maxConnectionsPerIp: 5 } }),
        timeouts: { handshake: '2s', idle: '60s', drain: '1s' },
      },
      200,
    );
    const attacker: Socket[] = [];
    cleanups.push(() => {
      for (const s of attacker) s.destroy();
    });
    let shed = 0;
    const t0 = performance.now();
    for (let i = 0; i < 220; i++) {
      const s = await connectFrom(cli.port, '127.0.0.2').catch(() => undefined);
      if (!s) continue;
      s.on('error', () => {});
      // Closed well before the 2 s handshake timeout: accepted and closed at once (libuv's reserve-fd trick).
      s.once('close', () => {
        if (performance.now() - t0 < 1500) shed++;
      });
      attacker.push(s);
    }
    await delay(1000);
    expect(shed).toBeGreaterThan(0);
    // The handshake timeout (2 s) and the refusal's linger (2 s) shed the silent ones; the process stays up and
    // serves again.
    const started = performance.now();
    let status = 0;
    await waitFor(
      async () => {
        status = await upgradeFrom(cli.port, '127.0.0.3').then(
          (r) => {
            r.socket.destroy();
            return r.status;
          },
          () => 0,
        );
        return status === 101;
      },
      10_000,
      'a 101 again',
      250,
    );
    expect(cli.child.exitCode).toBe(null);
    // Served at once: the flood never got near the descriptor limit.
    expect(performance.now() - started).toBeLessThan(1000);
    const metrics = await (await fetch(`http://127.0.0.1:${cli.adminPort}/metrics`)).text();
    // Five may wait for their first head (maxConnectionsPerIp); every other one was refused and counted.
    expect(
      metricValue(metrics, 'wsgate_handshake_rejections_total', { reason: 'too_many_from_ip' }),
    ).toBeGreaterThanOrEqual(shed);
    expect(shed).toBeGreaterThanOrEqual(200);
    expect(cli.lines.join('\n')).not.toMatch(/Uncaught|FATAL|RangeError|TypeError/);
  });
});

describe('wsgate_accept_errors_total counts every accept error', () => {
  // accept() errors that reach node (libuv's reserve-fd trick could not shed the connection) come in bursts. They
  // are injected here as the 'error' events node emits for them, on the real listening server of a real gateway.
  it('a burst of 5 accept errors within a second is counted as 5 (after a quiet second), not 1', async () => {
    const b = await rawBackend((req) => switchingProtocols(req));
    const gw = await gatewayFor([b.url]);
    const server = listenersOf(gw.gateway)[0]!.server;
    expect(server.listening).toBe(true);
    for (let i = 0; i < 5; i++) {
      server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }));
    }
    await delay(1300);
    expect(metricValue(await gw.metrics(), 'wsgate_accept_errors_total')).toBe(5);
  });
});

describe('relayed backend refusals and the connection caps', () => {
  it('a backend trickling its 403 body: relays in progress keep their slots, so maxConnections 2 admits 2', async () => {
    const b = await rawBackend((_req, socket) => {
      socket.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 100000\r\n\r\n');
      const t = setInterval(() => (socket.destroyed ? clearInterval(t) : socket.write('x')), 200);
      socket.on('close', () => clearInterval(t));
      return undefined;
    });
    const gw = await gatewayFor([b.url], { limits: { maxConnections: 2, maxConnectionsPerIp: 2 } });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await rawUpgrade(gw.port);
      cleanups.push(() => r.socket.destroy());
      r.socket.on('data', () => {});
      statuses.push(r.status);
    }
    await delay(300);
    // Each relay holds a client socket and a backend socket (2 fds) for as long as the backend trickles: it keeps
    // its slot meanwhile, like a request being processed (nginx limit_conn), so 8 of these were refused.
    expect(gw.gateway.admission.active).toBe(2);
    expect(statuses.filter((s) => s === 403)).toHaveLength(2);
    expect(statuses.filter((s) => s === 429 || s === 503)).toHaveLength(8);
  });
});
