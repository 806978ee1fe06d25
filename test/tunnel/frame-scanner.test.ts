// The frame scanner against RFC 6455 §5: spec vectors, every violation in both directions, length
// boundaries, and properties over arbitrary chunking of valid streams and of random bytes.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type FrameObserver,
  FrameScanner,
  ScannerState,
  VIOLATION_ENDINGS,
  VIOLATION_KIND,
  Violation,
} from '../../src/tunnel/frame-scanner.js';
import { frame as encodeFrame } from '../helpers/frames.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/** Records every callback as a line, so runs can be compared as plain arrays. */
class Recorder implements FrameObserver {
  events: string[] = [];
  violationCodes: number[] = [];
  controlPayloads: string[] = [];
  stopHeaderAt = -1; // frame index (0-based, by presentation) at which onFrameHeader returns 100
  presented = 0;

  onFrameHeader(s: FrameScanner): number {
    if (this.presented++ === this.stopHeaderAt) return 100;
    this.events.push(
      `H fin=${+s.fin} rsv=${s.rsv} op=${s.opcode} m=${+s.masked} len=${s.payloadLength} ` +
        `mop=${s.messageOpcode} mbytes=${s.messageBytes} mframes=${s.messageFrames}`,
    );
    return 0;
  }
  onControlFrame(s: FrameScanner): number {
    const payload = s.controlPayload === undefined ? 'none' : s.controlPayload.toString('hex');
    this.controlPayloads.push(payload);
    this.events.push(`C op=${s.opcode} ${payload}`);
    return 0;
  }
  onMessageEnd(s: FrameScanner): number {
    this.events.push(`E mop=${s.messageOpcode} mbytes=${s.messageBytes} mframes=${s.messageFrames}`);
    return 0;
  }
  onViolation(_s: FrameScanner, code: number): number {
    this.violationCodes.push(code);
    this.events.push(`V ${VIOLATION_KIND[code]}`);
    return 0;
  }
}

interface Opts {
  fromClient: boolean;
  strict?: boolean;
  rsv1Allowed?: boolean;
}

function scannerWith(opts: Opts, observer: FrameObserver = new Recorder()): FrameScanner {
  return new FrameScanner({
    fromClient: opts.fromClient,
    strict: opts.strict ?? true,
    rsv1Allowed: opts.rsv1Allowed ?? false,
    observer,
  });
}

interface FrameSpec {
  fin?: boolean;
  rsv?: number; // RSV1 = 4, RSV2 = 2, RSV3 = 1
  opcode: number;
  mask?: boolean;
  payload?: Uint8Array | string;
  /** Declared length, when it differs from the payload actually appended (huge frames). */
  declared?: number | bigint;
  /** Force a length form: 7, 16 or 64 bits (non-minimal when the length is small). */
  form?: 7 | 16 | 64;
  key?: number;
}

const DEFAULT_KEY = 0x37fa213d; // the §5.7 example key

const LENGTH_BYTES = { 7: 0, 16: 2, 64: 8 } as const;

/** Builds one frame as a peer would put it on the wire (payload masked with `key` when `mask`). */
function frame(spec: FrameSpec): Buffer {
  const key = spec.key ?? DEFAULT_KEY;
  const payload =
    typeof spec.payload === 'string' ? Buffer.from(spec.payload, 'utf8') : Buffer.from(spec.payload ?? []);
  return encodeFrame(spec.opcode, payload, {
    masked: spec.mask ?? false,
    fin: spec.fin,
    rsv: spec.rsv,
    mask: Buffer.from([key >>> 24, (key >>> 16) & 0xff, (key >>> 8) & 0xff, key & 0xff]),
    lengthBytes: spec.form === undefined ? undefined : LENGTH_BYTES[spec.form],
    declared: spec.declared === undefined ? undefined : BigInt(spec.declared),
  });
}

const closePayload = (code: number, reason: string | Buffer = ''): Buffer =>
  Buffer.concat([Buffer.from([code >>> 8, code & 0xff]), Buffer.from(reason)]);

/** Scans `chunks` in order; stops at the first non-zero code and reports its stream position. */
function runChunks(scanner: FrameScanner, chunks: readonly Buffer[]): { rc: number; stopAbs: number } {
  let abs = 0;
  for (const chunk of chunks) {
    const rc = scanner.scan(chunk);
    if (rc !== 0) return { rc, stopAbs: abs + scanner.stopOffset };
    abs += chunk.length;
  }
  return { rc: 0, stopAbs: -1 };
}

function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  chunks.push(buf.subarray(prev));
  return chunks;
}

function everyByte(buf: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) chunks.push(buf.subarray(i, i + 1));
  return chunks;
}

