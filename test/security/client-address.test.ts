// Hostile input at the client-address stage, against a live gateway: PROXY headers truncated, oversized, with
// wrong signatures or the wrong version, IPv6 with TLVs, random bytes (Envoy CVE-2024-23325 crashed on IPv6 PROXY
// input), peers outside trustedProxies, spoofed and enormous X-Forwarded-For. Each case: a clear refusal (the
// connection closed, nothing reaching a backend, the rejection counted) or the documented address, never a crash,
// never the spoofed address.

import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proxyHeaderFor } from '../../src/upstream/proxy-header.js';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { readResponseHead, readUntilClose, upgradeRequest } from '../helpers/raw-client.js';

const SIG = '0d0a0d0a000d0a515549540a';
let backend: TestBackend;
/** PROXY v2 from 127.0.0.1 only; any version; forwardedFor from 127.0.0.1. */
let v2: TestGateway;
let v1: TestGateway;
let xff: TestGateway;
let untrusting: TestGateway;

function gatewayWith(clientAddress: Record<string, unknown>): Promise<TestGateway> {
  const c = simpleConfig([backend.url], {
    timeouts: { handshake: '1s', idle: '60s', drain: '1s' },
    limits: { maxConnections: 10_000, maxConnectionsPerIp: 10_000 },
  });
  c.listeners = [{ name: 'public', address: '127.0.0.1', port: 0, clientAddress }];
  return startGateway(c);
}

beforeAll(async () => {
  backend = await startEchoBackend('b');
  v2 = await gatewayWith({ proxyProtocol: 'v2', trustedProxies: ['127.0.0.1/32'] });
  v1 = await gatewayWith({ proxyProtocol: 'v1' });
  xff = await gatewayWith({ forwardedFor: true, trustedProxies: ['127.0.0.1/32', '10.0.0.0/8'] });
  untrusting = await gatewayWith({ proxyProtocol: 'v2', forwardedFor: true, trustedProxies: ['192.0.2.0/24'] });
});

afterAll(async () => {
  for (const gw of [v2, v1, xff, untrusting]) await gw?.stop();
  await backend.close();
});

function send(port: number, bytes: Buffer | string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => {
      socket.write(bytes);
      resolve(socket);
    });
    socket.on('error', () => {});
    socket.once('error', reject);
  });
}

async function rejected(gw: TestGateway, reason: string): Promise<number> {
  return metricValue(await gw.metrics(), 'wsgate_client_address_rejections_total', { reason }) ?? 0;
}

/** `bytes` are closed without a byte of answer, counted as `reason`, and never reach the backend. */
async function expectClosedUnanswered(gw: TestGateway, bytes: Buffer | string, reason: string): Promise<void> {
  const before = await rejected(gw, reason);
  const requests = backend.requests.length;
  const answer = await readUntilClose(await send(gw.port, bytes));
  expect(answer.length).toBe(0);
  expect(await rejected(gw, reason)).toBe(before + 1);
  expect(backend.requests.length).toBe(requests);
}

/** The gateway still proxies: a good header and upgrade get 101 with the header's client. */
async function expectStillServing(gw: TestGateway): Promise<void> {
  const header = proxyHeaderFor('v2', { address: '198.51.100.1', port: 1 }, { address: '127.0.0.1', port: 2 });
  const socket = await send(gw.port, Buffer.concat([header, Buffer.from(upgradeRequest())]));
  expect((await readResponseHead(socket)).status).toBe(101);
  expect(backend.requests.at(-1)?.headers['x-forwarded-for']).toBe('198.51.100.1');
  socket.destroy();
}

