// Close and ping frames that wsgate writes itself (RFC 6455 §5.5), plus close-code rules (§7.4).
// Everything here is off the hot path: it runs once per close, never per forwarded frame.

import { isUtf8 } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

/** Close codes by name (RFC 6455 §7.4.1 and the IANA registry). */
export const CLOSE_CODES = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  /** Reserved: never sent; what a receiver reports for a close frame without a code. */
  NO_STATUS: 1005,
  /** Reserved: never sent; what a receiver reports when the connection dropped without a close. */
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  MANDATORY_EXTENSION: 1010,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  BAD_GATEWAY: 1014,
  /** Reserved: never sent. */
  TLS_HANDSHAKE: 1015,
} as const;

export const OPCODE_CLOSE = 0x8;
export const OPCODE_PING = 0x9;
export const OPCODE_PONG = 0xa;

/** Control frame payloads are at most 125 bytes (§5.5); a close reason gets what the 2-byte code leaves. */
export const MAX_CONTROL_PAYLOAD_BYTES = 125;
export const MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD_BYTES - 2;

/** True for codes an endpoint may put in a close frame: 1000–1003, 1007–1014, 3000–4999 (§7.4). */
export function isValidCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  );
}

export interface ClosePayload {
  code: number;
  reason: string;
}

/**
 * Reads an (already unmasked) close payload. An empty payload means "no status" and yields
 * `{ code: 1005, reason: '' }` (§7.1.5). Returns undefined when the payload is not allowed on the
 * wire: 1 byte long, longer than 125, a code that may not be sent, or a reason that is not UTF-8.
 */
export function parseClosePayload(buf: Uint8Array): ClosePayload | undefined {
  if (buf.length === 0) return { code: CLOSE_CODES.NO_STATUS, reason: '' };
  if (buf.length === 1 || buf.length > MAX_CONTROL_PAYLOAD_BYTES) return undefined;
  const code = (buf[0]! << 8) | buf[1]!;
  if (!isValidCloseCode(code)) return undefined;
  const reasonBytes = buf.subarray(2);
  if (!isUtf8(reasonBytes)) return undefined;
  return { code, reason: Buffer.from(reasonBytes.buffer, reasonBytes.byteOffset, reasonBytes.length).toString('utf8') };
}

// Masking keys come from a small pool filled by one randomFillSync call, so a burst of closes
// (drain, reload) does not make one syscall per frame. Every key is used once.
const MASK_POOL_BYTES = 256;
const maskPool = Buffer.allocUnsafe(MASK_POOL_BYTES);
let maskPoolOffset = MASK_POOL_BYTES;

function nextMaskOffset(): number {
  if (maskPoolOffset + 4 > MASK_POOL_BYTES) {
    randomFillSync(maskPool);
    maskPoolOffset = 0;
  }
  const offset = maskPoolOffset;
  maskPoolOffset += 4;
  return offset;
}

/** Scratch for the close payload, so the reason is encoded once and the frame allocated at its exact size. */
const closeScratch = Buffer.allocUnsafe(MAX_CONTROL_PAYLOAD_BYTES);

/**
 * Builds one control frame (FIN set) around `payload[0..length)`. Masked frames (toward backends,
 * §5.3) get a fresh random key; unmasked frames go toward clients.
 */
function encodeControlFrame(opcode: number, payload: Uint8Array, length: number, mask: boolean): Buffer {
  const headerBytes = mask ? 6 : 2;
  const frame = Buffer.allocUnsafe(headerBytes + length);
  frame[0] = 0x80 | opcode;
  frame[1] = (mask ? 0x80 : 0) | length;
  if (!mask) {
    frame.set(payload.subarray(0, length), 2);
    return frame;
  }
  const keyOffset = nextMaskOffset();
  maskPool.copy(frame, 2, keyOffset, keyOffset + 4);
  for (let i = 0; i < length; i++) frame[6 + i] = payload[i]! ^ maskPool[keyOffset + (i & 3)]!;
  return frame;
}

/**
 * A complete close frame. The reason is cut to at most 123 UTF-8 bytes at a character boundary.
 * Throws RangeError for a code that may not be sent (e.g. 1005, 1006): that is a bug in the caller.
 */
export function encodeCloseFrame(code: number, reason: string, mask: boolean): Buffer {
  if (!isValidCloseCode(code)) throw new RangeError(`close code ${code} may not be sent in a close frame`);
  closeScratch[0] = code >>> 8;
  closeScratch[1] = code & 0xff;
  // Buffer#write never writes a partial character, so this is the character-safe truncation.
  const reasonBytes = reason.length === 0 ? 0 : closeScratch.write(reason, 2, MAX_CLOSE_REASON_BYTES, 'utf8');
  return encodeControlFrame(OPCODE_CLOSE, closeScratch, 2 + reasonBytes, mask);
}

function encodeSmallControl(opcode: number, payload: Uint8Array | string, mask: boolean): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (bytes.length > MAX_CONTROL_PAYLOAD_BYTES) {
    throw new RangeError(`control frame payload is ${bytes.length} bytes; at most ${MAX_CONTROL_PAYLOAD_BYTES}`);
  }
  return encodeControlFrame(opcode, bytes, bytes.length, mask);
}

/** A ping frame; payload at most 125 bytes (RangeError otherwise). */
export function encodePing(payload: Uint8Array | string, mask: boolean): Buffer {
  return encodeSmallControl(OPCODE_PING, payload, mask);
}

/** A pong frame; payload at most 125 bytes (RangeError otherwise). */
export function encodePong(payload: Uint8Array | string, mask: boolean): Buffer {
  return encodeSmallControl(OPCODE_PONG, payload, mask);
}