describe('RFC 6455 §5.7 examples', () => {
  it('a single-frame unmasked text message "Hello" (server → client)', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: false }, rec);
    expect(s.scan(hex('81 05 48 65 6c 6c 6f'))).toBe(0);
    expect(rec.events).toEqual(['H fin=1 rsv=0 op=1 m=0 len=5 mop=1 mbytes=5 mframes=1', 'E mop=1 mbytes=5 mframes=1']);
    expect(s.atFrameBoundary).toBe(true);
    expect([s.frames, s.messages, s.violations]).toEqual([1, 1, 0]);
  });

  it('a single-frame masked text message "Hello" (client → server)', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: true }, rec);
    const bytes = hex('81 85 37 fa 21 3d 7f 9f 4d 51 58');
    expect(frame({ opcode: 1, mask: true, payload: 'Hello' })).toEqual(bytes); // our builder agrees with §5.7
    expect(s.scan(bytes)).toBe(0);
    expect(rec.events).toEqual(['H fin=1 rsv=0 op=1 m=1 len=5 mop=1 mbytes=5 mframes=1', 'E mop=1 mbytes=5 mframes=1']);
    expect(s.maskKey).toBe(0x37fa213d);
    expect(s.headerLength).toBe(6);
  });

  it('a fragmented unmasked text message "Hel" + "lo" ends once, with both fragments counted', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: false }, rec);
    expect(s.scan(hex('01 03 48 65 6c'))).toBe(0);
    expect(s.messageOpcode).toBe(1);
    expect(s.inMessage).toBe(true);
    expect(s.scan(hex('80 02 6c 6f'))).toBe(0);
    expect(rec.events).toEqual([
      'H fin=0 rsv=0 op=1 m=0 len=3 mop=1 mbytes=3 mframes=1',
      'H fin=1 rsv=0 op=0 m=0 len=2 mop=1 mbytes=5 mframes=2',
      'E mop=1 mbytes=5 mframes=2',
    ]);
    expect(s.messageOpcode).toBe(0);
    expect(s.messages).toBe(1);
  });

  it('an unmasked ping "Hello" hands the payload to onControlFrame', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: false }, rec);
    expect(s.scan(hex('89 05 48 65 6c 6c 6f'))).toBe(0);
    expect(rec.controlPayloads).toEqual([Buffer.from('Hello').toString('hex')]);
    expect(s.controlFrames).toBe(1);
    expect(s.controlPayload).toBeUndefined(); // only valid during the callback
  });

  it('a masked pong "Hello" is unmasked into a copy; the chunk itself is untouched', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: true }, rec);
    const bytes = hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58');
    const before = Buffer.from(bytes);
    expect(s.scan(bytes)).toBe(0);
    expect(rec.events).toEqual(['H fin=1 rsv=0 op=10 m=1 len=5 mop=0 mbytes=0 mframes=0', 'C op=10 48656c6c6f']);
    expect(bytes).toEqual(before);
  });

  it('256-byte and 65536-byte unmasked binary messages use the 16- and 64-bit length forms', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: false }, rec);
    const b256 = Buffer.concat([hex('82 7e 01 00'), Buffer.alloc(256, 7)]);
    const b64k = Buffer.concat([hex('82 7f 00 00 00 00 00 01 00 00'), Buffer.alloc(65536, 9)]);
    expect(s.scan(b256)).toBe(0);
    expect(s.headerLength).toBe(4);
    expect(s.scan(b64k)).toBe(0);
    expect(s.headerLength).toBe(10);
    expect(rec.events).toEqual([
      'H fin=1 rsv=0 op=2 m=0 len=256 mop=2 mbytes=256 mframes=1',
      'E mop=2 mbytes=256 mframes=1',
      'H fin=1 rsv=0 op=2 m=0 len=65536 mop=2 mbytes=65536 mframes=1',
      'E mop=2 mbytes=65536 mframes=1',
    ]);
    expect(s.bytes).toBe(b256.length + b64k.length);
  });
});

interface ViolationCase {
  name: string;
  code: number;
  /** Valid frames first, then the offending one, per direction. */
  build: (fromClient: boolean) => { prefix: Buffer[]; bad: Buffer } | undefined;
  rsv1Allowed?: boolean;
}

const ok = (fromClient: boolean): Buffer => frame({ opcode: 2, mask: fromClient, payload: 'ok' });
const VIOLATION_CASES: ViolationCase[] = [
  {
    name: '§5.1 unmasked client frame',
    code: Violation.UNMASKED_CLIENT_FRAME,
    build: (c) => (c ? { prefix: [ok(c)], bad: frame({ opcode: 1, mask: false, payload: 'hi' }) } : undefined),
  },
  {
    name: '§5.1 masked server frame',
    code: Violation.MASKED_SERVER_FRAME,
    build: (c) => (c ? undefined : { prefix: [ok(c)], bad: frame({ opcode: 1, mask: true, payload: 'hi' }) }),
  },
  {
    name: '§5.2 reserved data opcode 0x3',
    code: Violation.RESERVED_OPCODE,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 3, mask: c, payload: 'x' }) }),
  },
  {
    name: '§5.2 reserved control opcode 0xF',
    code: Violation.RESERVED_OPCODE,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 0xf, mask: c, payload: 'x' }) }),
  },
  {
    name: '§5.5 control frame with 126 bytes',
    code: Violation.CONTROL_TOO_LONG,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 9, mask: c, payload: Buffer.alloc(126, 1) }) }),
  },
  {
    name: '§5.5 fragmented control frame',
    code: Violation.CONTROL_FRAGMENTED,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 9, fin: false, mask: c, payload: 'p' }) }),
  },
  {
    name: '§5.4 continuation without a message',
    code: Violation.UNEXPECTED_CONTINUATION,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 0, mask: c, payload: 'c' }) }),
  },
  {
    name: '§5.4 new text frame inside a fragmented message',
    code: Violation.DATA_INSIDE_MESSAGE,
    build: (c) => ({
      prefix: [frame({ opcode: 1, fin: false, mask: c, payload: 'a' })],
      bad: frame({ opcode: 1, mask: c, payload: 'b' }),
    }),
  },
  {
    name: '§5.2 64-bit length with the top bit set',
    code: Violation.LENGTH_TOP_BIT,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 2, mask: c, declared: 1n << 63n }) }),
  },
  {
    name: '§5.2 RSV1 without a negotiated extension',
    code: Violation.RSV_WITHOUT_EXTENSION,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 1, rsv: 4, mask: c, payload: 'z' }) }),
  },
  {
    name: '§5.2 RSV2 even with permessage-deflate',
    code: Violation.RSV_WITHOUT_EXTENSION,
    rsv1Allowed: true,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 1, rsv: 2, mask: c, payload: 'z' }) }),
  },
  {
    name: '§5.2 RSV3 even with permessage-deflate',
    code: Violation.RSV_WITHOUT_EXTENSION,
    rsv1Allowed: true,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 1, rsv: 1, mask: c, payload: 'z' }) }),
  },
  {
    name: '§5.2 non-minimal 16-bit length (125 in the 126 form)',
    code: Violation.NON_MINIMAL_LENGTH,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 2, mask: c, payload: Buffer.alloc(125), form: 16 }) }),
  },
  {
    name: '§5.2 non-minimal 64-bit length (65535 in the 127 form)',
    code: Violation.NON_MINIMAL_LENGTH,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 2, mask: c, payload: Buffer.alloc(65535), form: 64 }) }),
  },
  {
    name: '§7.4 close with code 1005',
    code: Violation.INVALID_CLOSE_PAYLOAD,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 8, mask: c, payload: closePayload(1005) }) }),
  },
  {
    name: 'a 64-bit length of exactly 2^53',
    code: Violation.FRAME_TOO_BIG,
    build: (c) => ({ prefix: [ok(c)], bad: frame({ opcode: 2, mask: c, declared: 2n ** 53n }) }),
  },
];

