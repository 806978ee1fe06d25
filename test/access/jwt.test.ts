// routes[].auth.jwt through a running gateway, on real sockets: tokens signed at test time with RS256, ES256 and
// EdDSA keys from a JWKS file (and HS256 with a secret) open tunnels; a missing, bad or doubled token gets 401 with
// RFC 6750's WWW-Authenticate and never reaches a backend; the token leaves the request before the backend sees
// it, claims arrive as headers, and the client's own copies of those headers do not.

import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { expectNoLeaks, metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { jwtAuth, makeKey, sign, signHs256, type TestKey, writeJwks } from '../helpers/jwt.js';
import { rawUpgrade } from '../helpers/raw-client.js';

let backend: TestBackend;
let gw: TestGateway;
let keys: TestKey[];
let jwksFile: string;
let configText: string;

const FROM = ['header:Authorization', 'query:access_token', 'cookie:session', 'protocol'];

beforeAll(async () => {
  keys = [await makeKey('RS256', 'rs'), await makeKey('ES256', 'es'), await makeKey('EdDSA', 'ed')];
  jwksFile = writeJwks(keys);
  backend = await startEchoBackend('b1');
  const config = simpleConfig([backend.url], {
    listeners: [
      { name: 'public', address: '127.0.0.1', port: 0 },
      { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
    ],
    routes: [
      {
        name: 'chat',
        match: { path: '/chat' },
        pool: 'main',
        auth: jwtAuth(
          { keys: jwksFile },
          { from: FROM, clockSkew: '0s', forwardClaims: { sub: 'X-User-Id', tenant: 'X-Tenant' } },
        ),
      },
      {
        name: 'hs',
        match: { path: '/hs' },
        pool: 'main',
        auth: jwtAuth({ secret: 'a-test-secret-of-at-least-32-characters!' }),
      },
      { name: 'open', match: { path: '/' }, pool: 'main' },
    ],
  });
  configText = stringify(config);
  gw = await startGateway(configText);
});

afterAll(async () => {
  await gw.stop();
  await backend.close();
});

function open(url: string, protocols: string[] = [], headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, { headers, rejectUnauthorized: false });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

function lastRequest() {
  return backend.requests[backend.requests.length - 1];
}

describe('tokens that open a tunnel', () => {
  for (const i of [0, 1, 2]) {
    it(`accepts a ${['RS256', 'ES256', 'EdDSA'][i]} token from the Authorization header, on ws:// and wss://`, async () => {
      const key = keys[i] as TestKey;
      const token = await sign(key, { tenant: 'acme' });
      for (const url of [`ws://127.0.0.1:${gw.port}/chat`, `wss://127.0.0.1:${gw.tlsPort}/chat`]) {
        const ws = await open(url, [], {
          Authorization: `Bearer ${token}`,
          'X-User-Id': 'spoofed',
          'x-tenant': 'evil',
        });
        const seen = lastRequest()!;
        expect(seen.headers['x-user-id']).toBe('user-1');
        expect(seen.headers['x-tenant']).toBe('acme');
        expect(seen.rawHeaders.filter((h) => h.toLowerCase() === 'x-user-id')).toHaveLength(1);
        ws.close();
        await closed(ws);
      }
    });
  }

  it('accepts an HS256 token on a route with a secret', async () => {
    const ws = await open(`ws://127.0.0.1:${gw.port}/hs`, [], { Authorization: `Bearer ${await signHs256()}` });
    ws.close();
    await closed(ws);
  });

  it('takes the token out of the query string, keeping the other parameters', async () => {
    const token = await sign(keys[1] as TestKey);
    const ws = await open(`ws://127.0.0.1:${gw.port}/chat?room=1&access_token=${token}&x=2`);
    expect(lastRequest()!.url).toBe('/chat?room=1&x=2');
    ws.close();
    await closed(ws);
  });

  it('reads a cookie', async () => {
    const token = await sign(keys[2] as TestKey);
    const ws = await open(`ws://127.0.0.1:${gw.port}/chat`, [], { Cookie: `a=b; session=${token}` });
    expect(lastRequest()!.headers['x-user-id']).toBe('user-1');
    ws.close();
    await closed(ws);
  });

  it('takes the token out of Sec-WebSocket-Protocol; a client that offered only it hears the marker back', async () => {
    const token = await sign(keys[0] as TestKey);
    const ws = await open(`ws://127.0.0.1:${gw.port}/chat`, ['access_token', token]);
    expect(ws.protocol).toBe('access_token');
    expect(lastRequest()!.headers['sec-websocket-protocol']).toBeUndefined();
    ws.close();
    await closed(ws);
  });

  it('passes the other offered protocols on, and the one the backend picks reaches the client', async () => {
    const token = await sign(keys[0] as TestKey);
    const ws = await open(`ws://127.0.0.1:${gw.port}/chat`, ['access_token', token, 'chat.v2', 'chat.v1']);
    expect(lastRequest()!.headers['sec-websocket-protocol']).toBe('chat.v2, chat.v1');
    expect(ws.protocol).toBe('chat.v2');
    ws.close();
    await closed(ws);
  });
});

describe('refusals', () => {
  async function refused(path: string, headers: Record<string, string>, tls = false) {
    const before = backend.requests.length;
    const res = await rawUpgrade(tls ? gw.tlsPort : gw.port, { path, headers, tls });
    res.socket.destroy();
    expect(res.status).toBe(401);
    expect(backend.requests.length).toBe(before);
    return res;
  }

  it('a request without a token: 401 with a bare Bearer challenge (RFC 6750 §3.1)', async () => {
    const res = await refused('/chat', {});
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect(res.headers['x-wsgate-error']).toBe('WSG_AUTH_REQUIRED');
  });

  it('a token signed by a key outside the JWKS, expired, or for another audience: invalid_token, nothing more', async () => {
    const stranger = await makeKey('ES256', 'es');
    const bad = [
      await sign(stranger),
      await sign(keys[1] as TestKey, {}, Math.floor(Date.now() / 1000) - 10),
      await sign(keys[1] as TestKey, { aud: 'billing' }),
      'not.a.token',
    ];
    for (const token of bad) {
      for (const tls of [false, true]) {
        const res = await refused('/chat', { Authorization: `Bearer ${token}` }, tls);
        expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
        expect(res.headers['x-wsgate-error']).toBe('WSG_AUTH_INVALID');
        expect(res.head).not.toContain('expired');
        expect(res.head).not.toContain('audience');
      }
    }
  });

  it('a token given twice (header and query) is refused as invalid_request', async () => {
    const token = await sign(keys[1] as TestKey);
    const res = await refused(`/chat?access_token=${token}`, { Authorization: `Bearer ${token}` });
    expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_request"');
  });

  it('counts each result, and leaves nothing behind', async () => {
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'chat', result: 'ok' })).toBeGreaterThan(0);
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'chat', result: 'missing' })).toBeGreaterThan(0);
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'chat', result: 'expired' })).toBeGreaterThan(0);
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'chat', result: 'duplicate' })).toBeGreaterThan(0);
    expect(
      metricValue(text, 'wsgate_auth_results_total', { route: 'chat', result: 'wrong_issuer_or_audience' }),
    ).toBeGreaterThan(0);
    await expectNoLeaks(gw);
  });
});

