// `npm run soak`: the long soak. SOAK_CONNECTIONS (default 200000) and SOAK_CONCURRENCY (default 64) set the size.
// `npm run soak -- --chaos [--cycles N] [--seconds S] [--seed K] [--concurrency C] [--long L]`: the chaos soak
// (chaos/run.ts), default 1,000,000 cycles. Both print a report (the numbers docs/security.md records) and exit 1
// on any leak or unexpected ending.

import { parseArgs } from 'node:util';
import { chaosProblems, formatChaos, runChaos } from './chaos/run.js';
import { mib, runSoak, soakProblems } from './soak-run.js';

const { values } = parseArgs({
  options: {
    chaos: { type: 'boolean' },
    cycles: { type: 'string' },
    seconds: { type: 'string' },
    seed: { type: 'string' },
    concurrency: { type: 'string' },
    long: { type: 'string' },
  },
});

if (values.chaos) {
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  const cycles = Number(values.cycles ?? 1_000_000);
  const report = await runChaos({
    seed,
    cycles,
    seconds: Number(values.seconds ?? 0),
    concurrency: Number(values.concurrency ?? 48),
    longLived: Number(values.long ?? 500),
    eventMinMs: 1000,
    eventSpreadMs: 3000,
    progressEvery: 10_000,
  });
  process.stdout.write(`${formatChaos(report)}\n`);
  process.exit(chaosProblems(report).length === 0 ? 0 : 1);
}

const connections = Number(process.env.SOAK_CONNECTIONS ?? 200_000);
const concurrency = Number(process.env.SOAK_CONCURRENCY ?? 64);

const report = await runSoak({ connections, concurrency, progressEvery: 20_000 });
const problems = soakProblems(report, 16 * 1024 * 1024);
const { baseline, after } = report;
const lines = [
  `connections: ${report.connections} in ${report.seconds.toFixed(1)} s (${Math.round(report.connections / report.seconds)}/s), concurrency ${concurrency}`,
  ...Object.entries(report.perKind).map(([k, r]) => `  ${k}: ${r.ok} as expected, ${r.unexpected} unexpected`),
  `fds: ${baseline.fds} → ${after.fds}`,
  `handles: ${JSON.stringify(baseline.resources)} → ${JSON.stringify(after.resources)}`,
  `heap after GC: ${mib(baseline.heapUsed)} → ${mib(after.heapUsed)} MiB; array buffers ${mib(baseline.arrayBuffers)} → ${mib(after.arrayBuffers)} MiB; rss ${mib(baseline.rss)} → ${mib(after.rss)} MiB (high-water, not returned to the OS)`,
  `tunnels ${after.tunnels}, admission ${after.admitted}, wsgate_connections_active ${report.activeGauges.join(',')}`,
  ...(report.unexpectedSamples.length > 0 ? ['samples:', ...report.unexpectedSamples.map((s) => `  ${s}`)] : []),
  problems.length === 0 ? 'PASS' : `FAIL: ${problems.join('; ')}`,
];
process.stdout.write(`${lines.join('\n')}\n`);
process.exit(problems.length === 0 ? 0 : 1);
