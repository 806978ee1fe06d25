// Micro-benchmark for the frame scanner (src/tunnel/frame-scanner.ts): frames/s and MB/s over a large
// buffer of many small masked frames and over 16 KiB frames, fed in socket-sized chunks.
// Run: node_modules/.bin/tsc -p tsconfig.json && node dist/bench/scanner.bench.js

import { type FrameObserver, FrameScanner } from '../src/tunnel/frame-scanner.js';

const CHUNK_BYTES = 64 * 1024; // what a TCP socket typically hands to 'data'
const WARMUP_ROUNDS = 5;
const MEASURED_ROUNDS = 20;

interface Case {
  name: string;
  frames: number;
  payloadBytes: number;
  /** Passes over the stream per measured round, so a round lasts a few milliseconds. */
  passes: number;
}

const CASES: Case[] = [
  { name: 'small_masked_16B', frames: 200_000, payloadBytes: 16, passes: 1 },
  { name: 'masked_16KiB', frames: 2_000, payloadBytes: 16 * 1024, passes: 100 },
];

/** Client-to-server stream: `frames` masked binary frames of `payloadBytes` each. */
function buildStream(frames: number, payloadBytes: number): Buffer {
  const header = payloadBytes < 126 ? 2 : payloadBytes < 65536 ? 4 : 10;
  const frameBytes = header + 4 + payloadBytes;
  const buf = Buffer.alloc(frames * frameBytes, 0x5a);
  for (let f = 0, off = 0; f < frames; f++, off += frameBytes) {
    buf[off] = 0x82;
    if (header === 2) buf[off + 1] = 0x80 | payloadBytes;
    else if (header === 4) {
      buf[off + 1] = 0x80 | 126;
      buf.writeUInt16BE(payloadBytes, off + 2);
    } else {
      buf[off + 1] = 0x80 | 127;
      buf.writeUInt32BE(0, off + 2);
      buf.writeUInt32BE(payloadBytes, off + 6);
    }
    buf.writeUInt32BE((f * 2654435761) >>> 0, off + header); // masking key; payload left as is
  }
  return buf;
}

/** Counts what the tunnel would look at, so the callbacks are not optimised away. */
class CountingObserver implements FrameObserver {
  headers = 0;
  payloadBytes = 0;
  ends = 0;
  onFrameHeader(s: FrameScanner): number {
    this.headers++;
    this.payloadBytes += s.payloadLength;
    return 0;
  }
  onControlFrame(): number {
    return 0;
  }
  onMessageEnd(): number {
    this.ends++;
    return 0;
  }
}

/** One round: a fresh scanner (as for a new connection) reads the stream `passes` times over. */
function scanRound(chunks: readonly Buffer[], passes: number, observer: CountingObserver): number {
  const scanner = new FrameScanner({ fromClient: true, rsv1Allowed: false, strict: true, observer });
  const t0 = performance.now();
  for (let p = 0; p < passes; p++) {
    for (const chunk of chunks) {
      if (scanner.scan(chunk) !== 0) throw new Error(`violation ${scanner.lastViolation} in benchmark stream`);
    }
  }
  return performance.now() - t0;
}

const results = [];
for (const c of CASES) {
  const stream = buildStream(c.frames, c.payloadBytes);
  const chunks: Buffer[] = [];
  for (let off = 0; off < stream.length; off += CHUNK_BYTES) chunks.push(stream.subarray(off, off + CHUNK_BYTES));
  const observer = new CountingObserver();
  for (let r = 0; r < WARMUP_ROUNDS; r++) scanRound(chunks, c.passes, observer);
  const times: number[] = [];
  for (let r = 0; r < MEASURED_ROUNDS; r++) times.push(scanRound(chunks, c.passes, observer));
  const expectedHeaders = (WARMUP_ROUNDS + MEASURED_ROUNDS) * c.passes * c.frames;
  if (observer.headers !== expectedHeaders || observer.ends !== expectedHeaders) {
    throw new Error(`saw ${observer.headers} headers, expected ${expectedHeaders}`);
  }
  times.sort((a, b) => a - b);
  const medianMs = times[Math.floor(times.length / 2)]!;
  const bestMs = times[0]!;
  results.push({
    case: c.name,
    frames: c.frames * c.passes,
    payload_bytes: c.payloadBytes,
    stream_bytes: stream.length * c.passes,
    chunk_bytes: CHUNK_BYTES,
    median_ms: Number(medianMs.toFixed(3)),
    best_ms: Number(bestMs.toFixed(3)),
    frames_per_s: Math.round(((c.frames * c.passes) / medianMs) * 1000),
    mb_per_s: Math.round((stream.length * c.passes) / 1e6 / (medianMs / 1000)),
  });
}

console.log(JSON.stringify({ bench: 'frame-scanner', node: process.version, results }));
for (const r of results) {
  console.log(
    `${r.case}: ${(r.frames_per_s / 1e6).toFixed(2)} M frames/s, ${r.mb_per_s} MB/s ` +
      `(median of ${MEASURED_ROUNDS}, ${r.frames} frames in ${r.chunk_bytes / 1024} KiB chunks)`,
  );
}