describe('PROXY headers', () => {
  it('truncated at every length of a valid v2 header, then closed: counted, never tunnelled', async () => {
    const header = proxyHeaderFor('v2', { address: '2001:db8::1', port: 1 }, { address: '2001:db8::2', port: 2 });
    for (let n = 1; n < header.length; n += 7) {
      const socket = await send(v2.port, header.subarray(0, n));
      socket.end();
      expect((await readUntilClose(socket)).length).toBe(0);
    }
    await expectStillServing(v2);
  });

  it('a wrong signature, a v1 header on a v2 listener, a v2 header on a v1 listener', async () => {
    await expectClosedUnanswered(v2, Buffer.from(`0d0a0d0a000d0a515549540b21110000`, 'hex'), 'invalid');
    await expectClosedUnanswered(v2, 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n', 'invalid');
    await expectClosedUnanswered(v1, Buffer.from(`${SIG}21110000`, 'hex'), 'invalid');
    await expectClosedUnanswered(v1, `PROXY UNKNOWN ${'x'.repeat(120)}\r\n`, 'invalid');
  });

  it('a 65,535-byte declared length with TLVs, IPv6: read by count, the client taken, nothing buffered past it', async () => {
    const addresses = Buffer.from(
      '20010db800000000000000000000000120010db80000000000000000000000020050' + '01bb',
      'hex',
    );
    const tlvs = Buffer.alloc(65_535 - addresses.length, 0x05);
    const header = Buffer.concat([Buffer.from(`${SIG}2121ffff`, 'hex'), addresses, tlvs]);
    const socket = await send(v2.port, Buffer.concat([header, Buffer.from(upgradeRequest())]));
    expect((await readResponseHead(socket)).status).toBe(101);
    expect(backend.requests.at(-1)?.headers['x-forwarded-for']).toBe('2001:db8::1');
    socket.destroy();
  });

  it('a declared length that never arrives: cut at the handshake timeout', async () => {
    await expectClosedUnanswered(v2, Buffer.from(`${SIG}2111ffff`, 'hex'), 'timeout');
  });

  it('a peer outside trustedProxies: closed before its header is read, whatever it says', async () => {
    const header = proxyHeaderFor('v2', { address: '192.0.2.7', port: 1 }, { address: '127.0.0.1', port: 2 });
    await expectClosedUnanswered(untrusting, Buffer.concat([header, Buffer.from(upgradeRequest())]), 'untrusted');
  });

  it('500 random byte strings and mutated headers: refused or read, the gateway never falls over', async () => {
    const valid = proxyHeaderFor('v2', { address: '2001:db8::9', port: 9 }, { address: '2001:db8::a', port: 10 });
    const inputs = fc.sample(
      fc.oneof(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => {
          const copy = Buffer.from(valid);
          copy[at] = byte;
          return copy;
        }),
      ),
      { numRuns: 500, seed: 23 },
    );
    for (let i = 0; i < inputs.length; i += 50) {
      await Promise.all(
        inputs.slice(i, i + 50).map(async (bytes) => {
          const socket = await send(v2.port, Buffer.concat([Buffer.from(bytes), Buffer.from(upgradeRequest())]));
          // An answer (a header that still reads), a close (refused), or a declared length still being awaited.
          await new Promise((resolve) => {
            socket.once('data', resolve);
            socket.once('close', resolve);
            setTimeout(resolve, 1200);
          });
          socket.destroy();
        }),
      );
    }
    await expectStillServing(v2);
  });
});

describe('X-Forwarded-For', () => {
  async function clientSeen(gw: TestGateway, xffValue: string): Promise<string | undefined> {
    const socket = await send(gw.port, upgradeRequest({ headers: { 'X-Forwarded-For': xffValue } }));
    const head = await readResponseHead(socket);
    socket.destroy();
    if (head.status !== 101) return `status ${head.status}`;
    const seen = String(backend.requests.at(-1)?.headers['x-forwarded-for']);
    return seen.slice(seen.lastIndexOf(',') + 1).trim();
  }

  it('from an untrusted peer, ignored for the address (and still appended to)', async () => {
    const socket = await send(
      untrusting.port,
      Buffer.concat([
        proxyHeaderFor('v2', { address: '192.0.2.9', port: 1 }, { address: '127.0.0.1', port: 2 }),
        Buffer.from(upgradeRequest({ headers: { 'X-Forwarded-For': '1.1.1.1' } })),
      ]),
    );
    socket.destroy();
    // That listener trusts only 192.0.2.0/24: 127.0.0.1's header is not even read.
    expect(await clientSeen(xff, '10.1.2.3, 198.51.100.77')).toBe('198.51.100.77');
  });

  it('spoofed trusted-looking entries left of the real client are never taken', async () => {
    expect(await clientSeen(xff, '10.6.6.6, 203.0.113.200, 10.7.7.7')).toBe('203.0.113.200');
  });

  it('as many entries as the 16 KiB head allows: answered, and the rightmost untrusted one wins', async () => {
    const entries = Array.from({ length: 1400 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.1`);
    expect(await clientSeen(xff, [...entries, '203.0.113.201'].join(','))).toBe('203.0.113.201');
  });

  it('10,000 entries: the head is too large, 431, nothing reaches a backend', async () => {
    const requests = backend.requests.length;
    const entries = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.1`).join(',');
    const socket = await send(xff.port, upgradeRequest({ headers: { 'X-Forwarded-For': entries } }));
    expect((await readResponseHead(socket)).status).toBe(431);
    socket.destroy();
    expect(backend.requests.length).toBe(requests);
  });
});
