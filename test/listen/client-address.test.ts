// listeners[].clientAddress end to end with real sockets: a PROXY header (v1, v2, before TLS) or trusted
// X-Forwarded-For names the client, and everything that used the socket's address uses the client's.

import { connect, type Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { proxyHeaderFor } from '../../src/upstream/proxy-header.js';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { type Cleanup, cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, metricValue, simpleConfig, startGatewayFor, type TestGateway } from '../helpers/gateway.js';
import { readResponseHead, readUntilClose, upgradeRequest } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Cleanup[] = cleanupAfterEach();

async function backend(id: string): Promise<TestBackend> {
  const b = await startEchoBackend(id);
  cleanups.push(() => b.close());
  return b;
}

function config(backends: readonly string[], clientAddress: ConfigObject, extra: ConfigObject = {}): ConfigObject {
  const c = simpleConfig(backends, extra);
  c.listeners = [{ name: 'public', address: '127.0.0.1', port: 0, clientAddress }];
  return c;
}

/** Opens a TCP connection and sends `preamble` (a PROXY header), then `request`; resolves with the socket. */
function viaBalancer(port: number, preamble: Buffer | string, request?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => {
      socket.write(preamble);
      if (request !== undefined) socket.write(request);
      resolve(socket);
    });
    socket.once('error', reject);
    cleanups.push(() => socket.destroy());
  });
}

const v2 = (src: string, port = 40000) =>
  proxyHeaderFor('v2', { address: src, port }, { address: '127.0.0.1', port: 8080 });
const v1 = (src: string, port = 40000) =>
  proxyHeaderFor('v1', { address: src, port }, { address: '127.0.0.1', port: 8080 });

async function upgradeVia(gw: TestGateway, preamble: Buffer, headers: Record<string, string> = {}) {
  const socket = await viaBalancer(gw.port, preamble, upgradeRequest({ headers: { 'X-User-Id': 'u', ...headers } }));
  return { socket, head: await readResponseHead(socket) };
}

