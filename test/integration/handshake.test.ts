// Upgrade validation through a running gateway (RFC 6455 §4.2.1): every refusal has its exact status, the
// socket is closed, nothing reaches a backend, and the rejection is counted.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { handshakeConfig, metricValue, startGateway, type TestGateway } from '../helpers/gateway.js';
import {
  closesWithin,
  rawUpgrade,
  readUntilClose,
  SAMPLE_ACCEPT,
  sendRequest,
  upgradeRequest,
} from '../helpers/raw-client.js';

let backend: TestBackend;
let gw: TestGateway;

beforeAll(async () => {
  backend = await startEchoBackend('b1');
  gw = await startGateway(
    handshakeConfig(backend.url, {
      listeners: [
        { name: 'public', address: '127.0.0.1', port: 0 },
        { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
      ],
    }),
  );
});

afterAll(async () => {
  await gw.stop();
  await backend.close();
});

describe('successful handshakes', () => {
  it('switches protocols over ws:// with the RFC 6455 §1.3 accept value', async () => {
    const res = await rawUpgrade(gw.port, { path: '/ws' });
    expect(res.status).toBe(101);
    expect(res.headers['sec-websocket-accept']).toBe(SAMPLE_ACCEPT);
    res.socket.destroy();
  });

  it('switches protocols over wss:// and relays messages', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${gw.tlsPort}/ws`, { rejectUnauthorized: false });
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d) => resolve(d.toString()));
      ws.once('error', reject);
    });
    expect(JSON.parse(first)).toEqual({ backend: 'b1' });
    ws.send('over tls');
    const echo = await new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
    expect(echo).toBe('over tls');
    ws.close();
  });

  it('forwards X-Forwarded-For/-Proto/-Host and Forwarded to the backend', async () => {
    const before = backend.requests.length;
    const res = await rawUpgrade(gw.port, { path: '/ws?x=1', headers: { 'X-Forwarded-For': '10.9.9.9' } });
    expect(res.status).toBe(101);
    const req = backend.requests[before];
    expect(req?.headers['x-forwarded-for']).toBe('10.9.9.9, 127.0.0.1');
    expect(req?.headers['x-forwarded-proto']).toBe('http');
    expect(req?.headers['x-forwarded-host']).toBe('localhost');
    expect(req?.headers.forwarded).toBe('for=127.0.0.1;proto=http;host=localhost');
    expect(req?.url).toBe('/ws?x=1');
    res.socket.destroy();
  });
});

describe('absolute-form request targets (RFC 9112 §3.2.2)', () => {
  it('are accepted: the target’s authority replaces Host for routing and for the backend', async () => {
    const before = backend.requests.length;
    const res = await rawUpgrade(gw.port, {
      path: 'http://chat.example.com/chat?room=7',
      host: 'elsewhere.example',
      headers: { Origin: 'https://chat.example.com' },
    });
    // Only route "chat" (host chat.example.com) serves /chat: the Host header alone would have found nothing.
    expect(res.status).toBe(101);
    const req = backend.requests[before];
    expect(req?.url).toBe('/chat?room=7');
    expect(req?.headers.host).toBe('chat.example.com');
    expect(req?.headers['x-forwarded-host']).toBe('chat.example.com');
    expect(req?.rawHeaders.filter((h) => h.toLowerCase() === 'host')).toHaveLength(1);
    res.socket.destroy();
  });

  it('are accepted for plain HTTP too, with "/" for an empty path', async () => {
    const res = await sendRequest(
      gw.port,
      'GET http://localhost:1234 HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n',
    );
    // Route "main" is /ws only: "/" has no route, which proves the path was rewritten and then routed.
    expect(res.status).toBe(404);
    const plain = await sendRequest(
      gw.port,
      'GET HTTP://localhost/ws?x=1 HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n',
    );
    expect(plain.status).toBe(200);
    expect(plain.headers['x-backend-id']).toBe('b1');
    plain.socket.destroy();
    res.socket.destroy();
  });
});

interface Refusal {
  name: string;
  request: string;
  status: number;
  reason: string;
  header?: [string, string];
}

const refusals: Refusal[] = [
  {
    name: 'a request target that is no URI form',
    request: upgradeRequest({ path: 'ws' }),
    status: 400,
    reason: 'bad_request',
  },
  {
    name: 'an absolute-form target with userinfo',
    request: upgradeRequest({ path: 'http://user@localhost/ws' }),
    status: 400,
    reason: 'bad_request',
  },
  { name: 'POST', request: upgradeRequest({ path: '/ws' }).replace('GET', 'POST'), status: 400, reason: 'bad_method' },
  {
    name: 'HTTP/1.0',
    request: upgradeRequest({ path: '/ws' }).replace('HTTP/1.1', 'HTTP/1.0'),
    status: 400,
    reason: 'bad_http_version',
  },
  {
    name: 'Upgrade: h2c',
    request: upgradeRequest({ path: '/ws', headers: { Upgrade: 'h2c' } }),
    status: 400,
    reason: 'bad_upgrade',
  },
  {
    name: 'unknown upgrade token list',
    request: upgradeRequest({ path: '/ws', headers: { Upgrade: 'websocket, foo' } }),
    status: 400,
    reason: 'bad_upgrade',
  },
  {
    name: 'Connection without upgrade',
    request: upgradeRequest({ path: '/ws', headers: { Connection: 'keep-alive, Upgrade-ish' } }),
    status: 400,
    reason: 'bad_connection',
  },
  {
    name: 'short key',
    request: upgradeRequest({ path: '/ws', headers: { 'Sec-WebSocket-Key': 'AAAA' } }),
    status: 400,
    reason: 'bad_key',
  },
  {
    name: 'key of 15 bytes',
    request: upgradeRequest({ path: '/ws', headers: { 'Sec-WebSocket-Key': Buffer.alloc(15).toString('base64') } }),
    status: 400,
    reason: 'bad_key',
  },
  {
    name: 'missing key',
    request: upgradeRequest({ path: '/ws', headers: { 'Sec-WebSocket-Key': '' } }),
    status: 400,
    reason: 'bad_key',
  },
  {
    name: 'version 8',
    request: upgradeRequest({ path: '/ws', headers: { 'Sec-WebSocket-Version': '8' } }),
    status: 426,
    reason: 'bad_version',
    header: ['sec-websocket-version', '13'],
  },
  {
    name: 'Content-Length body',
    request: upgradeRequest({ path: '/ws', headers: { 'Content-Length': '5' } }),
    status: 400,
    reason: 'body_on_upgrade',
  },
  {
    name: 'Transfer-Encoding',
    request: upgradeRequest({ path: '/ws', headers: { 'Transfer-Encoding': 'chunked' } }),
    status: 400,
    reason: 'body_on_upgrade',
  },
  { name: 'no route', request: upgradeRequest({ path: '/nowhere' }), status: 404, reason: 'no_route' },
  {
    name: 'origin outside allowlist',
    request: upgradeRequest({ path: '/chat', host: 'chat.example.com', headers: { Origin: 'https://evil.example' } }),
    status: 403,
    reason: 'origin_not_allowed',
  },
  {
    name: 'no origin on an allowlisted route',
    request: upgradeRequest({ path: '/chat', host: 'chat.example.com' }),
    status: 403,
    reason: 'origin_not_allowed',
  },
  { name: 'dot segments', request: upgradeRequest({ path: '/ws/../admin' }), status: 400, reason: 'bad_path' },
  {
    name: 'duplicate Sec-WebSocket-Key',
    request: upgradeRequest({ path: '/ws' }).replace('\r\n\r\n', `\r\nSec-WebSocket-Key: ${'B'.repeat(22)}==\r\n\r\n`),
    status: 400,
    reason: 'duplicate_header',
  },
  {
    name: 'duplicate Host',
    request: upgradeRequest({ path: '/ws' }).replace('\r\n\r\n', '\r\nHost: other.example\r\n\r\n'),
    status: 400,
    reason: 'duplicate_header',
  },
  {
    name: '200 header lines',
    request: upgradeRequest({
      path: '/ws',
      headers: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`X-H${i}`, 'v'])),
    }),
    status: 431,
    reason: 'headers_too_large',
  },
  {
    name: '64 KiB of headers',
    request: upgradeRequest({ path: '/ws', headers: { 'X-Big': 'a'.repeat(64 * 1024) } }),
    status: 431,
    reason: 'headers_too_large',
  },
];

describe('refused handshakes', () => {
  for (const r of refusals) {
    it(`${r.name} → ${r.status}, socket closed, nothing reaches the backend, counted`, async () => {
      const before = backend.requests.length;
      const beforeCount =
        metricValue(await gw.metrics(), 'wsgate_handshake_rejections_total', {
          status: String(r.status),
          reason: r.reason,
        }) ?? 0;
      const res = await sendRequest(gw.port, r.request);
      expect(res.status).toBe(r.status);
      if (r.header) expect(res.headers[r.header[0]]).toBe(r.header[1]);
      expect(await closesWithin(res.socket, 5000)).toBe(true);
      expect(backend.requests.length).toBe(before);
      const after = metricValue(await gw.metrics(), 'wsgate_handshake_rejections_total', {
        status: String(r.status),
        reason: r.reason,
      });
      expect(after).toBe(beforeCount + 1);
    });
  }

  it('header values with a bare CR are refused with 400 by the parser', async () => {
    const res = await sendRequest(gw.port, upgradeRequest({ path: '/ws', headers: { 'X-Evil': 'a\rb' } }));
    expect(res.status).toBe(400);
    expect(await closesWithin(res.socket, 5000)).toBe(true);
  });

  it('a __proto__ header neither pollutes prototypes nor breaks the handshake', async () => {
    const res = await rawUpgrade(gw.port, {
      path: '/ws',
      headers: { __proto__: 'x', constructor: 'y' } as Record<string, string>,
    });
    expect(res.status).toBe(101);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    res.socket.destroy();
  });

  it('a pipelined request after a refused upgrade never reaches anything', async () => {
    const before = backend.requests.length;
    const res = await sendRequest(
      gw.port,
      upgradeRequest({ path: '/nowhere' }),
      false,
      'GET /ws HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    expect(res.status).toBe(404);
    const rest = await readUntilClose(res.socket, res.rest);
    expect(rest.toString()).not.toContain('HTTP/1.1');
    expect(backend.requests.length).toBe(before);
  });
});

describe('broken handshakes that the parser does not see as upgrades', () => {
  it('Sec-WebSocket-Key without Upgrade is refused with 400, not proxied as plain HTTP', async () => {
    const before = backend.requests.length;
    const res = await sendRequest(
      gw.port,
      'GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    expect(res.status).toBe(400);
    expect(res.headers['x-wsgate-error']).toBe('WSG_BAD_UPGRADE');
    expect(await closesWithin(res.socket, 5000)).toBe(true);
    expect(backend.requests.length).toBe(before);
  });
});
