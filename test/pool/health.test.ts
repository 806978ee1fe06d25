// Active checks on real sockets: HTTP and WebSocket probes, their own timeout, and no overlap per backend even
// when the backend accepts and never answers.

import { createServer, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { BackendConfig, HealthCheckConfig } from '../../src/config/types.js';
import { HealthChecker } from '../../src/pool/health.js';
import { probeBackend } from '../../src/pool/probe.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type PoolBackend, startPoolBackend } from '../helpers/pool-backend.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

function check(overrides: Partial<HealthCheckConfig> = {}): HealthCheckConfig {
  return {
    path: '/health',
    intervalMs: 100,
    timeoutMs: 300,
    healthyThreshold: 1,
    unhealthyThreshold: 1,
    websocket: false,
    ...overrides,
  };
}

function backendConfig(port: number): BackendConfig {
  return { id: `ws://127.0.0.1:${port}`, host: '127.0.0.1', port, tls: false, weight: 1 };
}

async function poolBackend(id: string): Promise<PoolBackend> {
  const b = await startPoolBackend(id);
  cleanups.push(() => b.kill());
  return b;
}

/** Accepts TCP and never says a word; tracks how many connections are open at once. */
async function hungBackend(): Promise<{
  port: number;
  open: () => number;
  maxOpen: () => number;
  total: () => number;
}> {
  const sockets = new Set<Socket>();
  let maxOpen = 0;
  let total = 0;
  const server: Server = createServer((s) => {
    sockets.add(s);
    total++;
    maxOpen = Math.max(maxOpen, sockets.size);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.resume(); // read (and drop) what comes, so the peer's close is noticed
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { port, open: () => sockets.size, maxOpen: () => maxOpen, total: () => total };
}

describe('probes', () => {
  it('HTTP: 2xx passes, any other status fails', async () => {
    const b = await poolBackend('a');
    expect(await probeBackend(backendConfig(b.port), check())).toBe('success');
    b.healthStatus = 503;
    expect(await probeBackend(backendConfig(b.port), check())).toBe('failure');
    expect(b.healthChecks).toBe(2);
  });

  it('WebSocket: a full handshake and close passes; a plain HTTP answer fails', async () => {
    const b = await poolBackend('a');
    expect(await probeBackend(backendConfig(b.port), check({ websocket: true, path: '/' }))).toBe('success');
    expect(b.connections).toBe(1);
    const plain = createServer((s) => {
      s.on('error', () => {});
      s.resume();
      s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    });
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => plain.close(() => resolve())));
    const address = plain.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    expect(await probeBackend(backendConfig(port), check({ websocket: true }))).toBe('failure');
  });

  it('a refused connection fails and a silent backend times out within the check timeout', async () => {
    const hung = await hungBackend();
    const started = performance.now();
    expect(await probeBackend(backendConfig(hung.port), check({ timeoutMs: 200 }))).toBe('timeout');
    expect(performance.now() - started).toBeLessThan(1000);
    // The probe leaves no socket behind.
    await waitFor(() => hung.open() === 0, 2000, 'probe socket closed');
    const refused = createServer();
    await new Promise<void>((resolve) => refused.listen(0, '127.0.0.1', resolve));
    const address = refused.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    await new Promise<void>((resolve) => refused.close(() => resolve()));
    expect(await probeBackend(backendConfig(port), check())).toBe('failure');
  });
});

describe('HealthChecker', () => {
  it('never runs two checks of one backend at once, even when the backend hangs past the interval', async () => {
    for (const websocket of [false, true]) {
      const hung = await hungBackend();
      const results: string[] = [];
      const member = { backend: backendConfig(hung.port) };
      const checker = new HealthChecker<typeof member>((_m, r) => results.push(r));
      checker.configure(check({ intervalMs: 50, timeoutMs: 250, websocket }));
      checker.track(member);
      let maxInFlight = 0;
      const sampler = setInterval(() => {
        maxInFlight = Math.max(maxInFlight, checker.inFlight);
      }, 5);
      await waitFor(() => results.length >= 3, 5000, 'three timed-out checks');
      clearInterval(sampler);
      checker.stop();
      expect(results.slice(0, 3)).toEqual(['timeout', 'timeout', 'timeout']);
      expect(maxInFlight).toBe(1);
      expect(hung.maxOpen()).toBe(1);
    }
  });

  it('spreads first checks over one interval instead of starting them all at once', async () => {
    const b = await poolBackend('a');
    const firstAt: number[] = [];
    const started = performance.now();
    const members = Array.from({ length: 20 }, () => ({ backend: backendConfig(b.port) }));
    const checker = new HealthChecker<(typeof members)[number]>((m) => {
      if (!firstAt[members.indexOf(m)]) firstAt[members.indexOf(m)] = performance.now() - started;
    });
    checker.configure(check({ intervalMs: 400 }));
    for (const m of members) checker.track(m);
    await waitFor(() => firstAt.filter((t) => t !== undefined).length === 20, 3000, 'every member checked');
    checker.stop();
    const sorted = [...firstAt].sort((x, y) => x - y);
    expect(sorted[19]! - sorted[0]!).toBeGreaterThan(100);
    expect(sorted[19]!).toBeLessThan(400 + 300);
  });

  it('stop() leaves no timers or sockets: nothing is checked afterwards', async () => {
    const b = await poolBackend('a');
    const member = { backend: backendConfig(b.port) };
    let results = 0;
    const checker = new HealthChecker<typeof member>(() => results++);
    checker.configure(check({ intervalMs: 30 }));
    checker.track(member);
    await waitFor(() => results >= 2, 3000, 'two checks');
    checker.stop();
    const seen = b.healthChecks;
    await delay(200);
    expect(b.healthChecks).toBeLessThanOrEqual(seen + 1); // one may have been in flight
  });
});