describe('plain HTTP on the route', () => {
  function get(path: string, headers: Record<string, string> = {}) {
    return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gw.port, path, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('refuses a long poll without a valid token, and passes one with it', async () => {
    const missing = await get('/chat?EIO=4&transport=polling');
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    const bad = await get('/chat', { Authorization: 'Bearer x.y.z' });
    expect(bad.status).toBe(401);
    const good = await get(`/chat?access_token=${await sign(keys[1] as TestKey)}`);
    expect(good.status).toBe(200);
    expect(good.body).toBe('plain b1');
  });
});

describe('keys per config generation', () => {
  it('a reload with a new JWKS applies to new connections; open tunnels stay', async () => {
    const old = keys[1] as TestKey;
    const ws = await open(`ws://127.0.0.1:${gw.port}/chat`, [], { Authorization: `Bearer ${await sign(old)}` });
    const rotated = await makeKey('ES256', 'es2');
    writeFileSync(jwksFile, JSON.stringify({ keys: [rotated.publicJwk] }));
    try {
      await gw.gateway.reload(parseConfig(configText, '/virtual/wsgate-test.yaml'));
      const res = await rawUpgrade(gw.port, { path: '/chat', headers: { Authorization: `Bearer ${await sign(old)}` } });
      res.socket.destroy();
      expect(res.status).toBe(401);
      const fresh = await open(`ws://127.0.0.1:${gw.port}/chat`, [], {
        Authorization: `Bearer ${await sign(rotated)}`,
      });
      expect(ws.readyState).toBe(WebSocket.OPEN);
      fresh.close();
      await closed(fresh);
    } finally {
      writeJwks(keys, jwksFile.slice(0, -'/jwks.json'.length));
      await gw.gateway.reload(parseConfig(configText, '/virtual/wsgate-test.yaml'));
    }
    ws.close();
    await closed(ws);
  });
});
