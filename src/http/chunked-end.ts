// Where a chunked body ends (RFC 9112 §7.1), found by scanning the bytes as they stream past, without decoding or
// keeping them: the proxy relays a backend's refusal body as it came and must stop exactly after its last chunk
// and trailer section, not wait for a connection a keep-alive backend never closes.
//
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   last-chunk   = 1*"0" [ chunk-ext ] CRLF
// Lines may end in a bare LF (accepted, as llhttp's lenient parsers do); what goes before it on a size line after
// the hex digits (extensions) is skipped.

const SIZE = 0; // reading a chunk-size line
const DATA = 1; // skipping chunk-data
const DATA_END = 2; // the CRLF after chunk-data
const TRAILER = 3; // reading trailer lines until an empty one
const DONE = 4;
const FAILED = 5;

/** Chunk sizes past this are not a refusal page: the framing is treated as broken. */
const MAX_CHUNK_BYTES = 2 ** 40;

export class ChunkedBodyEnd {
  private state = SIZE;
  private size = 0;
  private digits = 0;
  /** In SIZE: the hex digits are over (an extension or whitespace follows). */
  private sizeOver = false;
  private left = 0;
  /** Bytes on the current trailer line, not counting CR. */
  private lineBytes = 0;

  /** The last chunk and the trailer section have been seen. */
  get ended(): boolean {
    return this.state === DONE;
  }

  /** The framing was broken; the body's end cannot be known. */
  get failed(): boolean {
    return this.state === FAILED;
  }

  /**
   * Scans `buf[start..]`, the next bytes of the body. Returns the offset just past the body's last byte if it ends
   * in `buf`, else -1 (all of `buf` belongs to the body, or the framing failed: see `failed`).
   */
  feed(buf: Uint8Array, start = 0): number {
    let i = start;
    while (i < buf.length) {
      const state = this.state;
      if (state === DATA) {
        const take = Math.min(this.left, buf.length - i);
        this.left -= take;
        i += take;
        if (this.left === 0) this.state = DATA_END;
        continue;
      }
      const b = buf[i++] as number;
      if (state === SIZE) {
        if (b === 0x0a) this.endSizeLine();
        else if (!this.sizeOver) this.sizeDigit(b);
      } else if (state === DATA_END) {
        if (b === 0x0a) this.startSizeLine();
        else if (b !== 0x0d) this.state = FAILED;
      } else if (state === TRAILER) {
        if (b === 0x0a) {
          if (this.lineBytes === 0) {
            this.state = DONE;
            return i;
          }
          this.lineBytes = 0;
        } else if (b !== 0x0d) this.lineBytes++;
      } else return -1; // DONE or FAILED: nothing more belongs to the body
    }
    return -1;
  }

  private sizeDigit(b: number): void {
    const v =
      b >= 0x30 && b <= 0x39 ? b - 0x30 : b >= 0x61 && b <= 0x66 ? b - 0x57 : b >= 0x41 && b <= 0x46 ? b - 0x37 : -1;
    if (v < 0) {
      this.sizeOver = true;
      return;
    }
    this.size = this.size * 16 + v;
    this.digits++;
    if (this.size > MAX_CHUNK_BYTES) this.state = FAILED;
  }

  private endSizeLine(): void {
    if (this.digits === 0) this.state = FAILED;
    else if (this.size === 0) {
      this.state = TRAILER;
      this.lineBytes = 0;
    } else {
      this.left = this.size;
      this.state = DATA;
    }
  }

  private startSizeLine(): void {
    this.state = SIZE;
    this.size = 0;
    this.digits = 0;
    this.sizeOver = false;
  }
}
