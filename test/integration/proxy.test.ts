// The data path end to end on real sockets: upstream retries and refusals, byte-identical tunnelling both ways,
// consistent hashing across connections, teardown in both directions, and the metrics that describe it.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { echoBackendFor, refusedPort, startRawBackend, type TestBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { IN_CI } from '../helpers/paths.js';
import { closesWithin, rawUpgrade, readUntilClose, SAMPLE_ACCEPT } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

async function gatewayFor(backends: string[], extra = {}): Promise<TestGateway> {
  const gw = await startGateway(simpleConfig(backends, extra));
  cleanups.push(() => gw.stop());
  return gw;
}

const echo = (id: string): Promise<TestBackend> => echoBackendFor(cleanups, id);

function connectClient(port: number, user: string): Promise<{ ws: WebSocket; backend: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, {
      headers: { 'x-user-id': user },
      maxPayload: 64 * 1024 * 1024,
    });
    ws.once('message', (d) => resolve({ ws, backend: (JSON.parse(d.toString()) as { backend: string }).backend }));
    ws.once('error', reject);
  });
}

describe('upstream handshake', () => {
  it('tries the next backend when one refuses the connection', async () => {
    const dead = await refusedPort();
    const live = await echo('live');
    const gw = await gatewayFor([`ws://127.0.0.1:${dead}`, live.url]);
    // Whatever the ring prefers, every user must end up on the live backend.
    for (let i = 0; i < 10; i++) {
      const { ws, backend } = await connectClient(gw.port, `user-${i}`);
      expect(backend).toBe('live');
      ws.close();
    }
    const errors = metricValue(await gw.metrics(), 'wsgate_upstream_errors_total', { reason: 'connect' }) ?? 0;
    expect(errors).toBeGreaterThan(0);
  });

  it('answers 502 when every backend is down', async () => {
    const gw = await gatewayFor([`ws://127.0.0.1:${await refusedPort()}`, `ws://127.0.0.1:${await refusedPort()}`]);
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(502);
    expect(await closesWithin(res.socket, 5000)).toBe(true);
  });

  it('relays a backend 403 as-is and tunnels nothing', async () => {
    const raw = await startRawBackend(
      () => 'HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Reason: nope\r\n\r\ndenied',
    );
    cleanups.push(() => raw.close());
    const gw = await gatewayFor([raw.url]);
    const res = await rawUpgrade(gw.port, { trailing: 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n' });
    expect(res.status).toBe(403);
    expect(res.headers['x-reason']).toBe('nope');
    const body = await readUntilClose(res.socket, res.rest);
    expect(body.toString()).toBe('denied');
    // The pipelined request stayed with the proxy: the backend saw exactly one request head.
    const seen = Buffer.concat(raw.received[0] ?? []).toString();
    expect(seen).not.toContain('/smuggled');
    expect(seen.split('\r\n\r\n').filter((s) => s.length > 0)).toHaveLength(1);
  });

  it('answers 502 to a 101 with a wrong Sec-WebSocket-Accept, and 502 to one without it', async () => {
    for (const accept of ['Sec-WebSocket-Accept: d3Jvbmc=\r\n', '']) {
      const raw = await startRawBackend(
        () => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${accept}\r\n`,
      );
      cleanups.push(() => raw.close());
      const gw = await gatewayFor([raw.url]);
      const res = await rawUpgrade(gw.port);
      expect(res.status).toBe(502);
      expect(res.headers['x-wsgate-error']).toBe('WSG_UPSTREAM_BAD_ACCEPT');
    }
  });

  it('answers 504 when the backend accepts TCP but never answers', async () => {
    const silent = await startRawBackend(() => undefined);
    cleanups.push(() => silent.close());
    const gw = await gatewayFor([silent.url], { timeouts: { handshake: '300ms', idle: '60s', drain: '1s' } });
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(504);
  });

  it('verifies the backend accept against the client key (RFC 6455 §1.3 vector)', async () => {
    const raw = await startRawBackend(
      () =>
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
    );
    cleanups.push(() => raw.close());
    const gw = await gatewayFor([raw.url]);
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(101);
    res.socket.destroy();
  });
});

describe('tunnel', () => {
  it('carries 1000 small messages and one 16 MiB binary message byte-identical both ways', async () => {
    const b = await echo('b');
    const gw = await gatewayFor([b.url]);
    const { ws } = await connectClient(gw.port, 'alice');
    const received: Buffer[] = [];
    const all = new Promise<void>((resolve) => {
      ws.on('message', (d: Buffer) => {
        received.push(d);
        if (received.length === 1001) resolve();
      });
    });
    const sent: Buffer[] = [];
    for (let i = 0; i < 1000; i++) {
      const m = randomBytes(1 + (i % 200));
      sent.push(m);
      ws.send(m);
    }
    const big = randomBytes(16 * 1024 * 1024);
    sent.push(big);
    ws.send(big);
    await all;
    for (let i = 0; i < sent.length; i++) expect(received[i]?.equals(sent[i] as Buffer)).toBe(true);
    ws.close();
  });

  it('closes the backend when the client disconnects, and the active gauge returns to 0', async () => {
    const b = await echo('b');
    const gw = await gatewayFor([b.url]);
    const { ws } = await connectClient(gw.port, 'alice');
    expect(metricValue(await gw.metrics(), 'wsgate_connections_active')).toBe(1);
    expect(b.sockets.size).toBe(1);
    (ws as unknown as { _socket: { destroy(): void } })._socket.destroy();
    await waitFor(() => b.sockets.size === 0);
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0);
    expect(gw.gateway.tunnels.size).toBe(0);
    expect(gw.gateway.admission.active).toBe(0);
  });

  it('closes the client when the backend disconnects, and the active gauge returns to 0', async () => {
    const b = await echo('b');
    const gw = await gatewayFor([b.url]);
    const { ws } = await connectClient(gw.port, 'alice');
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    b.killConnections();
    await closed;
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0);
    expect(gw.gateway.admission.active).toBe(0);
  });

  it('holds client bytes sent before the 101 and never forwards them on a refusal', async () => {
    const raw = await startRawBackend(() => 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n');
    cleanups.push(() => raw.close());
    const gw = await gatewayFor([raw.url]);
    const res = await rawUpgrade(gw.port, { trailing: Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 0]) });
    expect(res.status).toBe(500);
    await closesWithin(res.socket, 5000);
    const seen = Buffer.concat(raw.received[0] ?? []);
    expect(seen.indexOf(Buffer.from([0x81, 0x85]))).toBe(-1);
  });
});

describe('consistent hashing', () => {
  it('sends the same key to the same backend across 100 connections, and different keys spread', async () => {
    const backends = await Promise.all(['a', 'b', 'c'].map(echo));
    const gw = await gatewayFor(backends.map((b) => b.url));
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const { ws, backend } = await connectClient(gw.port, 'user-42');
      seen.add(backend);
      ws.close();
    }
    expect(seen.size).toBe(1);
    const spread = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const { ws, backend } = await connectClient(gw.port, `user-${i}`);
      spread.add(backend);
      ws.close();
    }
    expect(spread.size).toBe(3);
  });

  it('a repeated hash-key header keys on its first occurrence', async () => {
    const backends = await Promise.all(['a', 'b', 'c'].map(echo));
    const gw = await gatewayFor(backends.map((b) => b.url));
    for (let i = 0; i < 8; i++) {
      const alone = await connectClient(gw.port, `user-${i}`);
      alone.ws.close();
      const repeated = await new Promise<string>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`, { headers: { 'x-user-id': [`user-${i}`, 'intruder'] } });
        ws.once('message', (d) => {
          resolve((JSON.parse(d.toString()) as { backend: string }).backend);
          ws.close();
        });
        ws.once('error', reject);
      });
      expect(repeated).toBe(alone.backend);
    }
  });

  it('respects bounded loads: no backend holds more than ceil(c × average) live connections', async () => {
    const backends = await Promise.all(['a', 'b', 'c', 'd'].map(echo));
    const config = simpleConfig(backends.map((b) => b.url));
    (config.pools as Record<string, Record<string, unknown>>).main = {
      hashKey: 'header:x-user-id',
      balanceFactor: 1.25,
      backends: backends.map((b) => b.url),
    };
    const gw = await startGateway(config);
    cleanups.push(() => gw.stop());
    const clients: WebSocket[] = [];
    const counts = new Map<string, number>();
    for (let i = 0; i < 80; i++) {
      const { ws, backend } = await connectClient(gw.port, `user-${i}`);
      clients.push(ws);
      counts.set(backend, (counts.get(backend) ?? 0) + 1);
    }
    const cap = Math.ceil((1.25 * 80) / 4);
    for (const c of counts.values()) expect(c).toBeLessThanOrEqual(cap);
    for (const ws of clients) ws.close();
  });
});

