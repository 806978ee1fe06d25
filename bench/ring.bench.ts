// Micro-benchmark of the per-connection routing path (key hash, ring pick) and ring builds; prints one JSON object.
// Run after `npm run build`: node dist/bench/ring.bench.js [--smoke]
import { hashString } from '../src/routing/hash.js';
import { Ring, type RingMember } from '../src/routing/ring.js';

const SMOKE = process.argv.includes('--smoke');
const PICK_ITERATIONS = SMOKE ? 50_000 : 2_000_000;
const BUILD_ITERATIONS = SMOKE ? 3 : 30;
const KEY_COUNT = 4096; // power of two: index with a mask

interface Result {
  readonly name: string;
  readonly opsPerSec: number;
  readonly nsPerOp: number;
}

let sink = 0; // consumed at the end so the JIT can't drop the measured work

function measure(name: string, iterations: number, body: (i: number) => number): Result {
  for (let i = 0; i < Math.min(iterations, 50_000); i++) sink ^= body(i); // warm up into optimised code
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink ^= body(i);
  const elapsedNs = Number(process.hrtime.bigint() - started);
  return {
    name,
    opsPerSec: Math.round((iterations * 1e9) / elapsedNs),
    nsPerOp: Math.round((elapsedNs / iterations) * 10) / 10,
  };
}

const membersOf = (count: number): RingMember[] =>
  Array.from({ length: count }, (_, i) => ({ id: `ws://10.0.${i >> 8}.${i & 255}:3001`, weight: 1 }));

function pickBenchmarks(memberCount: number, keyHashes: Uint32Array): Result[] {
  const ring = Ring.build(membersOf(memberCount));
  // Loads near balance (±10%) around 1000 connections per member: the steady state bounded loads sees.
  const loads = Int32Array.from({ length: memberCount }, (_, i) => 1000 + ((i * 37) % 200) - 100);
  const exclude = [0];
  const mask = KEY_COUNT - 1;
  return [
    measure(`owner n=${memberCount}`, PICK_ITERATIONS, (i) => ring.owner(keyHashes[i & mask]!)),
    measure(`pick bounded c=1.25 n=${memberCount}`, PICK_ITERATIONS, (i) =>
      ring.pick(keyHashes[i & mask]!, loads, 1.25),
    ),
    measure(`pick bounded c=1.25 + 1 excluded n=${memberCount}`, PICK_ITERATIONS, (i) =>
      ring.pick(keyHashes[i & mask]!, loads, 1.25, exclude),
    ),
  ];
}

function main(): void {
  const ips = Array.from({ length: KEY_COUNT }, (_, i) => `203.0.${(i >> 8) & 255}.${i & 255}`);
  const sessions = Array.from(
    { length: KEY_COUNT },
    (_, i) => `sess-${i.toString(16).padStart(8, '0')}-${'x'.repeat(27)}`,
  );
  const longKey = 'k'.repeat(1024);
  const keyHashes = Uint32Array.from(ips, (ip) => hashString(ip));
  const mask = KEY_COUNT - 1;

  const results: Result[] = [
    measure('hashString ipv4', PICK_ITERATIONS, (i) => hashString(ips[i & mask]!)),
    measure('hashString 40-char session id', PICK_ITERATIONS, (i) => hashString(sessions[i & mask]!)),
    measure('hashString 1 KiB key', PICK_ITERATIONS / 20, () => hashString(longKey)),
    measure('hashString ipv4 + pick bounded n=10', PICK_ITERATIONS, (i) =>
      ring10.pick(hashString(ips[i & mask]!), loads10, 1.25),
    ),
    ...pickBenchmarks(10, keyHashes),
    ...pickBenchmarks(100, keyHashes),
    measure('Ring.build n=10 (1,600 points)', BUILD_ITERATIONS, () => Ring.build(membersOf(10)).pointCount),
    measure('Ring.build n=100 (16,000 points)', BUILD_ITERATIONS, () => Ring.build(membersOf(100)).pointCount),
  ];
  process.stdout.write(
    `${JSON.stringify({ benchmark: 'ring', node: process.version, smoke: SMOKE, results, sink: sink & 1 }, null, 2)}\n`,
  );
}

const ring10 = Ring.build(membersOf(10));
const loads10 = new Int32Array(10).fill(1000);

main();
