// TLS at the edge (issue 7): old protocol versions and weak cipher suites are refused by default, a client that
// never finishes its handshake is dropped at the handshake timeout, and SNI picks the right certificate: an
// unknown name gets the default one, or is refused when `tls.unknownSni: refuse`.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RawBackend } from '../helpers/backends.js';
import { type CertFiles, commonNameOf, makeCert, tryTls } from '../helpers/certs.js';
import { metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { startAcceptingBackend } from '../helpers/hostile-backends.js';
import { closesWithin, openSocket, readResponseHead, upgradeRequest } from '../helpers/raw-client.js';

const HANDSHAKE_TIMEOUT_MS = 1000;

let backend: RawBackend;
let gw: TestGateway;
let defaultCert: CertFiles;
let chatCert: CertFiles;
let refusePort = 0;

beforeAll(async () => {
  defaultCert = makeCert('default.wsgate.test');
  chatCert = makeCert('chat.wsgate.test');
  backend = await startAcceptingBackend();
  const sni = { 'chat.wsgate.test': { cert: chatCert.cert, key: chatCert.key } };
  gw = await startGateway({
    ...simpleConfig([backend.url]),
    listeners: [
      {
        name: 'tls',
        address: '127.0.0.1',
        port: 0,
        tls: { cert: defaultCert.cert, key: defaultCert.key, sni },
      },
      {
        name: 'tls-strict-sni',
        address: '127.0.0.1',
        port: 0,
        tls: { cert: defaultCert.cert, key: defaultCert.key, sni, unknownSni: 'refuse' },
      },
    ],
    timeouts: { handshake: `${HANDSHAKE_TIMEOUT_MS}ms`, idle: '60s', drain: '1s' },
  });
  const strict = gw.gateway.boundListeners.find((l) => l.name === 'tls-strict-sni');
  refusePort = strict?.port ?? 0;
});

afterAll(async () => {
  await gw.stop();
  await backend.close();
});

describe('protocol versions', () => {
  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    it(`${version} is refused`, async () => {
      const out = await tryTls(gw.tlsPort, {
        minVersion: version,
        maxVersion: version,
        // Let this client offer what OpenSSL 3 would otherwise refuse to send at all.
        ciphers: 'DEFAULT@SECLEVEL=0',
      });
      expect(out.ok).toBe(false);
      if (!out.ok) expect(out.error).toMatch(/VERSION|PROTOCOL|ALERT|ECONNRESET/i);
    });
  }

  it('TLSv1.2 and TLSv1.3 are accepted and the upgrade works over them', async () => {
    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      const out = await tryTls(gw.tlsPort, { minVersion: version, maxVersion: version, servername: 'x.test' });
      expect(out.ok).toBe(true);
      if (!out.ok) continue;
      expect(out.socket.getProtocol()).toBe(version);
      out.socket.write(upgradeRequest());
      const res = await readResponseHead(out.socket as unknown as Parameters<typeof readResponseHead>[0]);
      expect(res.status).toBe(101);
      out.socket.destroy();
    }
  });
});

