// Streaming RFC 6455 frame-header scanner: one per direction per tunnel, run on every chunk before
// the chunk is forwarded unchanged. Reads headers, skips payload bytes by count, never copies data.
// One file past 400 lines on purpose: it is one state machine (states, header checks, rewind on an observer stop),
// and its parts only make sense together.

import { isUtf8 } from 'node:buffer';
import { type Ending, Endings } from '../errors.js';
import { isValidCloseCode } from './close-frame.js';

/**
 * What a frame did wrong (RFC 6455 §5). `scan()` returns one of these, 0 when all is well.
 * FRAME_TOO_BIG is ours: a 64-bit length of 2^53 or more, which a JS number cannot count exactly.
 */
export const Violation = {
  NONE: 0,
  UNMASKED_CLIENT_FRAME: 1,
  MASKED_SERVER_FRAME: 2,
  RESERVED_OPCODE: 3,
  CONTROL_TOO_LONG: 4,
  CONTROL_FRAGMENTED: 5,
  UNEXPECTED_CONTINUATION: 6,
  DATA_INSIDE_MESSAGE: 7,
  LENGTH_TOP_BIT: 8,
  RSV_WITHOUT_EXTENSION: 9,
  NON_MINIMAL_LENGTH: 10,
  INVALID_CLOSE_PAYLOAD: 11,
  FRAME_TOO_BIG: 12,
} as const;

/** The catalogue's ending for each violation code (index = code; none for NONE). */
export const VIOLATION_ENDINGS: readonly (Ending | undefined)[] = Object.freeze([
  undefined,
  Endings.UNMASKED_CLIENT_FRAME,
  Endings.MASKED_SERVER_FRAME,
  Endings.RESERVED_OPCODE,
  Endings.CONTROL_TOO_LONG,
  Endings.CONTROL_FRAGMENTED,
  Endings.UNEXPECTED_CONTINUATION,
  Endings.DATA_INSIDE_MESSAGE,
  Endings.LENGTH_TOP_BIT,
  Endings.RSV_WITHOUT_EXTENSION,
  Endings.NON_MINIMAL_LENGTH,
  Endings.INVALID_CLOSE_PAYLOAD,
  Endings.FRAME_TOO_BIG,
]);

/** Name of each violation code (index = code): its ending's metric label, 'none' for NONE. */
export const VIOLATION_KIND: readonly string[] = Object.freeze(VIOLATION_ENDINGS.map((e) => e?.label ?? 'none'));

/** First code the observer may return to stop a scan; lower codes are violations. */
export const OBSERVER_STOP_MIN = 100;

/** Named states of the scanner, in the spirit of ws's lib/receiver.js. */
export const ScannerState = {
  /** At a frame boundary, waiting for the first header byte. */
  HEADER: 0,
  /** Part of a header is in `carry`; it straddles chunks. */
  HEADER_PARTIAL: 1,
  /** Skipping `payloadLeft` bytes of a data frame (or, in lenient mode, of an over-long control frame). */
  PAYLOAD: 2,
  /** Copying a control payload (≤ 125 bytes) so its close code / ping data can be read. */
  CONTROL_PAYLOAD: 3,
  /** A violation stopped the scan for good; every later scan() returns the same code. */
  FAILED: 4,
} as const;

const S_HEADER = ScannerState.HEADER;
const S_HEADER_PARTIAL = ScannerState.HEADER_PARTIAL;
const S_PAYLOAD = ScannerState.PAYLOAD;
const S_CONTROL_PAYLOAD = ScannerState.CONTROL_PAYLOAD;
const S_FAILED = ScannerState.FAILED;

const MAX_HEADER_BYTES = 14;
const MAX_CONTROL_PAYLOAD_BYTES = 125;
const TWO_POW_32 = 0x1_0000_0000;
const EMPTY = Buffer.alloc(0);