const FATAL = new Set<number>([Violation.LENGTH_TOP_BIT, Violation.FRAME_TOO_BIG]);
const STRICT_ONLY = new Set<number>([Violation.NON_MINIMAL_LENGTH, Violation.INVALID_CLOSE_PAYLOAD]);

describe('violations, in both directions', () => {
  it('every Violation code has a snake_case metric label and a close code', () => {
    const codes = Object.values(Violation);
    expect(VIOLATION_KIND).toHaveLength(codes.length);
    expect(VIOLATION_ENDINGS).toHaveLength(codes.length);
    for (const [name, code] of Object.entries(Violation)) expect(VIOLATION_KIND[code]).toBe(name.toLowerCase());
    expect(VIOLATION_ENDINGS[Violation.FRAME_TOO_BIG]?.closeCode).toBe(1009);
    expect(VIOLATION_ENDINGS[Violation.UNMASKED_CLIENT_FRAME]?.closeCode).toBe(1002);
  });

  it('the cases below cover every violation code', () => {
    const covered = new Set(VIOLATION_CASES.map((c) => c.code));
    expect([...covered].sort((a, b) => a - b)).toEqual(Object.values(Violation).filter((v) => v !== 0));
  });

  for (const fromClient of [true, false]) {
    const dir = fromClient ? 'client → backend' : 'backend → client';
    for (const vc of VIOLATION_CASES) {
      const built = vc.build(fromClient);
      if (built === undefined) continue;
      const prefix = Buffer.concat(built.prefix);
      const tail = frame({ opcode: 9, mask: fromClient, payload: 'after' });
      const stream = Buffer.concat([prefix, built.bad, tail]);

      it(`${dir}: strict mode stops at ${vc.name} with code ${VIOLATION_KIND[vc.code]}`, () => {
        const rec = new Recorder();
        const s = scannerWith({ fromClient, strict: true, rsv1Allowed: vc.rsv1Allowed ?? false }, rec);
        expect(s.scan(stream)).toBe(vc.code);
        expect(s.stopOffset).toBe(prefix.length);
        expect(rec.violationCodes).toEqual([vc.code]);
        expect(s.failed).toBe(true);
        expect(s.lastViolation).toBe(vc.code);
        expect(rec.events.some((e) => e.startsWith('C op=9'))).toBe(false); // nothing after the stop
        // FAILED is terminal: later chunks report the same code and nothing of them is forwarded.
        expect(s.scan(tail)).toBe(vc.code);
        expect(s.stopOffset).toBe(0);
        expect(s.resumeOffset).toBe(-1);
      });

      it(`${dir}: the same stop when the stream arrives one byte at a time (${vc.name})`, () => {
        const s = scannerWith({ fromClient, strict: true, rsv1Allowed: vc.rsv1Allowed ?? false });
        expect(runChunks(s, everyByte(stream))).toEqual({ rc: vc.code, stopAbs: prefix.length });
      });

      it(`${dir}: lenient mode ${FATAL.has(vc.code) ? 'still stops at' : 'counts and passes'} ${vc.name}`, () => {
        const rec = new Recorder();
        const s = scannerWith({ fromClient, strict: false, rsv1Allowed: vc.rsv1Allowed ?? false }, rec);
        const rc = s.scan(stream);
        if (FATAL.has(vc.code)) {
          expect(rc).toBe(vc.code);
          expect(s.stopOffset).toBe(prefix.length);
          expect(s.failed).toBe(true);
        } else if (STRICT_ONLY.has(vc.code)) {
          expect(rc).toBe(0);
          expect(s.violations).toBe(0);
          expect(rec.events.at(-1)).toBe('C op=9 6166746572');
        } else {
          expect(rc).toBe(0);
          expect(s.violations).toBe(1);
          expect(s.lastViolation).toBe(vc.code);
          expect(rec.violationCodes).toEqual([vc.code]);
          expect(rec.events.at(-1)).toBe('C op=9 6166746572'); // the frame after was scanned normally
          expect(s.atFrameBoundary).toBe(true);
        }
      });
    }
  }

  it('§5.1: the masking rule is per direction (a masked frame is fine from a client, not from a backend)', () => {
    const masked = frame({ opcode: 1, mask: true, payload: 'x' });
    const unmasked = frame({ opcode: 1, mask: false, payload: 'x' });
    expect(scannerWith({ fromClient: true }).scan(masked)).toBe(0);
    expect(scannerWith({ fromClient: false }).scan(unmasked)).toBe(0);
    expect(scannerWith({ fromClient: false }).scan(masked)).toBe(Violation.MASKED_SERVER_FRAME);
    expect(scannerWith({ fromClient: true }).scan(unmasked)).toBe(Violation.UNMASKED_CLIENT_FRAME);
  });

  it('a strict stop on a close frame whose header arrived in an earlier chunk has a negative stopOffset', () => {
    const bad = frame({ opcode: 8, payload: closePayload(1000, Buffer.from([0xc3, 0x28])) }); // bad UTF-8
    const s = scannerWith({ fromClient: false, strict: true });
    expect(s.scan(bad.subarray(0, 3))).toBe(0);
    expect(s.bytesToFrameEnd()).toBe(3);
    expect(s.scan(bad.subarray(3))).toBe(Violation.INVALID_CLOSE_PAYLOAD);
    expect(s.stopOffset).toBe(-3);
  });
});

