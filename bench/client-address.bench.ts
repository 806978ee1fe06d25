// What knowing the client behind a load balancer costs per WebSocket handshake: wsgate's CPU per handshake on a
// plain listener, on one expecting a PROXY v2 header, and on one walking X-Forwarded-For from a trusted peer; with
// --baseline DIR, also the plain listener of the build in DIR (e.g. a worktree of an earlier commit, built), to see
// that a listener without clientAddress pays nothing. Method: bench/harness/handshake-cost.ts.
// Run: npm run build && node dist/bench/client-address.bench.js [--rounds 8] [--handshakes 2000] [--baseline DIR]

import { proxyHeaderFor } from '../src/upstream/proxy-header.js';
import { cliOf, costSettings, type HandshakeTarget, measureInTurns } from './harness/handshake-cost.js';

// log.level info: how the numbers in BENCHMARKS.md were taken (a log line per connection opened and closed).
const settings = costSettings({ rounds: 8, logLevel: 'info' });
const proxyV2 = proxyHeaderFor('v2', { address: '203.0.113.5', port: 4242 }, { address: '127.0.0.1', port: 80 });

const targets: HandshakeTarget[] = [
  { name: 'plain', cli: cliOf() },
  {
    name: 'proxy-v2',
    cli: cliOf(),
    listener: { clientAddress: { proxyProtocol: 'v2', trustedProxies: ['127.0.0.1/32'] } },
    preamble: proxyV2,
  },
  {
    name: 'forwarded-for',
    cli: cliOf(),
    listener: { clientAddress: { forwardedFor: true, trustedProxies: ['127.0.0.1/32', '10.0.0.0/8'] } },
    headers: () => 'X-Forwarded-For: 203.0.113.5, 10.1.1.1\r\n',
  },
];
if (settings.baseline) targets.push({ name: 'plain (baseline build)', cli: cliOf(settings.baseline) });

measureInTurns(targets, settings).catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
