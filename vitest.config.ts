import { defineConfig } from 'vitest/config';

/**
 * The suite's core cases, run a second time with every Node internal on its public fallback
 * (WSGATE_NODE_INTERNALS=off, src/platform/): listeners, pipelining and refusals, the handshake and TLS security
 * cases, the tunnel, and end-to-end proxying.
 */
const CORE_ON_FALLBACKS = [
  'test/platform/report.test.ts',
  'test/listen/pipelining.test.ts',
  'test/proxy/plain-http-edges.test.ts',
  'test/security/handshake.test.ts',
  'test/security/tls.test.ts',
  'test/tunnel/tunnel.test.ts',
  'test/integration/proxy.test.ts',
  'test/listen/client-address.test.ts',
];

// Tests run against real sockets and child processes; give them room on a 2-core machine.
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'wsgate', include: ['test/**/*.test.ts'] } },
      {
        extends: true,
        test: { name: 'node-internals-off', include: CORE_ON_FALLBACKS, env: { WSGATE_NODE_INTERNALS: 'off' } },
      },
    ],
  },
});