describe('close payloads (§5.5.1, §7.4)', () => {
  const cases: Array<[string, Buffer, boolean]> = [
    ['empty', Buffer.alloc(0), true],
    ['1000 with "bye"', closePayload(1000, 'bye'), true],
    ['4999', closePayload(4999), true],
    ['3000 with a UTF-8 reason', closePayload(3000, 'größe ✓'), true],
    ['one byte', Buffer.from([0x03]), false],
    ['999', closePayload(999), false],
    ['1004', closePayload(1004), false],
    ['1005', closePayload(1005), false],
    ['1006', closePayload(1006), false],
    ['1015', closePayload(1015), false],
    ['2000', closePayload(2000), false],
    ['5000', closePayload(5000), false],
    ['1000 with invalid UTF-8', closePayload(1000, Buffer.from([0xff, 0xfe])), false],
    ['1000 with a truncated UTF-8 sequence', closePayload(1000, Buffer.from([0xe2, 0x9c])), false],
  ];
  for (const [name, payload, valid] of cases) {
    it(`close ${name} is ${valid ? 'accepted' : 'INVALID_CLOSE_PAYLOAD'} in strict mode, passed in lenient`, () => {
      for (const fromClient of [true, false]) {
        const bytes = frame({ opcode: 8, mask: fromClient, payload });
        const rec = new Recorder();
        const strict = scannerWith({ fromClient, strict: true }, rec);
        expect(strict.scan(bytes)).toBe(valid ? 0 : Violation.INVALID_CLOSE_PAYLOAD);
        expect(rec.controlPayloads).toEqual(valid ? [payload.toString('hex')] : []);
        const lenientRec = new Recorder();
        const lenient = scannerWith({ fromClient, strict: false }, lenientRec);
        expect(lenient.scan(bytes)).toBe(0);
        expect(lenientRec.controlPayloads).toEqual([payload.toString('hex')]); // unmasked copy either way
      }
    });
  }
});

describe('length boundaries (§5.2)', () => {
  for (const length of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
    it(`a ${length}-byte frame uses the minimal form and is skipped exactly`, () => {
      for (const fromClient of [true, false]) {
        const rec = new Recorder();
        const s = scannerWith({ fromClient, strict: true }, rec);
        const f = frame({ opcode: 2, mask: fromClient, payload: Buffer.alloc(length, 0xab) });
        const expectedHeader = (length < 126 ? 2 : length < 65536 ? 4 : 10) + (fromClient ? 4 : 0);
        expect(f.length).toBe(expectedHeader + length);
        expect(s.scan(Buffer.concat([f, f]))).toBe(0);
        expect(s.headerLength).toBe(expectedHeader);
        expect(rec.events.filter((e) => e.startsWith('E'))).toHaveLength(2);
        expect(s.payloadLength).toBe(length);
      }
    });
  }

  it('2^53 − 1 declared bytes is the largest length accepted; the scanner just counts it down', () => {
    const s = scannerWith({ fromClient: false });
    const header = frame({ opcode: 2, declared: 2n ** 53n - 1n });
    expect(header).toHaveLength(10);
    expect(s.scan(header)).toBe(0);
    expect(s.payloadLength).toBe(Number.MAX_SAFE_INTEGER);
    expect(s.bytesToFrameEnd()).toBe(Number.MAX_SAFE_INTEGER);
    expect(s.scan(Buffer.alloc(1 << 20))).toBe(0);
    expect(s.bytesToFrameEnd()).toBe(Number.MAX_SAFE_INTEGER - (1 << 20));
    expect(s.state).toBe(ScannerState.PAYLOAD);
  });

  it('a declared 2^62-byte frame is FRAME_TOO_BIG in both modes and allocates nothing for it', () => {
    for (const strict of [true, false]) {
      const s = scannerWith({ fromClient: true, strict });
      const bytes = Buffer.concat([frame({ opcode: 2, mask: true, declared: 2n ** 62n }), Buffer.alloc(64)]);
      const before = process.memoryUsage().arrayBuffers;
      expect(s.scan(bytes)).toBe(Violation.FRAME_TOO_BIG);
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20);
      expect(s.payloadLength).toBe(2 ** 62);
      expect(s.stopOffset).toBe(0);
      expect(s.frames).toBe(0); // never handed to onFrameHeader
    }
  });
});