describe('PROXY protocol on a listener', () => {
  it('v2: the backend sees the client from the header in X-Forwarded-For, split from the request or not', async () => {
    const b = await backend('b');
    const gw = await startGatewayFor(cleanups, config([b.url], { proxyProtocol: 'v2' }));
    const { head } = await upgradeVia(gw, v2('203.0.113.7'));
    expect(head.status).toBe(101);
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('203.0.113.7');
    // The header's bytes in one write with the request, then byte by byte.
    const whole = Buffer.concat([v2('203.0.113.8'), Buffer.from(upgradeRequest({ headers: { 'X-User-Id': 'u' } }))]);
    const socket = await viaBalancer(gw.port, whole);
    expect((await readResponseHead(socket)).status).toBe(101);
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('203.0.113.8');
    const slow = await viaBalancer(gw.port, Buffer.alloc(0));
    for (const byte of whole) slow.write(Buffer.from([byte]));
    expect((await readResponseHead(slow)).status).toBe(101);
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('203.0.113.8');
  });

  it('v1 and IPv6 clients; `any` takes both; LOCAL keeps the socket address', async () => {
    const b = await backend('b');
    const gw = await startGatewayFor(cleanups, config([b.url], { proxyProtocol: 'any' }));
    await upgradeVia(gw, v1('198.51.100.20'));
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('198.51.100.20');
    await upgradeVia(gw, v2('2001:db8::42'));
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('2001:db8::42');
    await upgradeVia(gw, Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex'));
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('before TLS on a TLS listener', async () => {
    const b = await backend('b');
    const c = simpleConfig([b.url]);
    c.listeners = [{ name: 'tls', address: '127.0.0.1', port: 0, tls: {}, clientAddress: { proxyProtocol: 'v1' } }];
    const gw = await startGatewayFor(cleanups, c);
    const raw = await viaBalancer(gw.tlsPort, v1('192.0.2.99'));
    const secure: TLSSocket = await new Promise((resolve, reject) => {
      const s = tlsConnect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' }, () => resolve(s));
      s.once('error', reject);
    });
    secure.write(upgradeRequest({ headers: { 'X-User-Id': 'u' } }));
    expect((await readResponseHead(secure as unknown as Socket)).status).toBe(101);
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('192.0.2.99');
    expect(b.requests.at(-1)?.headers['x-forwarded-proto']).toBe('https');
    secure.destroy();
  });

  it('hashKey ip and maxConnectionsPerIp act on the client the header names, not on the balancer', async () => {
    const backends = await Promise.all(['b1', 'b2', 'b3'].map(backend));
    const gw = await startGatewayFor(
      cleanups,
      config(
        backends.map((b) => b.url),
        { proxyProtocol: 'v2', trustedProxies: ['127.0.0.1'] },
        { limits: { maxConnections: 1000, maxConnectionsPerIp: 2 } },
      ),
    );
    // Three connections from one client: the third is refused (429), though all come from the same balancer.
    const heads = [];
    for (let i = 0; i < 3; i++) heads.push((await upgradeVia(gw, v2('203.0.113.50', 40000 + i))).head.status);
    expect(heads).toEqual([101, 101, 429]);
    // Another client through the same balancer still gets in.
    expect((await upgradeVia(gw, v2('203.0.113.51'))).head.status).toBe(101);
  });

  it('hashKey ip: each client keeps its backend, and clients spread over the backends', async () => {
    const backends = await Promise.all(['b1', 'b2', 'b3'].map(backend));
    const c = config(
      backends.map((b) => b.url),
      { proxyProtocol: 'v2' },
    );
    (c.pools as Record<string, ConfigObject>).main = { hashKey: 'ip', backends: backends.map((b) => b.url) };
    const gw = await startGatewayFor(cleanups, c);
    const seen = new Map<string, string>();
    for (let round = 0; round < 2; round++) {
      for (let n = 1; n <= 30; n++) {
        const client = `198.51.100.${n}`;
        const { socket } = await upgradeVia(gw, v2(client));
        const id = backends.find(
          (b) => b.requests.at(-1) && b.requests.at(-1)?.headers['x-forwarded-for'] === client,
        )?.id;
        expect(id, client).toBeDefined();
        if (round === 0) seen.set(client, id as string);
        else expect(id, client).toBe(seen.get(client));
        socket.destroy();
      }
    }
    expect(new Set(seen.values()).size).toBe(3);
  });
});

describe('PROXY protocol refusals: closed without an answer, counted', () => {
  async function refused(gw: TestGateway, preamble: Buffer | string): Promise<Buffer> {
    const socket = await viaBalancer(gw.port, preamble, upgradeRequest());
    return readUntilClose(socket);
  }

  it('a malformed header, a missing one, and a v1 header on a v2 listener', async () => {
    const b = await backend('b');
    const gw = await startGatewayFor(cleanups, config([b.url], { proxyProtocol: 'v2' }));
    expect((await refused(gw, v1('1.2.3.4'))).length).toBe(0);
    expect((await refused(gw, '')).length).toBe(0); // the request itself is no header
    expect((await refused(gw, Buffer.from('0d0a0d0a000d0a515549540a31', 'hex'))).length).toBe(0);
    await waitFor(
      async () =>
        metricValue(await gw.metrics(), 'wsgate_client_address_rejections_total', { reason: 'invalid' }) === 3,
    );
    expect(b.requests).toHaveLength(0);
  });

  it('a peer outside trustedProxies is closed before it sends anything', async () => {
    const b = await backend('b');
    const gw = await startGatewayFor(
      cleanups,
      config([b.url], { proxyProtocol: 'v2', trustedProxies: ['10.0.0.0/8'] }),
    );
    expect((await refused(gw, v2('1.2.3.4'))).length).toBe(0);
    expect(
      metricValue(await gw.metrics(), 'wsgate_client_address_rejections_total', {
        listener: 'public',
        reason: 'untrusted',
      }),
    ).toBe(1);
  });

  it('a header that does not arrive within timeouts.handshake', async () => {
    const b = await backend('b');
    const gw = await startGatewayFor(
      cleanups,
      config([b.url], { proxyProtocol: 'v1' }, { timeouts: { handshake: '300ms', idle: '60s', drain: '1s' } }),
    );
    const socket = await viaBalancer(gw.port, 'PROXY TCP4 1.2.3.4');
    const started = performance.now();
    expect((await readUntilClose(socket)).length).toBe(0);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    expect(metricValue(await gw.metrics(), 'wsgate_client_address_rejections_total', { reason: 'timeout' })).toBe(1);
  });
});

describe('forwardedFor behind an L7 proxy', () => {
  it('a trusted peer’s X-Forwarded-For names the client; an untrusted peer’s is ignored for the address', async () => {
    const b = await backend('b');
    const gw = await startGatewayFor(
      cleanups,
      config([b.url], { forwardedFor: true, trustedProxies: ['127.0.0.1/32'] }),
    );
    const socket = await viaBalancer(
      gw.port,
      '',
      upgradeRequest({ headers: { 'X-User-Id': 'u', 'X-Forwarded-For': '10.9.9.9, 198.51.100.77' } }),
    );
    expect((await readResponseHead(socket)).status).toBe(101);
    // Appended to, as before: the backend counts from the right and finds the client.
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('10.9.9.9, 198.51.100.77, 198.51.100.77');
    const gw2 = await startGatewayFor(
      cleanups,
      config([b.url], { forwardedFor: true, trustedProxies: ['10.0.0.0/8'] }),
    );
    const spoofed = await viaBalancer(
      gw2.port,
      '',
      upgradeRequest({ headers: { 'X-User-Id': 'u', 'X-Forwarded-For': '198.51.100.77' } }),
    );
    expect((await readResponseHead(spoofed)).status).toBe(101);
    expect(b.requests.at(-1)?.headers['x-forwarded-for']).toBe('198.51.100.77, 127.0.0.1');
  });
});
