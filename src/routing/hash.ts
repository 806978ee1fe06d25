// MurmurHash3 x86_32 over UTF-8 bytes: the one hash behind ring points and request keys, identical in every process.

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** Mixes one 32-bit little-endian block into the running hash. */
function mixBlock(h: number, block: number): number {
  let k = Math.imul(block, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  const mixed = h ^ k;
  return (Math.imul((mixed << 13) | (mixed >>> 19), 5) + 0xe6546b64) | 0;
}

/** Mixes the 1–3 leftover bytes and the total length, then avalanches (Murmur3 "fmix32"). */
function finish(h: number, tail: number, tailBytes: number, byteLength: number): number {
  let out = h;
  if (tailBytes > 0) {
    let k = Math.imul(tail, C1);
    k = (k << 15) | (k >>> 17);
    out ^= Math.imul(k, C2);
  }
  out ^= byteLength;
  out ^= out >>> 16;
  out = Math.imul(out, 0x85ebca6b);
  out ^= out >>> 13;
  out = Math.imul(out, 0xc2b2ae35);
  out ^= out >>> 16;
  return out >>> 0;
}

/** MurmurHash3 x86_32 of raw bytes; the reference the string variant is tested against. */
export function hashBytes(bytes: Uint8Array, seed = 0): number {
  let h = seed | 0;
  const blockEnd = bytes.length & ~3;
  for (let i = 0; i < blockEnd; i += 4) {
    h = mixBlock(h, bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
  }
  let tail = 0;
  const tailBytes = bytes.length & 3;
  for (let i = 0; i < tailBytes; i++) tail |= bytes[blockEnd + i]! << (8 * i);
  return finish(h, tail, tailBytes, bytes.length);
}

/**
 * MurmurHash3 x86_32 of the UTF-8 encoding of `text`, computed straight from the UTF-16 code units:
 * no Buffer, no scratch space, no allocation, whatever the key length. Lone surrogates hash as U+FFFD,
 * exactly as `Buffer.from(text, 'utf8')` encodes them, so `hashString(s) === hashBytes(Buffer.from(s))`.
 */
export function hashString(text: string, seed = 0): number {
  const length = text.length;
  let h = seed | 0;
  let pending = 0; // bytes not yet mixed, little-endian
  let pendingCount = 0; // 0..3
  let byteLength = 0;
  let i = 0;
  while (i < length) {
    // Fast path for ASCII on a block boundary: four code units are exactly one block.
    if (pendingCount === 0 && i + 3 < length) {
      const a = text.charCodeAt(i);
      const b = text.charCodeAt(i + 1);
      const c = text.charCodeAt(i + 2);
      const d = text.charCodeAt(i + 3);
      if ((a | b | c | d) < 0x80) {
        h = mixBlock(h, a | (b << 8) | (c << 16) | (d << 24));
        byteLength += 4;
        i += 4;
        continue;
      }
    }
    let unit = text.charCodeAt(i++);
    let encoded: number; // up to 4 UTF-8 bytes, first byte lowest
    let count: number;
    if (unit < 0x80) {
      encoded = unit;
      count = 1;
    } else if (unit < 0x800) {
      encoded = 0xc0 | (unit >>> 6) | ((0x80 | (unit & 0x3f)) << 8);
      count = 2;
    } else if (unit >= 0xd800 && unit <= 0xdfff) {
      const next = i < length ? text.charCodeAt(i) : 0;
      if (unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        const cp = 0x10000 + ((unit - 0xd800) << 10) + (next - 0xdc00);
        encoded =
          0xf0 |
          (cp >>> 18) |
          ((0x80 | ((cp >>> 12) & 0x3f)) << 8) |
          ((0x80 | ((cp >>> 6) & 0x3f)) << 16) |
          ((0x80 | (cp & 0x3f)) << 24);
        count = 4;
      } else {
        unit = 0xfffd; // lone surrogate: replacement character, as Buffer does
        encoded = 0xe0 | (unit >>> 12) | ((0x80 | ((unit >>> 6) & 0x3f)) << 8) | ((0x80 | (unit & 0x3f)) << 16);
        count = 3;
      }
    } else {
      encoded = 0xe0 | (unit >>> 12) | ((0x80 | ((unit >>> 6) & 0x3f)) << 8) | ((0x80 | (unit & 0x3f)) << 16);
      count = 3;
    }
    byteLength += count;
    for (let b = 0; b < count; b++) {
      pending |= (encoded & 0xff) << (8 * pendingCount);
      encoded >>>= 8;
      if (++pendingCount === 4) {
        h = mixBlock(h, pending);
        pending = 0;
        pendingCount = 0;
      }
    }
  }
  return finish(h, pending, pendingCount, byteLength);
}

/** Hash of virtual node `index` of a ring member: the UTF-8 string `${memberId}#${index}`. */
export function hashVirtualNode(memberId: string, index: number): number {
  return hashString(`${memberId}#${index}`);
}
