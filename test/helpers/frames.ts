// WebSocket frames by hand (RFC 6455 §5.2): headers with any length encoding (minimal or not, up to 2^64-1),
// whole frames masked or not, and a parser for what a raw peer received, so a test can declare what it likes,
// send what it likes and read exactly what came back.

import { randomBytes } from 'node:crypto';

export interface HeaderOptions {
  /** Force the length encoding: 0 = 7-bit, 2 = 16-bit, 8 = 64-bit (default: minimal). */
  lengthBytes?: 0 | 2 | 8;
  masked: boolean;
  /** The masking key (default: random). */
  mask?: Buffer;
}

/** A frame header: first byte `b0` (FIN/RSV/opcode), then the declared length and, if masked, a mask. */
export function frameHeader(b0: number, declared: bigint, options: HeaderOptions): Buffer {
  const lengthBytes = options.lengthBytes ?? (declared < 126n ? 0 : declared < 65536n ? 2 : 8);
  const head = Buffer.alloc(2 + lengthBytes + (options.masked ? 4 : 0));
  head[0] = b0;
  const maskBit = options.masked ? 0x80 : 0;
  if (lengthBytes === 0) head[1] = maskBit | Number(declared);
  else if (lengthBytes === 2) {
    head[1] = maskBit | 126;
    head.writeUInt16BE(Number(declared), 2);
  } else {
    head[1] = maskBit | 127;
    head.writeBigUInt64BE(declared, 2);
  }
  if (options.masked) (options.mask ?? randomBytes(4)).copy(head, 2 + lengthBytes);
  return head;
}

export interface FrameOptions {
  /** Default true: client frames are masked (RFC 6455 §5.3). */
  masked?: boolean;
  fin?: boolean;
  /** RSV bits as a number: RSV1 = 4, RSV2 = 2, RSV3 = 1. */
  rsv?: number;
  /** The masking key (default: random). */
  mask?: Buffer;
  /** Force the length encoding, as in HeaderOptions. */
  lengthBytes?: 0 | 2 | 8;
  /** Declared length when it differs from the payload appended (default: the payload's length). */
  declared?: bigint;
}

/** Encodes one frame: header, then the payload (masked when `masked`). */
export function frame(opcode: number, payload: Buffer | string, options: FrameOptions = {}): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const masked = options.masked ?? true;
  const mask = masked ? (options.mask ?? randomBytes(4)) : undefined;
  const b0 = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | opcode;
  const head = frameHeader(b0, options.declared ?? BigInt(data.length), {
    masked,
    mask,
    lengthBytes: options.lengthBytes,
  });
  return Buffer.concat([head, mask ? applyMask(data, mask) : data]);
}

/** A copy of `data` XORed with the 4-byte `mask` (§5.3); masking twice gives the data back. */
export function applyMask(data: Uint8Array, mask: Uint8Array): Buffer {
  const out = Buffer.from(data);
  for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) ^ (mask[i & 3] as number);
  return out;
}

export interface ParsedFrame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Parses complete frames from `buf` (unmasking), ignoring a trailing partial frame. */
export function parseFrames(buf: Buffer): ParsedFrame[] {
  const frames: ParsedFrame[] = [];
  let off = 0;
  while (off + 2 <= buf.length) {
    const b0 = buf[off] as number;
    const b1 = buf[off + 1] as number;
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (p + 2 > buf.length) break;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (p + 8 > buf.length) break;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    const mask = masked ? buf.subarray(p, p + 4) : undefined;
    if (masked) p += 4;
    if (p + len > buf.length) break;
    const body = buf.subarray(p, p + len);
    const payload = mask ? applyMask(body, mask) : Buffer.from(body);
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, payload });
    off = p + len;
  }
  return frames;
}

/** Close code of the first close frame in `buf`, if any. */
export function closeCodeIn(buf: Buffer): number | undefined {
  const close = parseFrames(buf).find((f) => f.opcode === 8);
  return close && close.payload.length >= 2 ? close.payload.readUInt16BE(0) : undefined;
}

/** Bytes after the first blank line (the HTTP head) of what a raw peer received. */
export function afterHead(bytes: Buffer): Buffer {
  const end = bytes.indexOf('\r\n\r\n');
  return end < 0 ? Buffer.alloc(0) : bytes.subarray(end + 4);
}