export interface FrameObserver {
  /**
   * Once per complete frame header, before any of its payload is skipped; the scanner's frame and
   * message fields describe the frame. Non-zero stops the scan (use values ≥ 100): scan() returns
   * it, `stopOffset` is where this frame's header starts, and the scanner is rewound to just before
   * the header, so `scan(chunk, resumeOffset)` presents the same frame again.
   */
  onFrameHeader(scanner: FrameScanner): number;
  /**
   * When a control frame (close/ping/pong) has been fully seen. `scanner.controlPayload` is an
   * unmasked copy, valid only during the call; it is undefined for an over-long control frame that
   * lenient mode let through. Non-zero stops the scan with `stopOffset` just past this frame.
   */
  onControlFrame(scanner: FrameScanner): number;
  /** When the final frame of a data message has been consumed. Non-zero stops just past the frame. */
  onMessageEnd(scanner: FrameScanner): number;
  /**
   * Optional: called for every violation, in strict and lenient mode, before it takes effect.
   * Strict mode (and the two fatal length violations) stop regardless of the return value; in
   * lenient mode a non-zero return stops like onFrameHeader does (rewound, resumable).
   */
  onViolation?(scanner: FrameScanner, code: number): number;
}

export interface ScannerOptions {
  /** client→backend: frames must be masked; backend→client: they must not be (§5.1). */
  fromClient: boolean;
  /** permessage-deflate negotiated: RSV1 allowed on the first frame of a data message (RFC 7692). */
  rsv1Allowed: boolean;
  /**
   * Strict: the first violation stops the scan for good. Lenient: violations are counted
   * (`violations`, `lastViolation`, onViolation) and scanning goes on; only a length the scanner
   * cannot count (LENGTH_TOP_BIT, FRAME_TOO_BIG) stops it. NON_MINIMAL_LENGTH and
   * INVALID_CLOSE_PAYLOAD are checked in strict mode only.
   */
  strict: boolean;
  observer: FrameObserver;
}

/** Header length from the second header byte: 2, +2 or +8 for extended lengths, +4 when masked. */
function headerLengthOf(b1: number): number {
  const len7 = b1 & 0x7f;
  return (len7 < 126 ? 2 : len7 === 126 ? 4 : 10) + ((b1 & 0x80) >>> 5);
}

export class FrameScanner {
  // Options, copied into plain fields.
  readonly fromClient: boolean;
  readonly rsv1Allowed: boolean;
  readonly strict: boolean;
  readonly observer: FrameObserver;

  /** One of ScannerState. */
  state: number = S_HEADER;

  /** After a non-zero scan(): chunk offset of the offending frame's header; below `start` (negative for start 0) when it began in an earlier chunk. */
  stopOffset = 0;
  /** After a non-zero scan(): where to call scan() on the same chunk to continue; -1 once FAILED. */
  resumeOffset = 0;

  // The current frame (valid in observer callbacks and after scan() between frames).
  fin = false;
  /** RSV bits as a 3-bit number: RSV1 = 4, RSV2 = 2, RSV3 = 1. */
  rsv = 0;
  opcode = 0;
  masked = false;
  /** Declared payload length; exact below 2^53 (longer frames are FRAME_TOO_BIG and stop the scan). */
  payloadLength = 0;
  /** Masking key as a big-endian uint32 (0 when unmasked); only used to unmask control payloads. */
  maskKey = 0;
  headerLength = 0;

  // The data message in progress.
  /** Opcode of the data message in progress (1 text, 2 binary), 0 if none. */
  messageOpcode = 0;
  /** Payload bytes declared so far in this message, including the current frame. */
  messageBytes = 0;
  messageFrames = 0;
  /** A data message has started and its final frame has not been seen yet. */
  inMessage = false;

  /** Unmasked control payload, only during onControlFrame. */
  controlPayload: Buffer | undefined = undefined;

  // Counters the tunnel reads.
  frames = 0;
  controlFrames = 0;
  messages = 0;
  violations = 0;
  lastViolation = 0;
  /** Bytes scanned so far (stream position of the next byte). */
  bytes = 0;

  // Private working state: plain numbers plus two lazily allocated small buffers.
  private payloadLeft = 0;
  private frameAbs = 0; // stream position of the current frame's first header byte
  private failCode = 0;
  private carry: Buffer | undefined = undefined; // ≤ 14 header bytes that straddle chunks
  private carryLen = 0;
  private carryNeed = 0;
  private controlBuf: Buffer | undefined = undefined; // ≤ 125 control payload bytes
  private controlLen = 0;
  // Per scan() call, to turn stream positions into chunk offsets and to rewind.
  private chunkStart = 0;
  private chunkAbs = 0;
  private carryAtEntry = 0;