describe('permessage-deflate RSV1 (RFC 7692 §6)', () => {
  const run = (rsv1Allowed: boolean, frames: Buffer[]): number =>
    scannerWith({ fromClient: false, rsv1Allowed }).scan(Buffer.concat(frames));

  it('RSV1 on the first frame of a message is fine when negotiated, a violation when not', () => {
    const first = frame({ opcode: 1, rsv: 4, fin: false, payload: 'ab' });
    const last = frame({ opcode: 0, payload: 'cd' });
    expect(run(true, [first, last])).toBe(0);
    expect(run(false, [first, last])).toBe(Violation.RSV_WITHOUT_EXTENSION);
  });

  it('RSV1 on a continuation frame is a violation even when negotiated', () => {
    const first = frame({ opcode: 2, rsv: 4, fin: false, payload: 'ab' });
    const cont = frame({ opcode: 0, rsv: 4, payload: 'cd' });
    expect(run(true, [first, cont])).toBe(Violation.RSV_WITHOUT_EXTENSION);
  });

  it('RSV1 on a control frame is a violation even when negotiated', () => {
    expect(run(true, [frame({ opcode: 9, rsv: 4, payload: 'p' })])).toBe(Violation.RSV_WITHOUT_EXTENSION);
    expect(run(true, [frame({ opcode: 8, rsv: 4 })])).toBe(Violation.RSV_WITHOUT_EXTENSION);
  });

  it('reports the RSV bits as RSV1 = 4', () => {
    const rec = new Recorder();
    scannerWith({ fromClient: false, rsv1Allowed: true }, rec).scan(frame({ opcode: 2, rsv: 4, payload: 'q' }));
    expect(rec.events[0]).toBe('H fin=1 rsv=4 op=2 m=0 len=1 mop=2 mbytes=1 mframes=1');
  });
});

describe('fragmentation (§5.4)', () => {
  it('control frames interleaved in a fragmented message do not end or disturb it', () => {
    for (const fromClient of [true, false]) {
      const rec = new Recorder();
      const s = scannerWith({ fromClient, strict: true }, rec);
      const m = fromClient;
      const stream = Buffer.concat([
        frame({ opcode: 1, fin: false, mask: m, payload: 'Hel' }),
        frame({ opcode: 9, mask: m, payload: 'ping' }),
        frame({ opcode: 0, fin: false, mask: m, payload: '' }),
        frame({ opcode: 10, mask: m, payload: '' }),
        frame({ opcode: 8, mask: m, payload: closePayload(1001, 'going') }),
        frame({ opcode: 0, fin: true, mask: m, payload: 'lo' }),
      ]);
      expect(s.scan(stream)).toBe(0);
      expect(rec.events).toEqual([
        `H fin=0 rsv=0 op=1 m=${+m} len=3 mop=1 mbytes=3 mframes=1`,
        `H fin=1 rsv=0 op=9 m=${+m} len=4 mop=1 mbytes=3 mframes=1`,
        'C op=9 70696e67',
        `H fin=0 rsv=0 op=0 m=${+m} len=0 mop=1 mbytes=3 mframes=2`,
        `H fin=1 rsv=0 op=10 m=${+m} len=0 mop=1 mbytes=3 mframes=2`,
        'C op=10 ',
        `H fin=1 rsv=0 op=8 m=${+m} len=7 mop=1 mbytes=3 mframes=2`,
        `C op=8 ${closePayload(1001, 'going').toString('hex')}`,
        `H fin=1 rsv=0 op=0 m=${+m} len=2 mop=1 mbytes=5 mframes=3`,
        'E mop=1 mbytes=5 mframes=3',
      ]);
    }
  });

  it('10,000 empty continuation frames make one message, whole and byte by byte', () => {
    const parts = [frame({ opcode: 2, fin: false, mask: true })];
    for (let i = 0; i < 9_999; i++) parts.push(frame({ opcode: 0, fin: false, mask: true }));
    parts.push(frame({ opcode: 0, fin: true, mask: true }));
    const stream = Buffer.concat(parts);
    for (const chunks of [[stream], everyByte(stream)]) {
      const rec = new Recorder();
      const s = scannerWith({ fromClient: true, strict: true }, rec);
      expect(runChunks(s, chunks).rc).toBe(0);
      expect(s.frames).toBe(10_001);
      expect(s.messages).toBe(1);
      expect(rec.events.at(-1)).toBe('E mop=2 mbytes=0 mframes=10001');
      expect(s.atFrameBoundary).toBe(true);
    }
  });

  it('lenient mode treats an orphan continuation as a message of opcode 0 and counts one violation for it', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: false, strict: false }, rec);
    const stream = Buffer.concat([
      frame({ opcode: 0, fin: false, payload: 'ab' }),
      frame({ opcode: 0, fin: true, payload: 'c' }),
    ]);
    expect(s.scan(stream)).toBe(0);
    expect(s.violations).toBe(1);
    expect(rec.events.at(-1)).toBe('E mop=0 mbytes=3 mframes=2');
  });

  it('lenient mode passes an over-long control frame and reports it without a payload', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: false, strict: false }, rec);
    expect(s.scan(frame({ opcode: 9, payload: Buffer.alloc(300) }))).toBe(0);
    expect(rec.controlPayloads).toEqual(['none']);
    expect(s.lastViolation).toBe(Violation.CONTROL_TOO_LONG);
  });
});

