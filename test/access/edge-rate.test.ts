// limits.connectionRate through a running gateway, from many real source addresses (client sockets bound to
// 127.x.y.z, all loopback): the per-address bucket answers 429 WSG_CONNECTION_RATE_PER_IP and the process bucket
// 503 WSG_CONNECTION_RATE, both with Retry-After, on upgrades and plain HTTP alike, with no backend connection
// opened and nothing left admitted; a client that waits Retry-After gets in. A flood across 1,000 source addresses
// with a global cap: each address is within its own burst, so it passes until the process bucket is empty and then
// gets 503s; the per-address buckets it leaves behind are swept once refilled, so memory follows the addresses
// active in the last seconds.

import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { expectNoLeaks, metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { delay } from '../helpers/wait.js';
import { type CountingBackend, countingBackend, expectPassed, expectRefused, statusOf } from './edge-support.js';

const cleanups = cleanupAfterEach();

async function gatewayWith(
  connectionRate: Record<string, number>,
): Promise<{ gw: TestGateway; backend: CountingBackend }> {
  const backend = await countingBackend(cleanups);
  const gw = await startGateway(
    simpleConfig([backend.url], {
      limits: { maxConnections: 10_000, maxConnectionsPerIp: 10_000, connectionRate },
      // A flood on a loaded machine must not turn a slow backend handshake into a 504.
      timeouts: { handshake: '10s', idle: '60s', drain: '2s' },
    }),
  );
  cleanups.push(() => gw.stop());
  return { gw, backend };
}

async function limited(gw: TestGateway, scope: 'ip' | 'process'): Promise<number> {
  return metricValue(await gw.metrics(), 'wsgate_connection_rate_limited_total', { scope }) ?? 0;
}

/** The i-th of many loopback source addresses, in block `block` (1,000 per block, none of them 127.0.0.1). */
function sourceAddress(block: number, i: number): string {
  return `127.${10 + block}.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

describe('per client address: 429 WSG_CONNECTION_RATE_PER_IP', () => {
  for (const kind of ['upgrade', 'get'] as const) {
    it(`${kind}: the burst passes, the next gets 429 + Retry-After and no backend; after Retry-After it gets in`, async () => {
      const { gw, backend } = await gatewayWith({ perIpPerSecond: 1, perIpBurst: 2 });
      const from = '127.0.0.11';
      await expectPassed(gw.port, { kind, from });
      await expectPassed(gw.port, { kind, from });
      const headers = await expectRefused(gw.port, backend, { kind, from }, 429, 'WSG_CONNECTION_RATE_PER_IP');
      expect(headers['retry-after']).toBe('1');
      expect(await limited(gw, 'ip')).toBe(1);
      expect(await limited(gw, 'process')).toBe(0);
      // Another address has its own bucket.
      await expectPassed(gw.port, { kind, from: '127.0.0.12' });
      await expectNoLeaks(gw);
      await delay(Number(headers['retry-after']) * 1000);
      await expectPassed(gw.port, { kind, from });
      await expectNoLeaks(gw);
    });
  }

  it('upgrades and plain requests from one address share its bucket', async () => {
    const { gw, backend } = await gatewayWith({ perIpPerSecond: 1, perIpBurst: 2 });
    await expectPassed(gw.port, { from: '127.0.0.21' });
    await expectPassed(gw.port, { kind: 'get', from: '127.0.0.21' });
    await expectRefused(gw.port, backend, { from: '127.0.0.21' }, 429, 'WSG_CONNECTION_RATE_PER_IP');
    await expectRefused(gw.port, backend, { kind: 'get', from: '127.0.0.21' }, 429, 'WSG_CONNECTION_RATE_PER_IP');
    await expectNoLeaks(gw);
  });
});

describe('per process: 503 WSG_CONNECTION_RATE', () => {
  for (const kind of ['upgrade', 'get'] as const) {
    it(`${kind}: perSecond passes, the next from any address gets 503 + Retry-After; after it, one more gets in`, async () => {
      const { gw, backend } = await gatewayWith({ perSecond: 1 });
      await expectPassed(gw.port, { kind, from: '127.0.0.31' });
      const headers = await expectRefused(gw.port, backend, { kind, from: '127.0.0.33' }, 503, 'WSG_CONNECTION_RATE');
      expect(headers['retry-after']).toBe('1');
      expect(await limited(gw, 'process')).toBe(1);
      await expectNoLeaks(gw);
      await delay(Number(headers['retry-after']) * 1000);
      await expectPassed(gw.port, { kind, from: '127.0.0.33' });
      await expectNoLeaks(gw);
    });
  }

  it('an address refused for its own rate spends none of the process tokens', async () => {
    const { gw, backend } = await gatewayWith({ perSecond: 3, perIpPerSecond: 1, perIpBurst: 1 });
    await expectPassed(gw.port, { from: '127.0.0.41' });
    for (let i = 0; i < 5; i++) {
      await expectRefused(gw.port, backend, { from: '127.0.0.41' }, 429, 'WSG_CONNECTION_RATE_PER_IP');
    }
    await expectPassed(gw.port, { from: '127.0.0.42' });
    await expectPassed(gw.port, { kind: 'get', from: '127.0.0.43' });
    await expectRefused(gw.port, backend, { from: '127.0.0.44' }, 503, 'WSG_CONNECTION_RATE');
    expect(await limited(gw, 'ip')).toBe(5);
    expect(await limited(gw, 'process')).toBe(1);
    await expectNoLeaks(gw);
  });
});

describe('a flood across 1,000 source addresses with a global cap', () => {
  const ADDRESSES = 1000;
  const BATCH = 100;
  const PER_SECOND = 20;

  /** One upgrade from each of 1,000 addresses of `block`, BATCH at a time: the statuses and how long it took. */
  async function flood(port: number, block: number): Promise<{ statuses: Map<number, number>; seconds: number }> {
    const statuses = new Map<number, number>();
    const started = performance.now();
    for (let i = 0; i < ADDRESSES; i += BATCH) {
      const answers = await Promise.all(
        Array.from({ length: BATCH }, (_, j) => statusOf(port, { from: sourceAddress(block, i + j) })),
      );
      for (const { status, headers } of answers) {
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (status === 503) expect(Number(headers['retry-after'])).toBeGreaterThanOrEqual(1);
      }
    }
    return { statuses, seconds: (performance.now() - started) / 1000 };
  }

  it('each address passes within its burst until the process bucket is empty, then 503; memory stays bounded', async () => {
    const { gw, backend } = await gatewayWith({ perSecond: PER_SECOND, perIpPerSecond: 1, perIpBurst: 2 });
    const { statuses, seconds } = await flood(gw.port, 0);
    const passed = statuses.get(101) ?? 0;
    expect([...statuses.keys()].sort()).toEqual([101, 503]);
    // The process bucket starts with one second's worth and refills at perSecond while the flood lasts.
    expect(passed).toBeGreaterThanOrEqual(PER_SECOND);
    expect(passed).toBeLessThanOrEqual(Math.ceil(PER_SECOND * (1 + seconds)) + 1);
    expect(statuses.get(503)).toBe(ADDRESSES - passed);
    expect(backend.accepted).toBe(passed);
    expect(await limited(gw, 'process')).toBe(ADDRESSES - passed);
    expect(gw.gateway.connectionRate.trackedAddresses).toBe(ADDRESSES);
    await expectNoLeaks(gw);

    // Once their buckets have refilled (one token at 1/s), the first thousand are forgotten as a new thousand
    // comes: without the sweep the map would hold 2,000.
    await delay(1200);
    const second = await flood(gw.port, 1);
    expect([...second.statuses.keys()].sort()).toEqual([101, 503]);
    expect(gw.gateway.connectionRate.trackedAddresses).toBeLessThanOrEqual(ADDRESSES);
    await expectNoLeaks(gw);
    process.stdout.write(
      `flood: ${ADDRESSES} addresses in ${seconds.toFixed(2)} s, ${passed} passed at perSecond ${PER_SECOND}; ` +
        `second flood ${second.seconds.toFixed(2)} s, ${second.statuses.get(101) ?? 0} passed; ` +
        `${gw.gateway.connectionRate.trackedAddresses} addresses tracked after it\n`,
    );
  }, 60_000);
});
