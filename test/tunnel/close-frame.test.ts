// Close and ping frames wsgate writes (RFC 6455 §5.5, §7.4), read back with the frame scanner.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CLOSE_CODES,
  encodeCloseFrame,
  encodePing,
  encodePong,
  isValidCloseCode,
  MAX_CLOSE_REASON_BYTES,
  parseClosePayload,
} from '../../src/tunnel/close-frame.js';
import { FrameScanner } from '../../src/tunnel/frame-scanner.js';

/** Decodes one complete control frame: header bits, and the payload unmasked. */
function decode(frame: Buffer): { fin: boolean; opcode: number; masked: boolean; key: Buffer; payload: Buffer } {
  const masked = (frame[1]! & 0x80) !== 0;
  const length = frame[1]! & 0x7f;
  expect(length).toBeLessThanOrEqual(125);
  const start = masked ? 6 : 2;
  expect(frame.length).toBe(start + length);
  const key = masked ? frame.subarray(2, 6) : Buffer.alloc(0);
  const payload = Buffer.from(frame.subarray(start));
  if (masked) for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
  return { fin: (frame[0]! & 0x80) !== 0, opcode: frame[0]! & 0x0f, masked, key, payload };
}

describe('encodeCloseFrame', () => {
  it('an unmasked 1000 "bye" toward a client is exactly 88 05 03 e8 62 79 65', () => {
    expect(encodeCloseFrame(CLOSE_CODES.NORMAL, 'bye', false)).toEqual(Buffer.from('880503e8627965', 'hex'));
  });

  it('a masked close toward a backend carries the code and reason under a mask', () => {
    const frame = encodeCloseFrame(CLOSE_CODES.SERVICE_RESTART, 'rebalancing', true);
    const d = decode(frame);
    expect(d).toMatchObject({ fin: true, opcode: 8, masked: true });
    expect(parseClosePayload(d.payload)).toEqual({ code: 1012, reason: 'rebalancing' });
  });

  it('uses a fresh masking key per frame', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 200; i++) keys.add(decode(encodeCloseFrame(1001, '', true)).key.toString('hex'));
    expect(keys.size).toBeGreaterThan(190); // 200 random 32-bit keys: collisions are ~never
  });

  it('a code without a reason is a 2-byte payload', () => {
    expect(encodeCloseFrame(CLOSE_CODES.BAD_GATEWAY, '', false)).toEqual(Buffer.from('880203f6', 'hex'));
  });

  it('cuts a long reason to 123 bytes without splitting a UTF-8 character', () => {
    // 'é' is 2 bytes, '✓' 3, '😀' 4: every cut point within a character is reached by some prefix.
    for (const unit of ['a', 'é', '✓', '😀']) {
      for (let prefix = 0; prefix < 4; prefix++) {
        const reason = 'x'.repeat(prefix) + unit.repeat(200);
        const payload = decode(encodeCloseFrame(1008, reason, false)).payload;
        expect(payload.length).toBeLessThanOrEqual(125);
        expect(payload.length).toBeGreaterThan(125 - Buffer.byteLength(unit));
        const parsed = parseClosePayload(payload);
        expect(parsed?.code).toBe(1008);
        expect(reason.startsWith(parsed!.reason)).toBe(true);
        expect(Buffer.byteLength(parsed!.reason)).toBeLessThanOrEqual(MAX_CLOSE_REASON_BYTES);
      }
    }
  });

  it('refuses codes that may not be sent (1005, 1006, 1015, 999, 5000)', () => {
    for (const code of [1005, 1006, 1015, 999, 5000, 1000.5]) {
      expect(() => encodeCloseFrame(code, '', false)).toThrow(RangeError);
    }
  });

  it('round-trips any valid code and reason, and the strict scanner accepts the frame', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 1000, max: 1003 }),
          fc.integer({ min: 1007, max: 1014 }),
          fc.integer({ min: 3000, max: 4999 }),
        ),
        fc.string({ maxLength: 80, unit: 'grapheme' }),
        fc.boolean(),
        (code, reason, mask) => {
          const frame = encodeCloseFrame(code, reason, mask);
          const d = decode(frame);
          const parsed = parseClosePayload(d.payload);
          expect(parsed?.code).toBe(code);
          expect(reason.startsWith(parsed!.reason)).toBe(true);
          let seen: string | undefined;
          const scanner = new FrameScanner({
            fromClient: mask,
            rsv1Allowed: false,
            strict: true,
            observer: {
              onFrameHeader: () => 0,
              onControlFrame: (s) => {
                seen = s.controlPayload?.toString('hex');
                return 0;
              },
              onMessageEnd: () => 0,
            },
          });
          expect(scanner.scan(frame)).toBe(0);
          expect(seen).toBe(d.payload.toString('hex'));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('encodePing / encodePong', () => {
  it('an unmasked ping "Hello" is 89 05 48 65 6c 6c 6f (§5.7)', () => {
    expect(encodePing('Hello', false)).toEqual(Buffer.from('890548656c6c6f', 'hex'));
  });

  it('a masked pong unmasks to its payload', () => {
    const d = decode(encodePong(Buffer.from('Hello'), true));
    expect(d).toMatchObject({ fin: true, opcode: 10, masked: true });
    expect(d.payload.toString()).toBe('Hello');
  });

  it('takes up to 125 payload bytes and refuses 126', () => {
    expect(decode(encodePing(Buffer.alloc(125, 1), true)).payload).toEqual(Buffer.alloc(125, 1));
    expect(() => encodePing(Buffer.alloc(126), false)).toThrow(RangeError);
  });
});

describe('isValidCloseCode (§7.4)', () => {
  it('accepts exactly 1000–1003, 1007–1014 and 3000–4999', () => {
    const valid: number[] = [];
    for (let code = 0; code <= 6000; code++) if (isValidCloseCode(code)) valid.push(code);
    const expected: number[] = [1000, 1001, 1002, 1003];
    for (let c = 1007; c <= 1014; c++) expected.push(c);
    for (let c = 3000; c <= 4999; c++) expected.push(c);
    expect(valid).toEqual(expected);
    expect(isValidCloseCode(1000.5)).toBe(false);
    expect(isValidCloseCode(Number.NaN)).toBe(false);
  });

  it('names the codes the design table uses', () => {
    expect(CLOSE_CODES).toMatchObject({
      NORMAL: 1000,
      GOING_AWAY: 1001,
      PROTOCOL_ERROR: 1002,
      POLICY_VIOLATION: 1008,
      MESSAGE_TOO_BIG: 1009,
      INTERNAL_ERROR: 1011,
      SERVICE_RESTART: 1012,
      BAD_GATEWAY: 1014,
    });
  });
});

describe('parseClosePayload', () => {
  it('reads code and reason', () => {
    expect(parseClosePayload(Buffer.from('03e8627965', 'hex'))).toEqual({ code: 1000, reason: 'bye' });
  });

  it('an empty payload means 1005 "no status" (§7.1.5)', () => {
    expect(parseClosePayload(Buffer.alloc(0))).toEqual({ code: 1005, reason: '' });
  });

  it('rejects a 1-byte payload, unsendable codes, invalid UTF-8 and over-long payloads', () => {
    expect(parseClosePayload(Buffer.from([0x03]))).toBeUndefined();
    expect(parseClosePayload(Buffer.from('03ed', 'hex'))).toBeUndefined(); // 1005
    expect(parseClosePayload(Buffer.from('1388', 'hex'))).toBeUndefined(); // 5000
    expect(parseClosePayload(Buffer.from('03e8c328', 'hex'))).toBeUndefined(); // bad UTF-8
    expect(parseClosePayload(Buffer.concat([Buffer.from('03e8', 'hex'), Buffer.alloc(124, 0x61)]))).toBeUndefined();
  });

  it('reads a reason from a view into a larger buffer', () => {
    const big = Buffer.from('ffff0bb8686921ffff', 'hex');
    expect(parseClosePayload(big.subarray(2, 7))).toEqual({ code: 3000, reason: 'hi!' });
  });
});
