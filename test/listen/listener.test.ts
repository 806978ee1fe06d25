// Who reads the first request head of a connection: wsgate's reader for a whole upgrade head, node:http for the
// rest (split heads, plain requests, a second request on a keep-alive connection), and node:http for everything
// with WSGATE_UPGRADE_PARSER=node. Every path must end in the same 101.

import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { spawnGateway } from '../helpers/child-gateway.js';
import { listenersOf, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { openSocket, readResponseHead, SAMPLE_ACCEPT, upgradeRequest } from '../helpers/raw-client.js';
import { delay } from '../helpers/wait.js';

let backend: TestBackend;
let gw: TestGateway;
/** Upgrades node:http parsed, per listener (the fast path never emits 'upgrade' on the server). */
const nodeUpgrades = { plain: 0, tls: 0 };

beforeAll(async () => {
  backend = await startEchoBackend('b', { welcome: false });
  gw = await startGateway(
    simpleConfig([backend.url], {
      listeners: [
        { name: 'public', address: '127.0.0.1', port: 0 },
        { name: 'secure', address: '127.0.0.1', port: 0, tls: {} },
      ],
    }),
  );
  // Reaching into the gateway for its servers: what is observed is which parser produced the upgrade.
  const listeners = listenersOf(gw.gateway);
  for (const l of listeners) {
    const server: Server = l.http;
    server.on('upgrade', () => nodeUpgrades[l.secure ? 'tls' : 'plain']++);
  }
});

afterAll(async () => {
  await gw.stop();
  await backend.close();
});

async function expectSwitched(socket: Awaited<ReturnType<typeof openSocket>>): Promise<void> {
  const reading = readResponseHead(socket);
  socket.resume(); // a socket paused after an earlier response
  const response = await reading;
  expect(response.status).toBe(101);
  expect(response.headers['sec-websocket-accept']).toBe(SAMPLE_ACCEPT);
  socket.destroy();
}

describe('first request head', () => {
  it('a whole upgrade head is read by wsgate (ws and wss)', async () => {
    const before = { ...nodeUpgrades };
    for (const tls of [false, true]) {
      const socket = await openSocket(tls ? gw.tlsPort : gw.port, tls);
      socket.write(upgradeRequest());
      await expectSwitched(socket);
    }
    expect(nodeUpgrades).toEqual(before);
  });

  it('an upgrade head split over two writes is read by node:http and switches', async () => {
    const before = nodeUpgrades.plain;
    const socket = await openSocket(gw.port);
    const request = upgradeRequest();
    socket.write(request.slice(0, 30));
    await delay(50);
    socket.write(request.slice(30));
    await expectSwitched(socket);
    expect(nodeUpgrades.plain).toBe(before + 1);
  });

  it('a plain request, then an upgrade on the same keep-alive connection: node:http reads both', async () => {
    const before = nodeUpgrades.plain;
    const socket = await openSocket(gw.port);
    socket.write('GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const plain = await readResponseHead(socket);
    expect(plain.status).toBe(200);
    const chunked = plain.headers['transfer-encoding'] === 'chunked';
    const length = Number(plain.headers['content-length']);
    const body = await readBody(socket, plain.rest, (b) =>
      chunked ? b.toString().endsWith('\r\n0\r\n\r\n') : b.length >= length,
    );
    expect(body.toString()).toContain('plain b');
    socket.write(upgradeRequest());
    await expectSwitched(socket);
    expect(nodeUpgrades.plain).toBe(before + 1);
  });
});

describe('WSGATE_UPGRADE_PARSER=node', () => {
  it('leaves every head to node:http, says so at start, and switches', async () => {
    const child = await spawnGateway(simpleConfig([backend.url]), { env: { WSGATE_UPGRADE_PARSER: 'node' } });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${child.port}/`);
      const echoed = new Promise<string>((resolve, reject) => {
        ws.once('open', () => ws.send('ping'));
        ws.once('message', (data) => resolve(String(data)));
        ws.once('error', reject);
      });
      expect(await echoed).toBe('ping');
      ws.terminate();
      expect(child.stdout.find((l) => l.includes('"upgradeParser"'))).toContain('"upgradeParser":"node"');
    } finally {
      await child.stop();
    }
  });
});

/** Reads on from the bytes that came with the head until `complete`; leaves the socket paused after it. */
async function readBody(
  socket: Awaited<ReturnType<typeof openSocket>>,
  start: Buffer,
  complete: (body: Buffer) => boolean,
): Promise<Buffer> {
  let body = start;
  while (!complete(body)) {
    socket.resume();
    const chunk = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.pause();
    body = Buffer.concat([body, chunk]);
  }
  return body;
}
