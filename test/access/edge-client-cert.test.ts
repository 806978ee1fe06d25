// Client certificates through a running gateway, with certificates made at test time (a CA, a good client
// certificate, an expired one, one from another CA): listeners[].tls.clientCert `require` and `optional` answer 403
// WSG_CLIENT_CERT_REQUIRED / WSG_CLIENT_CERT_INVALID at the HTTP stage (the TLS handshake itself completes, so the
// client reads a status, not a TLS alert), on upgrades and plain HTTP, with no backend connection opened; a good
// certificate opens the tunnel; routes[].forwardClientCert sends Envoy's X-Forwarded-Client-Cert and a client's own
// copy never reaches the backend. Then pools.NAME.tls.cert/.key: wsgate's certificate toward a wss:// backend that
// demands one.

import { X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCert } from '../helpers/certs.js';
import { type Cleanup, cleanupAfterEach, runCleanups } from '../helpers/cleanups.js';
import { type ClientCerts, type KeyPair, makeClientCerts } from '../helpers/client-certs.js';
import { expectNoLeaks, metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { readResponseHead } from '../helpers/raw-client.js';
import {
  type CountingBackend,
  countingBackend,
  expectPassed,
  expectRefused,
  type RequestOptions,
  requestBytes,
  send,
  statusOf,
} from './edge-support.js';

const fileCleanups: Cleanup[] = [];
let certs: ClientCerts;
let backend: CountingBackend;
let gw: TestGateway;

const FORGED = 'Hash=0000;Subject="CN=admin"';

function portOf(g: TestGateway, name: string): number {
  const listener = g.gateway.boundListeners.find((l) => l.name === name);
  if (listener === undefined) throw new Error(`no listener ${name}`);
  return listener.port;
}

async function denials(route: string, reason: string): Promise<number> {
  return metricValue(await gw.metrics(), 'wsgate_access_denied_total', { route, reason }) ?? 0;
}

beforeAll(async () => {
  certs = await makeClientCerts();
  const sni = makeCert('chat.example');
  backend = await countingBackend(fileCleanups);
  const config = simpleConfig([backend.url], { limits: { maxConnections: 1000, maxConnectionsPerIp: 1000 } });
  config.listeners = [
    { name: 'public', address: '127.0.0.1', port: 0 },
    { name: 'required', address: '127.0.0.1', port: 0, tls: { clientCa: certs.caFile, clientCert: 'require' } },
    { name: 'optional', address: '127.0.0.1', port: 0, tls: { clientCa: certs.caFile, clientCert: 'optional' } },
    {
      name: 'sni',
      address: '127.0.0.1',
      port: 0,
      tls: { clientCa: certs.caFile, clientCert: 'require', sni: { 'chat.example': { cert: sni.cert, key: sni.key } } },
    },
  ];
  config.routes = [
    { name: 'xfcc', match: { path: '/xfcc' }, pool: 'main', forwardClientCert: true },
    { name: 'open', match: { path: '/' }, pool: 'main' },
  ];
  gw = await startGateway(config);
  fileCleanups.push(() => gw.stop());
});

afterAll(() => runCleanups(fileCleanups));

/** What Envoy would send for the good certificate: SHA-256 of the DER, the RFC 2253 subject, URI and DNS names. */
function expectedXfcc(): string {
  const hash = new X509Certificate(certs.valid.cert).fingerprint256.replaceAll(':', '').toLowerCase();
  return `Hash=${hash};Subject="O=Example Inc,CN=alice";URI=spiffe://example.org/alice;DNS=alice.example.org`;
}

describe('listeners[].tls.clientCert: require', () => {
  for (const kind of ['upgrade', 'get'] as const) {
    it(`${kind}: no certificate → 403 WSG_CLIENT_CERT_REQUIRED over a completed TLS 1.3 or 1.2 handshake; no backend`, async () => {
      const before = await denials('open', 'client_cert_missing');
      const headers = await expectRefused(
        portOf(gw, 'required'),
        backend,
        { kind, tls: {} },
        403,
        'WSG_CLIENT_CERT_REQUIRED',
      );
      expect(headers.connection).toBe('close');
      // TLS 1.2 as well: the handshake completes without a certificate, the answer is the same 403.
      await expectRefused(
        portOf(gw, 'required'),
        backend,
        { kind, tls: { maxVersion: 'TLSv1.2' } },
        403,
        'WSG_CLIENT_CERT_REQUIRED',
      );
      await expectRefused(
        portOf(gw, 'required'),
        backend,
        { kind, tls: { ...certs.expired, maxVersion: 'TLSv1.2' } },
        403,
        'WSG_CLIENT_CERT_INVALID',
      );
      expect(await denials('open', 'client_cert_missing')).toBe(before + 2);
      await expectNoLeaks(gw);
    });

    it(`${kind}: an expired certificate and one from another CA → 403 WSG_CLIENT_CERT_INVALID; no backend`, async () => {
      const before = await denials('xfcc', 'client_cert_invalid');
      for (const tls of [certs.expired, certs.otherCa]) {
        await expectRefused(
          portOf(gw, 'required'),
          backend,
          { kind, tls, path: '/xfcc' },
          403,
          'WSG_CLIENT_CERT_INVALID',
        );
      }
      expect(await denials('xfcc', 'client_cert_invalid')).toBe(before + 2);
      await expectNoLeaks(gw);
    });
  }

  it('a good certificate opens the tunnel; without forwardClientCert the backend gets no X-Forwarded-Client-Cert', async () => {
    const res = await send(portOf(gw, 'required'), {
      tls: certs.valid,
      headers: { 'X-Forwarded-Client-Cert': FORGED },
    });
    expect(res.status).toBe(101);
    res.socket.destroy();
    expect(backend.seen.at(-1)?.['x-forwarded-client-cert']).toBeUndefined();
    await expectNoLeaks(gw);
  });

  for (const kind of ['upgrade', 'get'] as const) {
    it(`${kind}: forwardClientCert sends Envoy's XFCC (Hash, Subject, URI, DNS) in place of the client's copy`, async () => {
      const seen = backend.seen.length;
      await expectPassed(portOf(gw, 'required'), {
        kind,
        tls: certs.valid,
        path: '/xfcc',
        headers: { 'X-Forwarded-Client-Cert': FORGED },
      });
      expect(backend.seen.length).toBe(seen + 1);
      expect(backend.seen.at(-1)?.['x-forwarded-client-cert']).toBe(expectedXfcc());
    });
  }
});

describe('listeners[].tls.sni', () => {
  it('a connection served an SNI certificate is held to clientCa all the same', async () => {
    const port = portOf(gw, 'sni');
    const tls = (pair: Partial<KeyPair>) => ({ ...pair, servername: 'chat.example' });
    await expectRefused(port, backend, { tls: tls({}) }, 403, 'WSG_CLIENT_CERT_REQUIRED');
    await expectRefused(port, backend, { tls: tls(certs.otherCa) }, 403, 'WSG_CLIENT_CERT_INVALID');
    await expectPassed(port, { tls: tls(certs.valid), path: '/xfcc' });
    expect(backend.seen.at(-1)?.['x-forwarded-client-cert']).toBe(expectedXfcc());
    await expectNoLeaks(gw);
  });
});

describe('listeners[].tls.clientCert: optional', () => {
  it('no certificate passes (and no XFCC is made up for it); a bad one is still refused 403', async () => {
    const port = portOf(gw, 'optional');
    for (const kind of ['upgrade', 'get'] as const) {
      await expectPassed(port, { kind, tls: {}, path: '/xfcc', headers: { 'X-Forwarded-Client-Cert': FORGED } });
      expect(backend.seen.at(-1)?.['x-forwarded-client-cert']).toBeUndefined();
      await expectRefused(port, backend, { kind, tls: certs.expired }, 403, 'WSG_CLIENT_CERT_INVALID');
      await expectRefused(port, backend, { kind, tls: certs.otherCa }, 403, 'WSG_CLIENT_CERT_INVALID');
      await expectPassed(port, { kind, tls: certs.valid, path: '/xfcc' });
      expect(backend.seen.at(-1)?.['x-forwarded-client-cert']).toBe(expectedXfcc());
    }
    await expectNoLeaks(gw);
  });
});

describe('TLS session resumption', () => {
  /** An upgrade over TLS offering `session`; its status, whether the session was resumed, and the next session. */
  function upgradeWith(
    port: number,
    pair: Partial<KeyPair>,
    session?: Buffer,
  ): Promise<{ status: number; resumed: boolean; session: Buffer | undefined }> {
    return new Promise((resolve, reject) => {
      let latest: Buffer | undefined;
      const socket = tlsConnect(
        { port, host: '127.0.0.1', rejectUnauthorized: false, ...pair, ...(session ? { session } : {}) },
        () => {
          socket.write(requestBytes({ path: '/xfcc' }));
          readResponseHead(socket).then((res) => {
            // TLS 1.3 tickets come after the handshake: they are in by the time the answer is.
            const resumed = socket.isSessionReused();
            socket.destroy();
            resolve({ status: res.status, resumed, session: latest });
          }, reject);
        },
      );
      socket.on('session', (s: Buffer) => {
        latest = s;
      });
      socket.once('error', reject);
    });
  }

  it("a resumed session keeps its certificate's verdict: a bad one stays refused, a good one is forwarded", async () => {
    const port = portOf(gw, 'optional');
    const bad = await upgradeWith(port, certs.expired);
    expect(bad.status).toBe(403);
    expect(bad.session).toBeDefined();
    const badAgain = await upgradeWith(port, {}, bad.session);
    expect(badAgain).toMatchObject({ status: 403, resumed: true });
    const good = await upgradeWith(port, certs.valid);
    expect(good.status).toBe(101);
    const goodAgain = await upgradeWith(port, {}, good.session);
    expect(goodAgain).toMatchObject({ status: 101, resumed: true });
    expect(backend.seen.at(-1)?.['x-forwarded-client-cert']).toBe(expectedXfcc());
    await expectNoLeaks(gw);
  });
});

describe('a plain listener', () => {
  it("asks for no certificate, and a client's X-Forwarded-Client-Cert (every copy) is removed on every route", async () => {
    const forged = { 'X-Forwarded-Client-Cert': FORGED, 'x-forwarded-client-CERT': 'By=spiffe://evil' };
    for (const path of ['/xfcc', '/'])
      for (const kind of ['upgrade', 'get'] as const) {
        const options: RequestOptions = { kind, path, headers: forged };
        await expectPassed(gw.port, options);
        expect(backend.seen.at(-1)?.['x-forwarded-client-cert']).toBeUndefined();
      }
    await expectNoLeaks(gw);
  });
});

describe('pools.NAME.tls.cert/.key: mutual TLS toward a wss:// backend', () => {
  const cleanups = cleanupAfterEach();

  async function gatewayTo(pool: Record<string, unknown>): Promise<{ g: TestGateway; backend: CountingBackend }> {
    const secure = await countingBackend(cleanups, { pair: certs.valid, clientCa: certs.ca.cert });
    const config = simpleConfig([secure.url]);
    config.pools = { main: { backends: [secure.url], tls: { ca: certs.caFile, ...pool } } };
    const g = await startGateway(config);
    cleanups.push(() => g.stop());
    return { g, backend: secure };
  }

  it('with the certificate configured, the backend accepts wsgate: upgrades and plain HTTP go through', async () => {
    const { g, backend: secure } = await gatewayTo(certs.validFiles);
    await expectPassed(g.port, {});
    // The client's Host (localhost, which the backend certificate does not name) has no say in the TLS name
    // check: the backend is an address, and its certificate is checked against that address.
    await expectPassed(g.port, { kind: 'get' });
    await expectPassed(g.port, { kind: 'get', headers: { Host: 'elsewhere.example' } });
    expect(secure.seen).toHaveLength(3);
    await expectNoLeaks(g);
  });

  it("plain requests with different Host headers share one connection to the backend (the TLS name is the pool's)", async () => {
    const { g, backend: secure } = await gatewayTo(certs.validFiles);
    for (const host of ['a.example', 'b.example', 'a.example', 'localhost'])
      await expectPassed(g.port, { kind: 'get', headers: { Host: host } });
    expect(secure.seen).toHaveLength(4);
    // undici would close the idle connection and dial again each time the name it derives from Host changes.
    expect(secure.accepted).toBe(1);
    await expectNoLeaks(g);
  });

  it('without it, the backend refuses the TLS handshake: the client gets 502, nothing is tunnelled', async () => {
    const { g, backend: secure } = await gatewayTo({});
    const upgrade = await statusOf(g.port, {});
    expect({ status: upgrade.status, code: upgrade.headers['x-wsgate-error'] }).toEqual({
      status: 502,
      code: 'WSG_UPSTREAM_BAD_RESPONSE',
    });
    const plain = await statusOf(g.port, { kind: 'get' });
    expect(plain.status).toBe(502);
    expect(secure.accepted).toBeGreaterThan(0);
    expect(secure.seen).toHaveLength(0);
    await expectNoLeaks(g);
  });
});
