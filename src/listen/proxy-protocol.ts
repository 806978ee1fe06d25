// A streaming reader for the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that an L4
// load balancer puts in front of a connection's first byte to say who the client is. It takes the connection's
// bytes in chunks split anywhere, decides as early as it can (a wrong first byte is refused at once), and buffers
// little: a v1 line is at most 107 bytes, and of a v2 header only the 16-byte preamble and the address block
// (at most 216 bytes) are kept; the TLVs after the addresses, whatever their declared length (up to 65,535 bytes),
// are skipped by count.

import { isIPv4, isIPv6 } from 'node:net';

export type ProxyProtocolVersion = 'v1' | 'v2' | 'any';

/** What the header said. `proxied`: the client's address; otherwise the socket's own address stands. */
export type ProxyHeader =
  | {
      readonly kind: 'proxied';
      readonly version: 1 | 2;
      readonly sourceAddress: string;
      readonly sourcePort: number;
      readonly destinationAddress: string;
      readonly destinationPort: number;
    }
  /** v2 LOCAL: the balancer's own connection (its health checks). */
  | { readonly kind: 'local'; readonly version: 2 }
  /** v1 UNKNOWN, or v2 with an unspecified or UNIX family: the sender does not know the client. */
  | { readonly kind: 'unknown'; readonly version: 1 | 2 };

export type ProxyReadStep =
  | { readonly status: 'more' }
  /** `rest` is what followed the header in the last chunk: the connection's own first bytes. */
  | { readonly status: 'done'; readonly header: ProxyHeader; readonly rest: Buffer }
  | { readonly status: 'invalid'; readonly reason: string };

/** The longest v1 line, CRLF included (proxy-protocol.txt §2.1). */
export const V1_MAX_BYTES = 107;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_PREAMBLE_BYTES = 16;
/** Address block sizes by v2 family (high nibble of byte 14): UNSPEC, INET, INET6, UNIX. */
const V2_ADDRESS_BYTES = [0, 12, 36, 216];
/** The most a reader buffers for a v2 header: the preamble and the largest address block. */
export const V2_MAX_BUFFERED_BYTES = V2_PREAMBLE_BYTES + 216;
const MORE: ProxyReadStep = { status: 'more' };
const EMPTY = Buffer.alloc(0);

/** Reads one PROXY header from the start of a connection; push() each chunk until it is not 'more'. */
export class ProxyHeaderReader {
  private readonly accept: ProxyProtocolVersion;
  /** The version being read, once the first bytes told. */
  private version: 1 | 2 | undefined;
  private buffered: Buffer = EMPTY;
  /** v2: bytes of TLVs still to skip after the address block. */
  private skip = 0;
  private header: ProxyHeader | undefined;

  constructor(accept: ProxyProtocolVersion) {
    this.accept = accept;
  }

  push(chunk: Buffer): ProxyReadStep {
    if (this.header !== undefined) return this.skipTlvs(chunk);
    const data = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    if (this.version === undefined) {
      const version = this.detect(data);
      if (typeof version === 'string') return { status: 'invalid', reason: version };
      if (version === undefined) return this.keep(data);
      this.version = version;
    }
    return this.version === 1 ? this.readV1(data) : this.readV2(data);
  }

  /** 1 or 2 once the prefix tells, undefined while it might still be either, or why it is neither. */
  private detect(data: Buffer): 1 | 2 | undefined | string {
    const v1 = this.accept !== 'v2' && startsLike(data, V1_PREFIX);
    const v2 = this.accept !== 'v1' && startsLike(data, V2_SIGNATURE);
    if (!v1 && !v2) {
      return this.accept === 'any'
        ? 'the connection did not start with a PROXY protocol header'
        : `the connection did not start with a PROXY protocol ${this.accept} header`;
    }
    if (v1 && data.length >= V1_PREFIX.length) return 1;
    if (v2 && data.length >= V2_SIGNATURE.length) return 2;
    return undefined;
  }

  private keep(data: Buffer): ProxyReadStep {
    // A copy: the caller's chunk may be a reused read buffer.
    this.buffered = Buffer.from(data);
    return MORE;
  }

  private readV1(data: Buffer): ProxyReadStep {
    const end = data.indexOf('\r\n', 0, 'latin1');
    if (end < 0) {
      if (data.length >= V1_MAX_BYTES)
        return { status: 'invalid', reason: `v1 header longer than ${V1_MAX_BYTES} bytes` };
      // A bare LF, or any byte no v1 line has, ends it early.
      for (const byte of data) {
        if (byte !== 0x0d && (byte < 0x20 || byte > 0x7e)) return { status: 'invalid', reason: 'v1 header malformed' };
      }
      return this.keep(data);
    }
    if (end + 2 > V1_MAX_BYTES) return { status: 'invalid', reason: `v1 header longer than ${V1_MAX_BYTES} bytes` };
    const header = parseV1Line(data.toString('latin1', V1_PREFIX.length, end));
    if (typeof header === 'string') return { status: 'invalid', reason: header };
    this.buffered = EMPTY;
    return { status: 'done', header, rest: data.subarray(end + 2) };
  }