describe('cipher suites (TLS 1.2)', () => {
  for (const cipher of [
    'AES128-SHA',
    'AES256-SHA256',
    'AES128-GCM-SHA256',
    'ECDHE-RSA-AES128-SHA',
    'DHE-RSA-AES128-SHA',
  ]) {
    it(`${cipher} (no forward secrecy or no AEAD) is refused`, async () => {
      const out = await tryTls(gw.tlsPort, {
        maxVersion: 'TLSv1.2',
        ciphers: `${cipher}@SECLEVEL=0`,
      });
      expect(out.ok).toBe(false);
    });
  }
  it('RC4 and 3DES: this OpenSSL cannot even offer them; the server list names neither', async () => {
    const { DEFAULT_CIPHERS } = await import('../../src/listen/tls.js');
    expect(DEFAULT_CIPHERS).not.toMatch(/RC4|DES|MD5|NULL|EXPORT|CBC|-SHA(:|$)/);
    for (const cipher of DEFAULT_CIPHERS.split(':')) expect(cipher).toMatch(/^ECDHE-(RSA|ECDSA)-.*(GCM|CHACHA20)/);
  });
  it('ECDHE-RSA-AES128-GCM-SHA256 is accepted', async () => {
    const out = await tryTls(gw.tlsPort, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' });
    expect(out.ok).toBe(true);
    if (out.ok) {
      expect(out.socket.getCipher().name).toBe('ECDHE-RSA-AES128-GCM-SHA256');
      out.socket.destroy();
    }
  });
});

describe('a TLS handshake that never finishes', () => {
  async function expectDropped(send?: Buffer): Promise<void> {
    const socket = await openSocket(gw.tlsPort);
    const started = Date.now();
    if (send) socket.write(send);
    const closed = await closesWithin(socket, HANDSHAKE_TIMEOUT_MS * 6);
    const elapsed = Date.now() - started;
    expect(closed).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(HANDSHAKE_TIMEOUT_MS * 0.9);
    expect(elapsed).toBeLessThan(HANDSHAKE_TIMEOUT_MS * 2.5);
  }
  it('TCP open, nothing sent: closed at the handshake timeout', () => expectDropped());
  it('the first 5 bytes of a ClientHello, then silence: closed at the handshake timeout', () =>
    expectDropped(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])));
  it('a TLS client that completes TLS but never sends its HTTP head: closed at the handshake timeout', async () => {
    const out = await tryTls(gw.tlsPort, {});
    expect(out.ok).toBe(true);
    if (!out.ok) return;
    const started = Date.now();
    const closed = await closesWithin(
      out.socket as unknown as Parameters<typeof closesWithin>[0],
      HANDSHAKE_TIMEOUT_MS * 6,
    );
    expect(closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(HANDSHAKE_TIMEOUT_MS * 4);
  });
  it('plain HTTP sent to the TLS port is dropped, and nothing reaches a backend', async () => {
    const before = backend.connections;
    const socket = await openSocket(gw.tlsPort);
    socket.write(upgradeRequest());
    expect(await closesWithin(socket, HANDSHAKE_TIMEOUT_MS * 6)).toBe(true);
    expect(backend.connections).toBe(before);
  });
});

describe('SNI', () => {
  it('a configured name gets its own certificate', async () => {
    const out = await tryTls(gw.tlsPort, { servername: 'chat.wsgate.test' });
    expect(out.ok && commonNameOf(out.socket)).toBe('chat.wsgate.test');
    if (out.ok) out.socket.destroy();
  });
  it('names compare case-insensitively', async () => {
    const out = await tryTls(gw.tlsPort, { servername: 'CHAT.wsgate.TEST' });
    expect(out.ok && commonNameOf(out.socket)).toBe('chat.wsgate.test');
    if (out.ok) out.socket.destroy();
  });
  it('an unknown name gets the default certificate (unknownSni: default)', async () => {
    const out = await tryTls(gw.tlsPort, { servername: 'unknown.wsgate.test' });
    expect(out.ok && commonNameOf(out.socket)).toBe('default.wsgate.test');
    if (out.ok) out.socket.destroy();
  });
  it('an unknown name is refused with unknownSni: refuse; a known one still works', async () => {
    const unknown = await tryTls(refusePort, { servername: 'unknown.wsgate.test' });
    expect(unknown.ok).toBe(false);
    const known = await tryTls(refusePort, { servername: 'chat.wsgate.test' });
    expect(known.ok && commonNameOf(known.socket)).toBe('chat.wsgate.test');
    if (known.ok) known.socket.destroy();
  });
  it('a 255-byte name and a name with odd bytes neither crash nor match', async () => {
    for (const servername of [
      `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`,
      'chat.wsgate.test.',
    ]) {
      const out = await tryTls(gw.tlsPort, { servername });
      if (out.ok) {
        expect(commonNameOf(out.socket)).toBe('default.wsgate.test');
        out.socket.destroy();
      }
    }
    expect(metricValue(await gw.metrics(), 'wsgate_connections_active') ?? 0).toBe(0);
  });
});