describe('metrics', () => {
  it('reports exact values after a known sequence', async () => {
    const b = await echo('b');
    const gw = await gatewayFor([b.url]);
    const c1 = await connectClient(gw.port, 'u1');
    const c2 = await connectClient(gw.port, 'u2');
    const notFound = await rawUpgrade(gw.port, { headers: { 'Sec-WebSocket-Version': '7' } });
    expect(notFound.status).toBe(426);
    c1.ws.send('hello');
    await new Promise((r) => c1.ws.once('message', r));
    let text = await gw.metrics();
    expect(metricValue(text, 'wsgate_connections_active', { backend: b.url })).toBe(2);
    expect(metricValue(text, 'wsgate_connections_total', { backend: b.url })).toBe(2);
    expect(metricValue(text, 'wsgate_handshake_rejections_total', { status: '426', reason: 'bad_version' })).toBe(1);
    expect(metricValue(text, 'wsgate_upstream_handshake_seconds_count', { backend: b.url })).toBe(2);
    // Client → backend: one masked 5-byte text frame = 2 + 4 + 5 bytes.
    expect(metricValue(text, 'wsgate_bytes_total', { direction: 'client_to_backend' })).toBe(11);
    c1.ws.close();
    c2.ws.close();
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0);
    text = await gw.metrics();
    expect(metricValue(text, 'wsgate_connections_total', { backend: b.url })).toBe(2);
  });

  it('serves /metrics, /healthz and /readyz on the admin listener', async () => {
    const b = await echo('b');
    const gw = await gatewayFor([b.url]);
    const base = `http://127.0.0.1:${gw.adminPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    expect(await metrics.text()).toContain('wsgate_connections_active{route="main",pool="main",backend=');
  });
});

describe('admission, fallbacks and plain HTTP', () => {
  it('answers 429 past maxConnectionsPerIp and admits again once a connection closes', async () => {
    const b = await echo('b');
    const gw = await gatewayFor([b.url], { limits: { maxConnections: 100, maxConnectionsPerIp: 2 } });
    const c1 = await connectClient(gw.port, 'u1');
    const c2 = await connectClient(gw.port, 'u2');
    const third = await rawUpgrade(gw.port);
    expect(third.status).toBe(429);
    expect(third.headers['x-wsgate-error']).toBe('WSG_TOO_MANY_FROM_IP');
    c1.ws.close();
    await waitFor(() => gw.gateway.admission.active === 1);
    const again = await connectClient(gw.port, 'u3');
    expect(again.backend).toBe('b');
    c2.ws.close();
    again.ws.close();
  });

  it('counts a missing hash key that fell back to the client IP', async () => {
    const b = await echo('b');
    const gw = await gatewayFor([b.url]);
    const res = await rawUpgrade(gw.port); // no x-user-id header
    expect(res.status).toBe(101);
    expect(metricValue(await gw.metrics(), 'wsgate_hash_key_fallbacks_total', { route: 'main' })).toBe(1);
    res.socket.destroy();
  });

  it('proxies plain HTTP on a route to the backend the same key picks', async () => {
    const backends = await Promise.all(['a', 'b', 'c'].map(echo));
    const gw = await gatewayFor(backends.map((b) => b.url));
    for (const user of ['alice', 'bob', 'carol', 'dave']) {
      const { ws, backend } = await connectClient(gw.port, user);
      ws.close();
      const res = await fetch(`http://127.0.0.1:${gw.port}/poll`, { headers: { 'x-user-id': user } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-backend-id')).toBe(backend);
      expect(await res.text()).toBe(`plain ${backend}`);
    }
  });
});

describe('exposition format', () => {
  it('passes promtool check metrics', async () => {
    const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
    if (!promtool) {
      // CI installs prometheus (see .ci/run); a developer machine without it cannot run this check.
      expect(IN_CI, 'promtool is required in CI').toBe(false);
      return;
    }
    const b = await echo('b');
    const gw = await gatewayFor([b.url]);
    const { ws } = await connectClient(gw.port, 'u');
    ws.send('x');
    await new Promise((r) => ws.once('message', r));
    const text = await (await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`)).text();
    const result = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(result.stderr + result.stdout).not.toMatch(/error/i);
    expect(result.status).toBe(0);
    ws.close();
  });
});