  constructor(opts: ScannerOptions) {
    this.fromClient = opts.fromClient;
    this.rsv1Allowed = opts.rsv1Allowed;
    this.strict = opts.strict;
    this.observer = opts.observer;
  }

  /** True when no header bytes are pending and no payload remains. */
  get atFrameBoundary(): boolean {
    return this.state === S_HEADER;
  }

  /**
   * Stream position of the current frame's first header byte. A frame presented again after an observer stop has
   * the same position, so an observer can tell a second look at a frame from a new frame.
   */
  get frameStart(): number {
    return this.frameAbs;
  }

  /** True once a violation stopped the scanner for good. */
  get failed(): boolean {
    return this.state === S_FAILED;
  }

  /** Payload bytes left in the current frame: 0 at a boundary, -1 while a header is partial (or FAILED). */
  bytesToFrameEnd(): number {
    const state = this.state;
    if (state === S_PAYLOAD || state === S_CONTROL_PAYLOAD) return this.payloadLeft;
    return state === S_HEADER ? 0 : -1;
  }

  /**
   * Scans `chunk[start..end)`, the next bytes of the stream. Returns 0 when the whole range was
   * scanned, otherwise a Violation code or an observer's code with `stopOffset`/`resumeOffset` set.
   * Never throws on any byte sequence and keeps no reference to `chunk`.
   */
  scan(chunk: Buffer, start = 0, end: number = chunk.length): number {
    if (start < 0) start = 0;
    if (end > chunk.length) end = chunk.length;
    if (end < start) end = start;
    this.chunkStart = start;
    this.chunkAbs = this.bytes;
    this.carryAtEntry = this.carryLen;
    if (this.state === S_FAILED) {
      this.stopOffset = start;
      this.resumeOffset = -1;
      return this.failCode;
    }
    let i = start;
    while (i < end) {
      const state = this.state;
      if (state === S_PAYLOAD) {
        const avail = end - i;
        if (this.payloadLeft > avail) {
          this.payloadLeft -= avail;
          i = end;
          break;
        }
        i += this.payloadLeft;
        this.payloadLeft = 0;
        const rc = this.frameEnd(i);
        if (rc !== 0) return rc;
      } else if (state === S_HEADER) {
        const avail = end - i;
        const hlen = avail >= 2 ? headerLengthOf(chunk[i + 1]!) : MAX_HEADER_BYTES + 1;
        this.frameAbs = this.chunkAbs + (i - start);
        if (avail >= hlen) {
          i += hlen;
          const rc = this.header(chunk, i - hlen, i);
          if (rc !== 0) return rc;
        } else {
          // The header straddles chunks: keep its first bytes (never more than 14).
          if (this.carry === undefined) this.carry = Buffer.allocUnsafe(MAX_HEADER_BYTES);
          chunk.copy(this.carry, 0, i, end);
          this.carryLen = avail;
          this.carryNeed = avail >= 2 ? hlen : 2;
          this.state = S_HEADER_PARTIAL;
          i = end;
        }
      } else if (state === S_CONTROL_PAYLOAD) {
        const take = Math.min(this.payloadLeft, end - i);
        chunk.copy(this.controlBuf!, this.controlLen, i, i + take);
        this.controlLen += take;
        this.payloadLeft -= take;
        i += take;
        if (this.payloadLeft === 0) {
          this.unmaskControl();
          this.controlPayload = this.controlBuf!.subarray(0, this.controlLen);
          const rc = this.frameEnd(i);
          if (rc !== 0) return rc;
        }
      } else if (state === S_HEADER_PARTIAL) {
        const carry = this.carry!;
        while (this.carryLen < this.carryNeed && i < end) {
          carry[this.carryLen++] = chunk[i++]!;
          if (this.carryLen === 2) this.carryNeed = headerLengthOf(carry[1]!);
        }
        if (this.carryLen < this.carryNeed) break;
        this.carryLen = 0;
        const rc = this.header(carry, 0, i);
        if (rc !== 0) return rc;
      } else {
        break; // FAILED cannot be reached inside the loop; kept so no state can spin.
      }
    }
    this.bytes = this.chunkAbs + (end - start);
    return 0;
  }

