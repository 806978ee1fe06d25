// The pool keys of the config: defaults, durations, and "exactly one of backends and discovery".

import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError, parseConfig } from '../../src/config/load.js';

function parsePool(pool: Record<string, unknown>) {
  const text = stringify({
    listeners: [{ name: 'public', port: 0 }],
    routes: [{ name: 'main', match: { path: '/' }, pool: 'chat' }],
    pools: { chat: pool },
  });
  return parseConfig(text, '/virtual/pools.yaml');
}

function issuesOf(pool: Record<string, unknown>): string[] {
  try {
    parsePool(pool);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('pool config', () => {
  it('fills defaults: passive ejection and gradual rebalancing on, active checks off, panic at 50%', () => {
    const pool = parsePool({ backends: ['ws://127.0.0.1:3000'] }).pools.get('chat');
    expect(pool).toMatchObject({
      healthCheck: undefined,
      discovery: undefined,
      outlier: { consecutiveFailures: 5, ejectForMs: 30_000, maxEjectForMs: 300_000 },
      rebalance: { mode: 'gradual', maxClosesPerSecond: 50 },
      panicThreshold: 0.5,
    });
  });

  it('normalises the issue’s example', () => {
    const pool = parsePool({
      discovery: { dns: 'chat.default.svc.cluster.local', port: 3000, interval: '10s' },
      healthCheck: { path: '/health', interval: '5s', timeout: '2s', healthyThreshold: 2, unhealthyThreshold: 3 },
      outlier: { consecutiveFailures: 5, ejectFor: '30s' },
      rebalance: { mode: 'off', maxClosesPerSecond: 50 },
      panicThreshold: 0.25,
    }).pools.get('chat');
    expect(pool).toMatchObject({
      backends: [],
      discovery: {
        dns: 'chat.default.svc.cluster.local',
        port: 3000,
        scheme: 'ws',
        tlsOptions: undefined,
        intervalMs: 10_000,
        nameservers: undefined,
      },
      healthCheck: {
        path: '/health',
        intervalMs: 5000,
        timeoutMs: 2000,
        healthyThreshold: 2,
        unhealthyThreshold: 3,
        websocket: false,
      },
      rebalance: { mode: 'off', maxClosesPerSecond: 50 },
      panicThreshold: 0.25,
    });
  });

  it('discovery over wss verifies the dns name unless tls.serverName says otherwise', () => {
    const dns = 'chat.default.svc.cluster.local';
    const plain = parsePool({ discovery: { dns, port: 8443, scheme: 'wss' } }).pools.get('chat');
    expect(plain?.discovery).toMatchObject({
      scheme: 'wss',
      tlsOptions: { ca: undefined, serverName: dns, rejectUnauthorized: true },
    });
    const named = parsePool({
      discovery: { dns, port: 8443, scheme: 'wss' },
      tls: { serverName: 'chat.internal', insecureSkipVerify: true },
    }).pools.get('chat');
    expect(named?.discovery?.tlsOptions).toEqual({
      ca: undefined,
      serverName: 'chat.internal',
      rejectUnauthorized: false,
    });
    expect(issuesOf({ discovery: { dns, port: 8443, scheme: 'https' } })[0]).toMatch(
      /^pools\.chat\.discovery\.scheme: /,
    );
  });

  it('wants exactly one of backends and discovery', () => {
    expect(issuesOf({})).toEqual(['pools.chat: a pool needs backends or discovery']);
    expect(issuesOf({ backends: ['ws://127.0.0.1:3000'], discovery: { dns: 'chat.local', port: 3000 } })).toEqual([
      'pools.chat.discovery: give either backends or discovery, not both',
    ]);
  });

  it('rejects unknown keys and out-of-range values with their path', () => {
    const issues = issuesOf({
      backends: ['ws://127.0.0.1:3000'],
      healthCheck: { interval: 'soon', healthyThreshold: 0 },
      rebalance: { mode: 'fast' },
      panicThreshold: 2,
      outlier: { ejectFor: '30s', extra: 1 },
    });
    const paths = issues.map((i) => i.split(':')[0]);
    expect(paths).toEqual(
      expect.arrayContaining([
        'pools.chat.healthCheck.interval',
        'pools.chat.healthCheck.healthyThreshold',
        'pools.chat.rebalance.mode',
        'pools.chat.panicThreshold',
        'pools.chat.outlier.extra',
      ]),
    );
  });
});
