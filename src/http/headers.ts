// Header lists as the proxy passes them on between undici and node:http, and a line added to (or set in) a raw
// response head.

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

/**
 * `head` with `name: value` as the only line of that header in its final head: the final head's own lines of it
 * (any letter case) are dropped; interim (1xx) answers before it are left as they are.
 */
export function withHeaderSet(head: Buffer, name: string, value: string): Buffer {
  const text = head.toString('latin1');
  // The blank line that ends the last interim answer, if any (the final head's own ends at length - 4).
  const interimEnd = text.lastIndexOf('\r\n\r\n', text.length - 5);
  let from = text.indexOf('\r\n', interimEnd < 0 ? 0 : interimEnd + 4) + 2; // past the final status line
  const kept = [text.slice(0, from)];
  const lower = name.toLowerCase();
  for (let eol = text.indexOf('\r\n', from); eol > from; from = eol + 2, eol = text.indexOf('\r\n', from)) {
    const colon = text.indexOf(':', from);
    const named = colon > from && colon < eol && text.slice(from, colon).trim().toLowerCase() === lower;
    if (!named) kept.push(text.slice(from, eol + 2));
  }
  kept.push(`${name}: ${value}\r\n\r\n`);
  return Buffer.from(kept.join(''), 'latin1');
}
