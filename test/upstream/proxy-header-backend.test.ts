// pools.NAME.proxyProtocol: every connection wsgate opens to a backend starts with a PROXY header naming the
// client (upgrades, plain HTTP), health checks with LOCAL; plain HTTP connections are never shared between clients.

import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { proxyHeaderFor } from '../../src/upstream/proxy-header.js';
import { type Cleanup, cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, simpleConfig, startGatewayFor } from '../helpers/gateway.js';
import { type ProxyProtocolBackend, startProxyProtocolBackend } from '../helpers/proxy-protocol-backend.js';
import { readResponseHead, upgradeRequest } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Cleanup[] = cleanupAfterEach();

async function proxyProtocolBackend(): Promise<ProxyProtocolBackend> {
  const backend = await startProxyProtocolBackend('b');
  cleanups.push(() => backend.close());
  return backend;
}

function config(backendUrl: string, proxyProtocol: string, extra: ConfigObject = {}): ConfigObject {
  const c = simpleConfig([backendUrl], extra);
  c.listeners = [{ name: 'public', address: '127.0.0.1', port: 0, clientAddress: { proxyProtocol: 'v2' } }];
  c.pools = { main: { hashKey: 'ip', backends: [backendUrl], proxyProtocol } };
  return c;
}

/** A connection to the gateway as a PROXY v2 balancer makes it, with `bytes` after the header. */
function viaBalancer(port: number, client: string, bytes: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => {
      socket.write(Buffer.concat([toGateway(client, 40000), Buffer.from(bytes)]));
      resolve(socket);
    });
    socket.once('error', reject);
    cleanups.push(() => socket.destroy());
  });
}

const toGateway = (client: string, port: number) =>
  proxyHeaderFor('v2', { address: client, port }, { address: '192.0.2.1', port: 443 });

describe('PROXY protocol toward backends', () => {
  it.each(['v1', 'v2'])(
    '%s: an upgrade’s backend connection names the client, its port and what it connected to',
    async (version) => {
      const backend = await proxyProtocolBackend();
      const gw = await startGatewayFor(cleanups, config(backend.url, version));
      const socket = connect({ port: gw.port, host: '127.0.0.1' });
      cleanups.push(() => socket.destroy());
      socket.write(Buffer.concat([toGateway('203.0.113.9', 51000), Buffer.from(upgradeRequest())]));
      expect((await readResponseHead(socket)).status).toBe(101);
      expect(backend.connections.at(-1)).toEqual({
        header: {
          kind: 'proxied',
          version: version === 'v1' ? 1 : 2,
          sourceAddress: '203.0.113.9',
          sourcePort: 51000,
          destinationAddress: '192.0.2.1',
          destinationPort: 443,
        },
        forwardedFor: ['203.0.113.9'],
      });
    },
  );

  it('plain HTTP: each client connection gets backend connections of its own, each naming that client', async () => {
    const backend = await proxyProtocolBackend();
    const gw = await startGatewayFor(cleanups, config(backend.url, 'v2'));
    for (const client of ['198.51.100.1', '198.51.100.2']) {
      const request = `GET /poll HTTP/1.1\r\nHost: x\r\n\r\nGET /poll HTTP/1.1\r\nHost: x\r\n\r\n`;
      const socket = await viaBalancer(gw.port, client, request);
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString('latin1');
      });
      await waitFor(() => text.split('plain').length - 1 === 2, 5000, `two answers for ${client}`);
    }
    const plain = backend.connections.filter((c) => c.forwardedFor.length > 0);
    // Two client connections, two requests each: two backend connections, never one shared by both clients.
    expect(plain.map((c) => [c.header.kind === 'proxied' && c.header.sourceAddress, c.forwardedFor])).toEqual([
      ['198.51.100.1', ['198.51.100.1', '198.51.100.1']],
      ['198.51.100.2', ['198.51.100.2', '198.51.100.2']],
    ]);
  });

  it('health checks (HTTP and WebSocket) send LOCAL', async () => {
    for (const websocket of [false, true]) {
      const backend = await proxyProtocolBackend();
      const c = config(backend.url, 'v2');
      (c.pools as Record<string, ConfigObject>).main = {
        hashKey: 'ip',
        backends: [backend.url],
        proxyProtocol: 'v2',
        healthCheck: { path: '/health', interval: '100ms', timeout: '1s', websocket },
      };
      const gw = await startGatewayFor(cleanups, c);
      await waitFor(() => backend.connections.length >= 2, 5000, 'two health checks');
      expect(backend.connections.slice(0, 2).map((s) => s.header)).toEqual([
        { kind: 'local', version: 2 },
        { kind: 'local', version: 2 },
      ]);
      // And the backend passes them: it stays in the ring.
      const head = await readResponseHead(await viaBalancer(gw.port, '203.0.113.1', upgradeRequest()));
      expect(head.status).toBe(101);
    }
  });
});
