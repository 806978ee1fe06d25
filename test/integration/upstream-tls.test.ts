// wss:// backends: verified against the system CAs by default, or against pools.NAME.tls (a private CA and the
// name to check), for the WebSocket upgrade, health checks and plain HTTP alike.

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { type CertFiles, makeCert } from '../helpers/certs.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { startDnsStub } from '../helpers/dns-stub.js';
import { metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

/** A wss:// echo backend whose self-signed certificate names `backend.internal` only. */
async function tlsBackend(cert: CertFiles): Promise<string> {
  const server: Server = createServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('plain over tls');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `wss://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A WebSocket through the gateway opens and `text` comes back from the (echo) backend. */
async function expectEcho(gw: TestGateway, text: string): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const echo = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
  ws.send(text);
  expect(await echo).toBe(text);
  ws.close();
}

async function gatewayWith(
  backend: string,
  tls: Record<string, unknown> | undefined,
  members: Record<string, unknown> = { backends: [backend] },
): Promise<TestGateway> {
  const config = simpleConfig([backend]);
  (config.pools as Record<string, Record<string, unknown>>).main = {
    hashKey: 'ip',
    ...members,
    ...(tls ? { tls } : {}),
    healthCheck: { path: '/health', interval: '200ms', timeout: '1s', healthyThreshold: 1, unhealthyThreshold: 1 },
  };
  const gw = await startGateway(config, '/virtual/wsgate-tls.yaml');
  cleanups.push(() => gw.stop());
  return gw;
}

describe('wss:// backends', () => {
  const cert = makeCert('backend.internal');

  it('a certificate the system does not trust is refused: 502, never tunnelled', async () => {
    const gw = await gatewayWith(await tlsBackend(cert), undefined);
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(502);
    res.socket.destroy();
  });

  it('with the pool CA and server name: upgrade, echo, health checks and plain HTTP all verify and work', async () => {
    const gw = await gatewayWith(await tlsBackend(cert), { ca: cert.cert, serverName: 'backend.internal' });
    await expectEcho(gw, 'through verified tls');
    await waitFor(
      async () =>
        (metricValue(await gw.metrics(), 'wsgate_backend_health_checks_total', { result: 'success' }) ?? 0) > 0,
    );
    const res = await fetch(`http://127.0.0.1:${gw.port}/poll`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('plain over tls');
  });

  it('the right CA but a name the certificate does not carry is refused', async () => {
    const gw = await gatewayWith(await tlsBackend(cert), { ca: cert.cert, serverName: 'other.internal' });
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(502);
    res.socket.destroy();
  });

  it('insecureSkipVerify accepts any certificate (for tests and labs only)', async () => {
    const gw = await gatewayWith(await tlsBackend(cert), { insecureSkipVerify: true });
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(101);
    res.socket.destroy();
  });
});

describe('wss:// backends found by DNS discovery', () => {
  const cert = makeCert('chat.test');

  /** A wss backend whose certificate names the discovery name `chat.test`, found through a real UDP nameserver. */
  async function discovered(tls: Record<string, unknown>): Promise<TestGateway> {
    const backend = await tlsBackend(cert);
    const stub = await startDnsStub();
    cleanups.push(() => stub.close());
    stub.records.set('chat.test', ['127.0.0.1']);
    const port = Number(new URL(backend).port);
    return gatewayWith(backend, tls, {
      discovery: { dns: 'chat.test', port, scheme: 'wss', interval: '1s', nameservers: [stub.server] },
    });
  }

  it('are dialled with TLS and verified against the discovery name: upgrade and echo work', async () => {
    const gw = await discovered({ ca: cert.cert });
    await expectEcho(gw, 'discovered over tls');
  });

  it('a serverName the certificate does not carry is refused (the name, not the address, is checked)', async () => {
    const gw = await discovered({ ca: cert.cert, serverName: 'other.test' });
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(502);
    res.socket.destroy();
  });
});
