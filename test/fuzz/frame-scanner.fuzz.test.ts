// Fuzz target for the frame scanner (issue 7): valid streams mutated at random (bit flips, hostile bytes,
// cut and spliced), and plain random bytes, in both directions, strict and lenient, with an observer that
// stops the scan now and then. The scanner must never throw or spin, and must give the same events, stops and
// final verdict however the stream is chunked. Bounded by numRuns and a time limit (CI).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type FrameObserver, FrameScanner, VIOLATION_KIND } from '../../src/tunnel/frame-scanner.js';
import { frameHeader } from '../helpers/frames.js';

const TIME_LIMIT_MS = 8000;

/** Records callbacks; stops on a deterministic schedule of presentations so chunkings can be compared. */
class StoppingObserver implements FrameObserver {
  events: string[] = [];
  private presented = 0;
  private controls = 0;
  private ends = 0;

  onFrameHeader(s: FrameScanner): number {
    if (this.presented++ % 7 === 3) return 100; // the same header is presented again after the stop
    this.events.push(
      `H${+s.fin}${s.rsv}:${s.opcode}:${+s.masked}:${s.payloadLength}:${s.messageBytes}:${s.messageFrames}`,
    );
    return 0;
  }
  onControlFrame(s: FrameScanner): number {
    this.events.push(`C${s.opcode}:${s.controlPayload === undefined ? '-' : s.controlPayload.toString('hex')}`);
    return this.controls++ % 5 === 2 ? 101 : 0;
  }
  onMessageEnd(s: FrameScanner): number {
    this.events.push(`E${s.messageOpcode}:${s.messageBytes}:${s.messageFrames}`);
    return this.ends++ % 4 === 1 ? 102 : 0;
  }
  onViolation(_s: FrameScanner, code: number): number {
    this.events.push(`V${VIOLATION_KIND[code]}`);
    return 0;
  }
}

interface Verdict {
  events: string[];
  /** Violation that ended the stream (0: none) and the stream position it was reported at. */
  code: number;
  at: number;
  scanned: number;
}

function drive(bytes: Buffer, cuts: number[], options: { fromClient: boolean; strict: boolean; rsv1: boolean }) {
  const observer = new StoppingObserver();
  const scanner = new FrameScanner({
    fromClient: options.fromClient,
    strict: options.strict,
    rsv1Allowed: options.rsv1,
    observer,
  });
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length];
  let abs = 0;
  for (let k = 0; k + 1 < bounds.length; k++) {
    // A fresh Buffer per chunk, as sockets deliver them.
    const chunk = Buffer.from(bytes.subarray(bounds[k], bounds[k + 1]));
    let start = 0;
    let guard = 0;
    for (;;) {
      if (++guard > 10_000) throw new Error('scanner did not advance');
      const rc = scanner.scan(chunk, start);
      if (rc === 0) break;
      if (rc >= 100) {
        observer.events.push(`S${rc}`);
        expect(scanner.resumeOffset).toBeGreaterThanOrEqual(0);
        start = scanner.resumeOffset;
        continue;
      }
      return { events: observer.events, code: rc, at: abs + scanner.stopOffset, scanned: -1 } satisfies Verdict;
    }
    abs += chunk.length;
  }
  return { events: observer.events, code: 0, at: -1, scanned: scanner.bytes } satisfies Verdict;
}

const frameArb = fc
  .record({
    fin: fc.boolean(),
    rsv: fc.constantFrom(0, 0, 0, 4, 2, 1),
    opcode: fc.constantFrom(0, 1, 2, 8, 9, 10, 3, 0xb),
    masked: fc.boolean(),
    payload: fc.uint8Array({ maxLength: 300 }),
    form: fc.constantFrom<0 | 2 | 8 | undefined>(undefined, undefined, undefined, 0, 2, 8),
  })
  .map(({ fin, rsv, opcode, masked, payload, form }) => {
    const lengthBytes =
      form === 0 && payload.length > 125 ? undefined : form === 2 && payload.length > 65535 ? 8 : form;
    return Buffer.concat([
      frameHeader((fin ? 0x80 : 0) | (rsv << 4) | opcode, BigInt(payload.length), {
        masked,
        ...(lengthBytes === undefined ? {} : { lengthBytes }),
      }),
      Buffer.from(payload),
    ]);
  });

/** A stream of frames, then up to 4 mutations: hostile byte writes, cuts, splices, and absurd lengths. */
const streamArb = fc
  .tuple(
    fc.array(frameArb, { minLength: 1, maxLength: 12 }),
    fc.array(
      fc.record({
        kind: fc.constantFrom('byte', 'cut', 'splice', 'huge'),
        at: fc.nat(),
        value: fc.constantFrom(0x00, 0x7f, 0x80, 0xff, 0x7e, 0x81, 0x88, 0x0f),
        len: fc.nat({ max: 16 }),
      }),
      { maxLength: 4 },
    ),
  )
  .map(([frames, mutations]) => {
    let bytes = Buffer.concat(frames);
    for (const m of mutations) {
      if (bytes.length === 0) break;
      const at = m.at % bytes.length;
      if (m.kind === 'byte') bytes[at] = m.value;
      else if (m.kind === 'cut') bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.len)]);
      else if (m.kind === 'splice')
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(0, m.len), bytes.subarray(at)]);
      else
        bytes = Buffer.concat([
          bytes.subarray(0, at),
          frameHeader(0x82, 1n << BigInt(40 + (m.len % 24)), { masked: m.value > 0x80 }),
        ]);
    }
    return bytes;
  });

const optionsArb = fc.record({ fromClient: fc.boolean(), strict: fc.boolean(), rsv1: fc.boolean() });

describe('frame scanner fuzz', () => {
  it('mutated streams: never throws, same verdict for whole, byte-by-byte and random chunkings', () => {
    fc.assert(
      fc.property(streamArb, optionsArb, fc.array(fc.nat(), { maxLength: 20 }), (bytes, options, cuts) => {
        const whole = drive(bytes, [], options);
        const random = drive(
          bytes,
          cuts.map((c) => c % (bytes.length + 1)),
          options,
        );
        expect(random).toEqual(whole);
        if (bytes.length <= 600) {
          const bytewise = drive(
            bytes,
            Array.from({ length: bytes.length }, (_, i) => i),
            options,
          );
          expect(bytewise).toEqual(whole);
        }
      }),
      { numRuns: 6000, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
  });

  it('random bytes: never throws, never spins, chunking-independent', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        optionsArb,
        fc.array(fc.nat(), { maxLength: 30 }),
        (arr, options, cuts) => {
          const bytes = Buffer.from(arr);
          const whole = drive(bytes, [], options);
          expect(
            drive(
              bytes,
              cuts.map((c) => c % (bytes.length + 1)),
              options,
            ),
          ).toEqual(whole);
        },
      ),
      { numRuns: 6000, interruptAfterTimeLimit: TIME_LIMIT_MS / 2 },
    );
  });

  it('regression: a header straddling chunks after an observer stop resumes at the same frame', () => {
    const bytes = Buffer.concat([
      frameHeader(0x81, 3n, { masked: true }),
      Buffer.from('abc'),
      frameHeader(0x89, 0n, { masked: true }),
    ]);
    const options = { fromClient: true, strict: true, rsv1: false };
    const whole = drive(bytes, [], options);
    for (let cut = 1; cut < bytes.length; cut++) expect(drive(bytes, [cut], options)).toEqual(whole);
  });
});
