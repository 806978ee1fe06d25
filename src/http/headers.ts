// Header lists as the proxy passes them on between undici and node:http, and a line added to a raw response head.

/** Buffer's own latin1 decoder, without toString's argument checks (this runs for every response header). */
type Latin1Slicer = { latin1Slice(start: number, end: number): string };

/**
 * undici's raw response headers (name, value, name, value…, as Buffers on HTTP/1.1) as latin1 strings: one char
 * per byte, so node:http writes them back byte-exact.
 */
export function latin1Headers(raw: readonly (Buffer | string)[]): string[] {
  const out = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const item = raw[i] as Buffer | string;
    out[i] = typeof item === 'string' ? item : (item as unknown as Latin1Slicer).latin1Slice(0, item.length);
  }
  return out;
}

/** `head`, a whole response head ending in CRLF CRLF, with `name: value` added as its last header line. */
export function withHeaderLine(head: Buffer, name: string, value: string): Buffer {
  const blankLine = head.length - 2;
  return Buffer.concat([
    head.subarray(0, blankLine),
    Buffer.from(`${name}: ${value}\r\n`, 'latin1'),
    head.subarray(blankLine),
  ]);
}
