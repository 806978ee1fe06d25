import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChunkedBodyEnd } from '../../src/http/chunked-end.js';

/** Feeds `parts` in order; the stream offset just past the body, or -1. */
function endOf(parts: readonly Buffer[]): { end: number; failed: boolean } {
  const finder = new ChunkedBodyEnd();
  let offset = 0;
  for (const part of parts) {
    const at = finder.feed(part);
    if (at >= 0) return { end: offset + at, failed: false };
    if (finder.failed) return { end: -1, failed: true };
    offset += part.length;
  }
  return { end: -1, failed: finder.failed };
}

function splitEvery(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    parts.push(buf.subarray(from, p));
    from = p;
  }
  parts.push(buf.subarray(from));
  return parts;
}

describe('ChunkedBodyEnd', () => {
  it('finds the end after the last chunk and the trailers, not before, with what follows left out', () => {
    const body = Buffer.from('5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n');
    const next = Buffer.from('HTTP/1.1 200 OK\r\n\r\n');
    expect(endOf([Buffer.concat([body, next])])).toEqual({ end: body.length, failed: false });
    // One byte at a time: the end is still exact.
    expect(endOf([...Buffer.concat([body, next])].map((b) => Buffer.from([b])))).toEqual({
      end: body.length,
      failed: false,
    });
  });

  it('a body whose last chunk has not come yet has no end', () => {
    expect(endOf([Buffer.from('5\r\nhello\r\n')])).toEqual({ end: -1, failed: false });
    expect(endOf([Buffer.from('5\r\nhello\r\n0\r\n')])).toEqual({ end: -1, failed: false }); // trailers pending
  });

  it('chunk data that looks like framing is skipped by count', () => {
    const body = Buffer.from('7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n');
    expect(endOf([body])).toEqual({ end: body.length, failed: false });
  });

  it('broken framing fails instead of guessing', () => {
    expect(endOf([Buffer.from('zz\r\n')]).failed).toBe(true);
    expect(endOf([Buffer.from('3\r\nabcX\r\n')]).failed).toBe(true);
    expect(endOf([Buffer.from('ffffffffffffff\r\n')]).failed).toBe(true);
  });

  it('property: any chunked body, any trailing bytes, split anywhere: the end is exact', () => {
    const chunk = fc.record({
      data: fc.uint8Array({ maxLength: 300 }).filter((d) => d.length > 0),
      ext: fc.constantFrom('', ';a=b', ';x'),
      upper: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(chunk, { maxLength: 6 }),
        fc.array(fc.constantFrom('A: 1', 'Trailer-Two: x y'), { maxLength: 2 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.boolean(),
        (chunks, trailers, after, cuts, bareLf) => {
          const eol = bareLf ? '\n' : '\r\n';
          const parts: Buffer[] = [];
          for (const c of chunks) {
            const size = c.data.length.toString(16);
            parts.push(Buffer.from(`${c.upper ? size.toUpperCase() : size}${c.ext}${eol}`), Buffer.from(c.data));
            parts.push(Buffer.from(eol));
          }
          parts.push(Buffer.from(`0${eol}${trailers.map((t) => `${t}${eol}`).join('')}${eol}`));
          const body = Buffer.concat(parts);
          const stream = Buffer.concat([body, Buffer.from(after)]);
          expect(endOf(splitEvery(stream, cuts))).toEqual({ end: body.length, failed: false });
        },
      ),
      { numRuns: 300, seed: 6455 },
    );
  });
});