describe('headers that straddle chunks', () => {
  it('allocates the carry only when a header straddles, and reports -1 bytes to frame end meanwhile', () => {
    const s = scannerWith({ fromClient: true });
    const f = frame({ opcode: 2, mask: true, payload: Buffer.alloc(300) }); // 8-byte header
    expect(s.scan(f)).toBe(0);
    expect(Reflect.get(s, 'carry')).toBeUndefined(); // an aligned stream never needs it
    expect(s.scan(f.subarray(0, 5))).toBe(0);
    expect(s.bytesToFrameEnd()).toBe(-1);
    expect(s.atFrameBoundary).toBe(false);
    expect((Reflect.get(s, 'carry') as Buffer).length).toBe(14);
    expect(s.scan(f.subarray(5, 9))).toBe(0);
    expect(s.bytesToFrameEnd()).toBe(299);
    expect(s.scan(f.subarray(9))).toBe(0);
    expect(s.bytesToFrameEnd()).toBe(0);
    expect(s.frames).toBe(2);
  });

  it('scan(chunk, start, end) only looks at that range', () => {
    const rec = new Recorder();
    const s = scannerWith({ fromClient: false }, rec);
    const f = frame({ opcode: 1, payload: 'Hi' });
    const padded = Buffer.concat([Buffer.from([0xff, 0xff]), f, Buffer.from([0xff])]);
    expect(s.scan(padded, 2, 2 + f.length)).toBe(0);
    expect(rec.events).toEqual(['H fin=1 rsv=0 op=1 m=0 len=2 mop=1 mbytes=2 mframes=1', 'E mop=1 mbytes=2 mframes=1']);
    expect(s.bytes).toBe(f.length);
  });

  it('clamps an out-of-range start/end instead of throwing or counting negative bytes', () => {
    const s = scannerWith({ fromClient: false });
    const f = frame({ opcode: 1, payload: 'Hi' });
    expect(s.scan(f, 3, 1)).toBe(0);
    expect(s.bytes).toBe(0);
    expect(s.scan(f, -5, 99)).toBe(0);
    expect(s.bytes).toBe(f.length);
    expect(s.messages).toBe(1);
  });
});

describe('observer stops', () => {
  const a = frame({ opcode: 1, payload: 'first' }); // 7 bytes
  const b = frame({ opcode: 2, payload: Buffer.alloc(200, 1) }); // 4-byte header

  it('100 from onFrameHeader stops at the header inside the chunk, and the scan resumes from there', () => {
    const rec = new Recorder();
    rec.stopHeaderAt = 1;
    const s = scannerWith({ fromClient: false }, rec);
    const chunk = Buffer.concat([a, b]);
    expect(s.scan(chunk)).toBe(100);
    expect(s.stopOffset).toBe(a.length);
    expect(s.resumeOffset).toBe(a.length);
    expect(s.atFrameBoundary).toBe(true);
    expect(s.frames).toBe(1);
    expect(s.scan(chunk, s.resumeOffset)).toBe(0);
    expect(s.frames).toBe(2);
    expect(rec.events.filter((e) => e.startsWith('H'))).toHaveLength(2);
    expect(s.bytes).toBe(chunk.length);
  });

  it('a stop on a header that straddled chunks gives a negative stopOffset and resumes from the chunk start', () => {
    const rec = new Recorder();
    rec.stopHeaderAt = 1;
    const s = scannerWith({ fromClient: false }, rec);
    const first = Buffer.concat([a, b.subarray(0, 3)]); // 3 of b's 4 header bytes
    const second = b.subarray(3);
    expect(s.scan(first)).toBe(0);
    expect(s.scan(second)).toBe(100);
    expect(s.stopOffset).toBe(-3);
    expect(s.resumeOffset).toBe(0);
    expect(s.bytesToFrameEnd()).toBe(-1);
    expect(s.scan(second, s.resumeOffset)).toBe(0);
    expect(rec.events.slice(-2)).toEqual([
      'H fin=1 rsv=0 op=2 m=0 len=200 mop=2 mbytes=200 mframes=1',
      'E mop=2 mbytes=200 mframes=1',
    ]);
    expect(s.bytes).toBe(a.length + b.length);
  });

  it('a frame presented again after a stop has the same frameStart, in one chunk and across chunks', () => {
    const starts: number[] = [];
    let stops = 2;
    const observer: FrameObserver = {
      onFrameHeader: (sc) => {
        starts.push(sc.frameStart);
        return sc.opcode === 2 && stops-- > 0 ? 100 : 0;
      },
      onControlFrame: () => 0,
      onMessageEnd: () => 0,
    };
    const s = scannerWith({ fromClient: false }, observer);
    const first = Buffer.concat([a, b.subarray(0, 3)]);
    const second = b.subarray(3);
    expect(s.scan(first)).toBe(0);
    expect(s.scan(second)).toBe(100);
    expect(s.scan(second, s.resumeOffset)).toBe(100);
    expect(s.scan(second, s.resumeOffset)).toBe(0);
    expect(starts).toEqual([0, a.length, a.length, a.length]);
  });

  it('a code from onMessageEnd stops just past the frame, at a boundary where a close can be written', () => {
    let ends = 0;
    const observer: FrameObserver = {
      onFrameHeader: () => 0,
      onControlFrame: () => 0,
      onMessageEnd: () => (++ends === 1 ? 101 : 0),
    };
    const s = scannerWith({ fromClient: false }, observer);
    const chunk = Buffer.concat([a, b]);
    expect(s.scan(chunk)).toBe(101);
    expect(s.stopOffset).toBe(a.length);
    expect(s.atFrameBoundary).toBe(true);
    expect(s.scan(chunk, s.resumeOffset)).toBe(0);
    expect(ends).toBe(2);
  });

  it('a code from onControlFrame stops just past the control frame', () => {
    const ping = frame({ opcode: 9, payload: 'p' });
    const observer: FrameObserver = {
      onFrameHeader: () => 0,
      onControlFrame: (s) => (s.opcode === 9 ? 102 : 0),
      onMessageEnd: () => 0,
    };
    const s = scannerWith({ fromClient: false }, observer);
    expect(s.scan(Buffer.concat([a, ping, b]))).toBe(102);
    expect(s.stopOffset).toBe(a.length + ping.length);
  });

  it('in lenient mode a code from onViolation stops at the offending header like onFrameHeader does', () => {
    const observer: FrameObserver = {
      onFrameHeader: () => 0,
      onControlFrame: () => 0,
      onMessageEnd: () => 0,
      onViolation: () => 103,
    };
    const s = scannerWith({ fromClient: false, strict: false }, observer);
    const bad = frame({ opcode: 0, payload: 'orphan' });
    expect(s.scan(Buffer.concat([a, bad]))).toBe(103);
    expect(s.stopOffset).toBe(a.length);
    expect(s.violations).toBe(0); // rewound with the header
    expect(s.failed).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

interface ControlSpec {
  opcode: 8 | 9 | 10;
  payload: Uint8Array;
}
interface MessageSpec {
  opcode: 1 | 2;
  compressed: boolean;
  fragments: number[];
  controls: Array<[before: number, ctl: ControlSpec]>;
}

const lengthArb = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 0, max: 140 }) },
  { weight: 4, arbitrary: fc.constantFrom(0, 125, 126, 127) },
  { weight: 1, arbitrary: fc.constantFrom(65535, 65536) },
);
const controlArb: fc.Arbitrary<ControlSpec> = fc.oneof(
  fc.record({ opcode: fc.constantFrom<9 | 10>(9, 10), payload: fc.uint8Array({ maxLength: 125 }) }),
  fc
    .record({
      code: fc.constantFrom(1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999),
      reason: fc.string({ maxLength: 40, unit: 'binary' }),
    })
    .map(({ code, reason }) => {
      let text = reason;
      while (closePayload(code, text).length > 125) text = text.slice(0, -1);
      return { opcode: 8 as const, payload: closePayload(code, text) };
    }),
  fc.constant({ opcode: 8 as const, payload: new Uint8Array(0) }),
);
const messageArb: fc.Arbitrary<MessageSpec> = fc.record({
  opcode: fc.constantFrom<1 | 2>(1, 2),
  compressed: fc.boolean(),
  fragments: fc.array(lengthArb, { minLength: 1, maxLength: 4 }),
  controls: fc.array(fc.tuple(fc.nat(4), controlArb), { maxLength: 3 }),
});
interface StreamSpec {
  fromClient: boolean;
  strict: boolean;
  messages: MessageSpec[];
  trailingControls: ControlSpec[];
  key: number;
}
const streamArb: fc.Arbitrary<StreamSpec> = fc.record({
  fromClient: fc.boolean(),
  strict: fc.boolean(),
  messages: fc.array(messageArb, { maxLength: 5 }),
  trailingControls: fc.array(controlArb, { maxLength: 2 }),
  key: fc.integer({ min: 0, max: 0xffffffff }),
});