  /**
   * Decodes and checks a complete header at buf[off..], then enters the payload state.
   * `after` is the chunk offset just past the header.
   */
  private header(buf: Buffer, off: number, after: number): number {
    const b0 = buf[off]!;
    const b1 = buf[off + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const rsv = (b0 >>> 4) & 7;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    let length = b1 & 0x7f;
    let p = off + 2;
    let lengthViolation = 0;
    if (length === 126) {
      length = (buf[p]! << 8) | buf[p + 1]!;
      p += 2;
      if (length < 126) lengthViolation = Violation.NON_MINIMAL_LENGTH;
    } else if (length === 127) {
      const hi = buf.readUInt32BE(p);
      const lo = buf.readUInt32BE(p + 4);
      p += 8;
      length = hi * TWO_POW_32 + lo;
      if (hi >= 0x8000_0000) lengthViolation = Violation.LENGTH_TOP_BIT;
      else if (hi >= 0x20_0000) lengthViolation = Violation.FRAME_TOO_BIG;
      else if (hi === 0 && lo < 0x1_0000) lengthViolation = Violation.NON_MINIMAL_LENGTH;
    }
    this.fin = fin;
    this.rsv = rsv;
    this.opcode = opcode;
    this.masked = masked;
    this.payloadLength = length;
    this.maskKey = masked ? buf.readUInt32BE(p) : 0;
    this.headerLength = p + (masked ? 4 : 0) - off;

    // Saved so an observer stop can rewind to just before this header.
    const prevInMessage = this.inMessage;
    const prevOpcode = this.messageOpcode;
    const prevBytes = this.messageBytes;
    const prevFrames = this.messageFrames;
    const prevViolations = this.violations;
    const prevLastViolation = this.lastViolation;

    const isControl = opcode >= 8;
    let rc = 0;
    // §5.2: RSV bits need an extension; permessage-deflate only owns RSV1, on a message's first frame.
    if (rsv !== 0 && (rsv !== 4 || !this.rsv1Allowed || isControl || opcode === 0)) {
      rc = this.violate(Violation.RSV_WITHOUT_EXTENSION);
    }
    if (rc === 0 && ((opcode >= 3 && opcode <= 7) || opcode >= 0xb)) rc = this.violate(Violation.RESERVED_OPCODE);
    if (isControl) {
      // §5.5: control frames are never fragmented and carry at most 125 bytes.
      if (rc === 0 && !fin) rc = this.violate(Violation.CONTROL_FRAGMENTED);
      if (rc === 0 && length > MAX_CONTROL_PAYLOAD_BYTES) rc = this.violate(Violation.CONTROL_TOO_LONG);
    } else if (opcode === 0) {
      // §5.4: a continuation needs a message in progress. Lenient mode counts an orphan as a message.
      if (!this.inMessage) {
        if (rc === 0) rc = this.violate(Violation.UNEXPECTED_CONTINUATION);
        this.inMessage = true;
        this.messageOpcode = 0;
        this.messageBytes = 0;
        this.messageFrames = 0;
      }
      this.messageBytes += length;
      this.messageFrames++;
    } else {
      // §5.4: a new text/binary frame while a message is unfinished breaks the message.
      if (rc === 0 && this.inMessage) rc = this.violate(Violation.DATA_INSIDE_MESSAGE);
      this.inMessage = true;
      this.messageOpcode = opcode;
      this.messageBytes = length;
      this.messageFrames = 1;
    }
    if (rc === 0 && masked !== this.fromClient) {
      rc = this.violate(masked ? Violation.MASKED_SERVER_FRAME : Violation.UNMASKED_CLIENT_FRAME);
    }
    if (rc === 0 && lengthViolation !== 0 && (lengthViolation !== Violation.NON_MINIMAL_LENGTH || this.strict)) {
      rc = this.violate(lengthViolation);
    }
    if (rc === 0) rc = this.observer.onFrameHeader(this);

    if (rc !== 0) {
      if (this.state === S_FAILED) return rc;
      // Observer stop: rewind to just before this header so scan(chunk, resumeOffset) sees it again.
      this.inMessage = prevInMessage;
      this.messageOpcode = prevOpcode;
      this.messageBytes = prevBytes;
      this.messageFrames = prevFrames;
      this.violations = prevViolations;
      this.lastViolation = prevLastViolation;
      this.stopOffset = this.chunkStart + (this.frameAbs - this.chunkAbs);
      if (buf === this.carry) {
        // The header's first bytes came from earlier chunks: keep them, re-read this chunk from its start.
        this.state = S_HEADER_PARTIAL;
        this.carryLen = this.carryAtEntry;
        this.carryNeed = this.carryAtEntry >= 2 ? headerLengthOf(this.carry[1]!) : 2;
        this.resumeOffset = this.chunkStart;
        this.bytes = this.chunkAbs;
      } else {
        this.state = S_HEADER;
        this.resumeOffset = this.stopOffset;
        this.bytes = this.frameAbs;
      }
      return rc;
    }

    this.frames++;
    if (length === 0) {
      this.state = S_HEADER;
      if (isControl) this.controlPayload = EMPTY;
      return this.frameEnd(after);
    }
    this.payloadLeft = length;
    if (isControl && length <= MAX_CONTROL_PAYLOAD_BYTES) {
      if (this.controlBuf === undefined) this.controlBuf = Buffer.allocUnsafe(MAX_CONTROL_PAYLOAD_BYTES);
      this.controlLen = 0;
      this.state = S_CONTROL_PAYLOAD;
    } else {
      this.state = S_PAYLOAD;
    }
    return 0;
  }

  /** The current frame's last payload byte is consumed; `at` is the chunk offset just past the frame. */
  private frameEnd(at: number): number {
    this.state = S_HEADER;
    let rc = 0;
    if (this.opcode >= 8) {
      this.controlFrames++;
      const payload = this.controlPayload;
      if (this.strict && this.opcode === 8 && payload !== undefined && !isValidClosePayload(payload)) {
        this.controlPayload = undefined;
        return this.violate(Violation.INVALID_CLOSE_PAYLOAD); // strict: always FAILED
      }
      rc = this.observer.onControlFrame(this);
      this.controlPayload = undefined;
    } else if (this.fin) {
      this.messages++;
      rc = this.observer.onMessageEnd(this);
      this.inMessage = false;
      this.messageOpcode = 0;
    }
    if (rc !== 0) {
      this.stopOffset = at;
      this.resumeOffset = at;
      this.bytes = this.chunkAbs + (at - this.chunkStart);
    }
    return rc;
  }

  /**
   * Records a violation of the current frame. Returns non-zero to stop: always in strict mode and
   * for lengths that cannot be counted (then the scanner is FAILED); in lenient mode only if the
   * observer's onViolation asks to.
   */
  private violate(code: number): number {
    this.violations++;
    this.lastViolation = code;
    const hook = this.observer.onViolation;
    const asked = hook === undefined ? 0 : hook.call(this.observer, this, code);
    if (this.strict || code === Violation.LENGTH_TOP_BIT || code === Violation.FRAME_TOO_BIG) {
      this.state = S_FAILED;
      this.failCode = code;
      this.stopOffset = this.chunkStart + (this.frameAbs - this.chunkAbs);
      this.resumeOffset = -1;
      return code;
    }
    return asked;
  }

  private unmaskControl(): void {
    if (!this.masked) return;
    const buf = this.controlBuf!;
    const key = this.maskKey;
    for (let j = 0; j < this.controlLen; j++) buf[j] = buf[j]! ^ ((key >>> (24 - 8 * (j & 3))) & 0xff);
  }
}

/** §5.5.1/§7.4: no 1-byte payloads, a code that may be sent, a UTF-8 reason. */
function isValidClosePayload(payload: Buffer): boolean {
  if (payload.length === 0) return true;
  if (payload.length === 1) return false;
  return isValidCloseCode((payload[0]! << 8) | payload[1]!) && isUtf8(payload.subarray(2));
}
