// Hand-built WebSocket frame headers for hostile tests: any length encoding (minimal or not, up to 2^64-1),
// masked or not, with or without payload, so a test can declare what it likes and send what it likes.

import { randomBytes } from 'node:crypto';

export interface HeaderOptions {
  /** Force the length encoding: 0 = 7-bit, 2 = 16-bit, 8 = 64-bit (default: minimal). */
  lengthBytes?: 0 | 2 | 8;
  masked: boolean;
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

/** Bytes after the first blank line (the HTTP head) of what a raw peer received. */
export function afterHead(bytes: Buffer): Buffer {
  const end = bytes.indexOf('\r\n\r\n');
  return end < 0 ? Buffer.alloc(0) : bytes.subarray(end + 4);
}