/** The wire bytes of a valid stream and the events the scanner must report for it. */
function buildValidStream(spec: StreamSpec): {
  bytes: Buffer;
  expected: string[];
} {
  const parts: Buffer[] = [];
  const expected: string[] = [];
  const m = spec.fromClient;
  let key = spec.key;
  const nextKey = (): number => {
    key = (Math.imul(key, 1103515245) + 12345) >>> 0;
    return key;
  };
  const control = (ctl: ControlSpec, mop: number, mbytes: number, mframes: number): void => {
    parts.push(frame({ opcode: ctl.opcode, mask: m, payload: ctl.payload, key: nextKey() }));
    expected.push(
      `H fin=1 rsv=0 op=${ctl.opcode} m=${+m} len=${ctl.payload.length} mop=${mop} mbytes=${mbytes} mframes=${mframes}`,
      `C op=${ctl.opcode} ${Buffer.from(ctl.payload).toString('hex')}`,
    );
  };
  let lastFrames = 0;
  let lastBytes = 0;
  for (const msg of spec.messages) {
    let mbytes = 0;
    msg.fragments.forEach((length, j) => {
      for (const [before, ctl] of msg.controls) {
        if (before === j && j > 0) control(ctl, msg.opcode, mbytes, j);
      }
      const fin = j === msg.fragments.length - 1;
      const opcode = j === 0 ? msg.opcode : 0;
      const rsv = j === 0 && msg.compressed ? 4 : 0;
      mbytes += length;
      const payload = Buffer.alloc(length, (j * 37 + length) & 0xff);
      parts.push(frame({ opcode, fin, rsv, mask: m, payload, key: nextKey() }));
      expected.push(
        `H fin=${+fin} rsv=${rsv} op=${opcode} m=${+m} len=${length} mop=${msg.opcode} mbytes=${mbytes} mframes=${j + 1}`,
      );
      if (fin) expected.push(`E mop=${msg.opcode} mbytes=${mbytes} mframes=${j + 1}`);
    });
    lastFrames = msg.fragments.length;
    lastBytes = mbytes;
  }
  // Between messages messageOpcode is 0 while bytes/frames keep the last message's values.
  for (const ctl of spec.trailingControls) control(ctl, 0, lastBytes, lastFrames);
  return { bytes: Buffer.concat(parts), expected };
}

