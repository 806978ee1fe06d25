// Shared fixtures for pool unit tests: pool configs and a fake tunnel that records how it was closed.

import type { BackendConfig, PoolConfig } from '../../src/config/types.js';
import type { Ending } from '../../src/errors.js';
import type { PooledTunnel } from '../../src/pool/member.js';

export class FakeTunnel implements PooledTunnel {
  readonly keyHash: number;
  readonly closes: { code: number; reason: string; at: number }[] = [];
  constructor(keyHash: number) {
    this.keyHash = keyHash;
  }
  closeWith(ending: Ending): void {
    this.closes.push({ code: ending.closeCode, reason: ending.reason, at: Date.now() });
  }
}

export function backend(n: number, weight = 1): BackendConfig {
  return { id: `ws://10.0.0.${n}:3000`, host: `10.0.0.${n}`, port: 3000, tls: false, weight };
}

export function poolConfig(backends: readonly BackendConfig[], overrides: Partial<PoolConfig> = {}): PoolConfig {
  return {
    name: 'chat',
    hashKey: { kind: 'ip' },
    balanceFactor: undefined,
    backends,
    discovery: undefined,
    healthCheck: undefined,
    outlier: { consecutiveFailures: 5, ejectForMs: 30_000, maxEjectForMs: 300_000 },
    rebalance: { mode: 'gradual', maxClosesPerSecond: 50 },
    panicThreshold: 0.5,
    sticky: undefined,
    proxyProtocol: 'off',
    ...overrides,
  };
}

/** Deterministic spread of 32-bit key hashes. */
export function keyHashes(count: number): number[] {
  const out: number[] = [];
  let x = 0x9e3779b9;
  for (let i = 0; i < count; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + i) >>> 0;
    out.push(x);
  }
  return out;
}