  private readV2(data: Buffer): ProxyReadStep {
    if (data.length < V2_PREAMBLE_BYTES) return this.keep(data);
    const versionCommand = data[12] as number;
    if (versionCommand >> 4 !== 2)
      return { status: 'invalid', reason: `v2 header with version ${versionCommand >> 4}` };
    const command = versionCommand & 0x0f;
    if (command > 1) return { status: 'invalid', reason: `v2 header with unknown command ${command}` };
    const familyTransport = data[13] as number;
    const family = familyTransport >> 4;
    const transport = familyTransport & 0x0f;
    const length = data.readUInt16BE(14);
    if (family > 3 || transport > 2) return { status: 'invalid', reason: 'v2 header with unknown address family' };
    const addressBytes = command === 1 ? (V2_ADDRESS_BYTES[family] as number) : 0;
    if (length < addressBytes) return { status: 'invalid', reason: 'v2 header shorter than its address block' };
    const needed = V2_PREAMBLE_BYTES + addressBytes;
    if (data.length < needed) return this.keep(data);
    let header: ProxyHeader;
    if (command === 0) header = { kind: 'local', version: 2 };
    else if (family === 0 || family === 3 || transport === 0) header = { kind: 'unknown', version: 2 };
    else if (transport !== 1) return { status: 'invalid', reason: 'v2 header for a datagram transport' };
    else header = v2Addresses(data, family);
    this.header = header;
    this.buffered = EMPTY;
    this.skip = length - addressBytes;
    return this.skipTlvs(data.subarray(needed));
  }

  private skipTlvs(chunk: Buffer): ProxyReadStep {
    const header = this.header as ProxyHeader;
    if (this.skip >= chunk.length) {
      this.skip -= chunk.length;
      return this.skip === 0 ? { status: 'done', header, rest: EMPTY } : MORE;
    }
    const rest = chunk.subarray(this.skip);
    this.skip = 0;
    return { status: 'done', header, rest };
  }
}

/** Whether `data` agrees with `prefix` as far as both go. */
function startsLike(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  for (let i = 0; i < n; i++) if (data[i] !== prefix[i]) return false;
  return true;
}

/** `TCP4 1.2.3.4 5.6.7.8 1234 80`, `TCP6 …`, or `UNKNOWN[ anything]` (the line after "PROXY "). */
function parseV1Line(line: string): ProxyHeader | string {
  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) return { kind: 'unknown', version: 1 };
  const parts = line.split(' ');
  if (parts.length !== 5) return 'v1 header malformed';
  const [protocol, source, destination, sourcePort, destinationPort] = parts as [
    string,
    string,
    string,
    string,
    string,
  ];
  const valid = protocol === 'TCP4' ? isIPv4 : protocol === 'TCP6' ? isIPv6 : undefined;
  if (valid === undefined) return `v1 header with unknown protocol "${protocol.slice(0, 16)}"`;
  if (!valid(source) || !valid(destination)) return `v1 header with a bad ${protocol} address`;
  const sport = portOf(sourcePort);
  const dport = portOf(destinationPort);
  if (sport === undefined || dport === undefined) return 'v1 header with a bad port';
  return {
    kind: 'proxied',
    version: 1,
    sourceAddress: source,
    sourcePort: sport,
    destinationAddress: destination,
    destinationPort: dport,
  };
}

function portOf(text: string): number | undefined {
  if (!/^(?:0|[1-9]\d{0,4})$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

/** The INET or INET6 address block after the preamble. */
function v2Addresses(data: Buffer, family: number): ProxyHeader {
  const at = V2_PREAMBLE_BYTES;
  const size = family === 1 ? 4 : 16;
  const format = family === 1 ? formatIPv4 : formatIPv6;
  return {
    kind: 'proxied',
    version: 2,
    sourceAddress: format(data, at),
    destinationAddress: format(data, at + size),
    sourcePort: data.readUInt16BE(at + 2 * size),
    destinationPort: data.readUInt16BE(at + 2 * size + 2),
  };
}

function formatIPv4(data: Buffer, at: number): string {
  return `${data[at]}.${data[at + 1]}.${data[at + 2]}.${data[at + 3]}`;
}

/**
 * RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups as `::`, and an
 * IPv4-mapped address as `::ffff:a.b.c.d` (which the rest of wsgate reads as the IPv4 client it is).
 */
export function formatIPv6(data: Buffer, at: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(data.readUInt16BE(at + 2 * i));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${formatIPv4(data, at + 12)}`;
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (g: number[]) => g.map((n) => n.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}