function scanValid(
  spec: { fromClient: boolean; strict: boolean },
  chunks: readonly Buffer[],
): { rec: Recorder; rc: number; s: FrameScanner } {
  const rec = new Recorder();
  const s = scannerWith({ fromClient: spec.fromClient, strict: spec.strict, rsv1Allowed: true }, rec);
  const { rc } = runChunks(s, chunks);
  return { rec, rc, s };
}

describe('properties', () => {
  it('any valid stream, split anywhere, yields the same headers as scanning it whole; chunks stay untouched', () => {
    fc.assert(
      fc.property(streamArb, fc.array(fc.nat(), { maxLength: 12 }), (spec, cuts) => {
        const { bytes, expected } = buildValidStream(spec);
        const pristine = Buffer.from(bytes);
        const whole = scanValid(spec, [bytes]);
        expect(whole.rc).toBe(0);
        expect(whole.rec.events).toEqual(expected);
        const chunks = splitAt(bytes, cuts);
        const split = scanValid(spec, chunks);
        expect(split.rc).toBe(0);
        expect(split.rec.events).toEqual(whole.rec.events);
        expect(Buffer.concat(chunks)).toEqual(pristine); // the chunks were all the scanner needed, unmodified
        expect(bytes).toEqual(pristine);
        expect(split.s.atFrameBoundary).toBe(true);
        expect(split.s.bytes).toBe(bytes.length);
      }),
      { numRuns: 300 },
    );
  });

  it('any valid stream fed one byte at a time yields the same headers', () => {
    fc.assert(
      fc.property(streamArb, (spec) => {
        const { bytes, expected } = buildValidStream(spec);
        const split = scanValid(spec, everyByte(bytes));
        expect(split.rc).toBe(0);
        expect(split.rec.events).toEqual(expected);
      }),
      { numRuns: 60 },
    );
  });

  it('stopping at every header and resuming from resumeOffset is invisible, however the stream is split', () => {
    fc.assert(
      fc.property(streamArb, fc.array(fc.nat(), { maxLength: 12 }), (spec, cuts) => {
        const { bytes, expected } = buildValidStream(spec);
        // Refuses each header the first time it is presented, accepts it the second time.
        const rec = new Recorder();
        let refused = false;
        const inner = rec.onFrameHeader.bind(rec);
        rec.onFrameHeader = (s) => {
          refused = !refused;
          return refused ? 100 : inner(s);
        };
        const s = scannerWith({ fromClient: spec.fromClient, strict: spec.strict, rsv1Allowed: true }, rec);
        let stops = 0;
        for (const chunk of splitAt(bytes, cuts)) {
          let rc = s.scan(chunk);
          while (rc === 100) {
            stops++;
            expect(s.stopOffset).toBeLessThanOrEqual(s.resumeOffset);
            rc = s.scan(chunk, s.resumeOffset);
          }
          expect(rc).toBe(0);
        }
        expect(rec.events).toEqual(expected);
        expect(stops).toBe(s.frames);
      }),
      { numRuns: 200 },
    );
  });

  it('random bytes never throw, and the outcome does not depend on how they are split', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 400 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        (raw, cuts, fromClient, strict, rsv1Allowed) => {
          const bytes = Buffer.from(raw);
          const run = (chunks: Buffer[]) => {
            const rec = new Recorder();
            const s = scannerWith({ fromClient, strict, rsv1Allowed }, rec);
            const out = runChunks(s, chunks);
            return { ...out, events: rec.events, s };
          };
          const whole = run([bytes]);
          const split = run(splitAt(bytes, cuts));
          const bytewise = run(everyByte(bytes));
          for (const other of [split, bytewise]) {
            expect(other.rc).toBe(whole.rc);
            expect(other.stopAbs).toBe(whole.stopAbs);
            expect(other.events).toEqual(whole.events);
          }
          if (whole.rc === 0) expect(whole.s.bytes).toBe(bytes.length);
          else {
            expect(whole.s.failed).toBe(true);
            expect(whole.stopAbs).toBeGreaterThanOrEqual(0);
            expect(whole.stopAbs).toBeLessThan(bytes.length);
          }
          if (!strict && whole.rc !== 0) expect(FATAL.has(whole.rc)).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('random frames with random header bits never throw and agree between whole and split scans', () => {
    // Random bytes rarely form long plausible streams; these are well-formed headers with random bits.
    const rawFrame = fc
      .record({
        b0: fc.integer({ min: 0, max: 255 }),
        mask: fc.boolean(),
        length: lengthArb,
        form: fc.constantFrom<16 | 64 | undefined>(undefined, undefined, 16, 64),
      })
      .map(({ b0, mask, length, form }) =>
        frame({
          fin: (b0 & 0x80) !== 0,
          rsv: (b0 >> 4) & 7,
          opcode: b0 & 0xf,
          mask,
          payload: Buffer.alloc(length, 0x41),
          form: form === 16 && length > 65535 ? undefined : form,
        }),
      );
    fc.assert(
      fc.property(
        fc.array(rawFrame, { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.boolean(),
        fc.boolean(),
        (frames, cuts, fromClient, strict) => {
          const bytes = Buffer.concat(frames);
          const run = (chunks: Buffer[]) => {
            const rec = new Recorder();
            const s = scannerWith({ fromClient, strict, rsv1Allowed: true }, rec);
            return { ...runChunks(s, chunks), events: rec.events, violations: s.violations };
          };
          const whole = run([bytes]);
          const split = run(splitAt(bytes, cuts));
          expect(split).toEqual(whole);
          if (!strict) expect(whole.rc).toBe(0); // every length here is countable
        },
      ),
      { numRuns: 300 },
    );
  });
});
