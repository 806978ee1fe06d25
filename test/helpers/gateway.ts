// Starts a real Gateway on port 0 from a config object (written as YAML, loaded like an operator's file).

import { pino } from 'pino';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { InProcessFleet } from '../../src/control/in-process.js';
import { Gateway } from '../../src/gateway/gateway.js';
import type { Listener } from '../../src/listen/listener.js';
import { Metrics } from '../../src/observe/metrics.js';
import type { Cleanup } from './cleanups.js';
import { waitFor } from './wait.js';

export interface TestGateway {
  readonly gateway: Gateway;
  /** Its control plane (admin listener, status, metrics) without a config file: nothing to reload. */
  readonly control: ControlPlane;
  /** Port of the first plain listener. */
  readonly port: number;
  /** Port of the first TLS listener, if any. */
  readonly tlsPort: number;
  readonly adminPort: number;
  metrics(): Promise<string>;
  /** Drains within `drainMs` (default 500 ms: tests rarely wait for a drain), then closes the admin listener. */
  stop(drainMs?: number): Promise<void>;
}

export type ConfigObject = Record<string, unknown>;

/** A minimal config: one plain listener on port 0, one route '/' → pool 'main' with the given backends. */
export function simpleConfig(backends: readonly string[], extra: ConfigObject = {}): ConfigObject {
  return {
    listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
    admin: { address: '127.0.0.1', port: 0 },
    routes: [{ name: 'main', match: { path: '/' }, pool: 'main' }],
    pools: { main: { hashKey: 'header:x-user-id', backends } },
    timeouts: { handshake: '2s', idle: '60s', drain: '2s' },
    ...extra,
  };
}

/** simpleConfig whose one route ('main', path '/') carries `route`'s settings (protocol, limits, keepalive…). */
export function routeConfig(
  backends: readonly string[],
  route: ConfigObject = {},
  extra: ConfigObject = {},
): ConfigObject {
  const config = simpleConfig(backends, extra);
  config.routes = [{ name: 'main', match: { path: '/' }, pool: 'main', ...route }];
  return config;
}

/**
 * The handshake tests' config: route 'chat' (chat.example.com /chat) allows only the Origin
 * https://chat.example.com, route 'main' is /ws, and the connection limits are too high to refuse anyone.
 */
export function handshakeConfig(backend: string, extra: ConfigObject = {}): ConfigObject {
  return simpleConfig([backend], {
    routes: [
      {
        name: 'chat',
        match: { host: 'chat.example.com', path: '/chat' },
        pool: 'main',
        origins: ['https://chat.example.com'],
      },
      { name: 'main', match: { path: '/ws' }, pool: 'main' },
    ],
    limits: { maxConnections: 1000, maxConnectionsPerIp: 1000 },
    ...extra,
  });
}

export async function startGateway(
  config: ConfigObject | string,
  file = '/virtual/wsgate-test.yaml',
): Promise<TestGateway> {
  const text = typeof config === 'string' ? config : stringify(config);
  const cfg = parseConfig(text, file);
  const log = pino({ level: process.env.WSGATE_TEST_LOG ?? 'silent' });
  const gateway = await Gateway.start(cfg, { log, metrics: new Metrics({ defaultMetrics: false }) });
  const control = await ControlPlane.start({ fleet: new InProcessFleet(gateway), config: cfg, log });
  const plain = gateway.boundListeners.find((l) => !l.secure);
  const tls = gateway.boundListeners.find((l) => l.secure);
  return {
    gateway,
    control,
    port: plain?.port ?? 0,
    tlsPort: tls?.port ?? 0,
    adminPort: control.adminPort,
    metrics: async () => (await control.metrics()).text,
    stop: async (drainMs = 500) => {
      await gateway.stop(drainMs);
      await control.close();
    },
  };
}

/** Reads one sample from Prometheus text, e.g. metricValue(text, 'wsgate_connections_active', { route: 'main' }). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (!ok) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    total = (total ?? 0) + value;
  }
  return total;
}

/** Nothing left behind: gauge, admission slots, tunnel set. */
export async function expectNoLeaks(gw: TestGateway): Promise<void> {
  await waitFor(
    async () =>
      metricValue(await gw.metrics(), 'wsgate_connections_active') === 0 &&
      gw.gateway.admission.active === 0 &&
      gw.gateway.tunnels.size === 0,
    8000,
    'gauges, admission and tunnels back at 0',
  );
}

/** startGateway whose gateway `cleanups` stops after the test (the stack from cleanupAfterEach). */
export async function startGatewayFor(cleanups: Cleanup[], config: ConfigObject): Promise<TestGateway> {
  const gw = await startGateway(config);
  cleanups.push(() => gw.stop());
  return gw;
}

/**
 * A gateway in front of `backends`, closed by `cleanups`, for tests of plain HTTP and pipelined requests: connection
 * limits too high to refuse anyone, a 1 s handshake and drain, and a 60 s idle timeout (long polls wait).
 */
export function lenientGatewayFor(
  cleanups: Cleanup[],
  backends: string[],
  extra: ConfigObject = {},
): Promise<TestGateway> {
  return startGatewayFor(
    cleanups,
    simpleConfig(backends, {
      limits: { maxConnections: 1000, maxConnectionsPerIp: 1000 },
      timeouts: { handshake: '1s', idle: '60s', drain: '1s' },
      ...extra,
    }),
  );
}

/** The gateway's listeners, in config order (private: tests read their servers and first-head readers). */
export function listenersOf(gateway: Gateway): Listener[] {
  return (gateway as unknown as { listeners: { listeners: Listener[] } }).listeners.listeners;
}
