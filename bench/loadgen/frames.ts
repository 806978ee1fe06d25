// WebSocket bytes for the load generator, built once and reused: masked client frames, the upgrade request,
// and a tiny streaming parser that counts the server's (unmasked) frames without copying them.

/** The masking key every generated client frame uses; RFC 6455 §5.3 only asks that it be present. */
const MASK_KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

export const OPCODE_TEXT = 0x1;
export const OPCODE_BINARY = 0x2;
export const OPCODE_CLOSE = 0x8;

/** One masked client frame (FIN set) with `payloadBytes` of payload, already masked. */
export function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + 4 + n);
  frame[0] = 0x80 | opcode;
  if (header === 2) frame[1] = 0x80 | n;
  else if (header === 4) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    frame.writeUInt32BE(n >>> 0, 6);
  }
  MASK_KEY.copy(frame, header);
  const start = header + 4;
  for (let i = 0; i < n; i++) frame[start + i] = (payload[i] ?? 0) ^ (MASK_KEY[i & 3] ?? 0);
  return frame;
}

/** `count` copies of one binary message frame back to back: a window's worth, written with one `write`. */
export function messageFrames(payloadBytes: number, count: number): { frames: Buffer; frameBytes: number } {
  const payload = Buffer.alloc(payloadBytes, 0x61);
  const one = maskedFrame(OPCODE_BINARY, payload);
  const frames = Buffer.allocUnsafe(one.length * count);
  for (let i = 0; i < count; i++) one.copy(frames, i * one.length);
  return { frames, frameBytes: one.length };
}

/** A masked close frame with status 1000 (normal closure). */
export const CLOSE_FRAME = maskedFrame(OPCODE_CLOSE, Buffer.from([0x03, 0xe8]));

/** The HTTP/1.1 upgrade request (RFC 6455 §4.1). The key is fixed: the generator does not check the accept. */
export function upgradeRequest(host: string, path: string): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    'latin1',
  );
}

enum ParseState {
  Header,
  Payload,
}

/**
 * Counts complete server frames in a byte stream split anywhere. Keeps at most 14 header bytes between
 * chunks and allocates nothing per frame. `onFrame(opcode, fin)` is called once per complete frame.
 */
export class ServerFrameCounter {
  private state = ParseState.Header;
  private readonly header = new Uint8Array(14);
  private headerHave = 0;
  private payloadLeft = 0;
  private opcode = 0;
  private fin = false;

  /** Returns the number of complete data frames with FIN (whole messages) in `chunk`; control frames go to onControl. */
  feed(chunk: Buffer, onControl?: (opcode: number) => void): number {
    let messages = 0;
    let i = 0;
    const len = chunk.length;
    while (i < len) {
      if (this.state === ParseState.Payload) {
        const take = Math.min(this.payloadLeft, len - i);
        this.payloadLeft -= take;
        i += take;
        if (this.payloadLeft === 0) {
          if (this.frameEnded(onControl)) messages++;
        }
        continue;
      }
      this.header[this.headerHave++] = chunk[i++] ?? 0;
      if (this.headerHave < 2) continue;
      const b1 = this.header[1] ?? 0;
      const len7 = b1 & 0x7f;
      const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
      if (this.headerHave < need) continue;
      const b0 = this.header[0] ?? 0;
      this.fin = (b0 & 0x80) !== 0;
      this.opcode = b0 & 0x0f;
      const h = this.header;
      this.payloadLeft =
        len7 === 126
          ? ((h[2] ?? 0) << 8) | (h[3] ?? 0)
          : len7 === 127
            ? ((h[6] ?? 0) * 2 ** 24 + ((h[7] ?? 0) << 16) + ((h[8] ?? 0) << 8) + (h[9] ?? 0)) >>> 0
            : len7;
      this.headerHave = 0;
      if (this.payloadLeft === 0) {
        if (this.frameEnded(onControl)) messages++;
      } else this.state = ParseState.Payload;
    }
    return messages;
  }

  private frameEnded(onControl?: (opcode: number) => void): boolean {
    this.state = ParseState.Header;
    if (this.opcode >= 0x8) {
      onControl?.(this.opcode);
      return false;
    }
    return this.fin;
  }
}
