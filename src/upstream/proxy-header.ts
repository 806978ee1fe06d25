// The PROXY protocol header wsgate sends first on a backend connection (pools.NAME.proxyProtocol), so a backend
// that speaks it sees the client, not wsgate: source = the client's address and port, destination = the address
// and port the client connected to. Health checks send v2 LOCAL (v1 UNKNOWN): no client behind them.

import { isIPv4, isIPv6 } from 'node:net';

export type ProxyProtocolOut = 'v1' | 'v2';

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_LOCAL = Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
const V1_UNKNOWN = Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
/** v2 PROXY with an unspecified family: "a client, address unknown". */
const V2_UNSPEC = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x00, 0x00, 0x00])]);

/** The header for a proxied connection from `source` to `destination`. */
export function proxyHeaderFor(version: ProxyProtocolOut, source: Endpoint, destination: Endpoint): Buffer {
  // Both ends in one family: an IPv4 end beside an IPv6 one is written IPv4-mapped.
  const v4 = isIPv4(source.address) && isIPv4(destination.address);
  if (!v4 && !(isIP(source.address) && isIP(destination.address))) {
    return version === 'v1' ? V1_UNKNOWN : V2_UNSPEC;
  }
  const src = v4 ? source.address : asIPv6(source.address);
  const dst = v4 ? destination.address : asIPv6(destination.address);
  if (version === 'v1') {
    return Buffer.from(`PROXY ${v4 ? 'TCP4' : 'TCP6'} ${src} ${dst} ${source.port} ${destination.port}\r\n`, 'latin1');
  }
  const size = v4 ? 4 : 16;
  const header = Buffer.alloc(16 + 2 * size + 4);
  V2_SIGNATURE.copy(header, 0);
  header[12] = 0x21; // version 2, PROXY
  header[13] = v4 ? 0x11 : 0x21; // INET or INET6, STREAM
  header.writeUInt16BE(2 * size + 4, 14);
  writeAddress(header, 16, src, v4);
  writeAddress(header, 16 + size, dst, v4);
  header.writeUInt16BE(source.port, 16 + 2 * size);
  header.writeUInt16BE(destination.port, 16 + 2 * size + 2);
  return header;
}

/**
 * What goes first on a connection to `backend` for a client at `source` that connected to `destination`: its PROXY
 * header when the backend's pool sends one, else undefined.
 */
export function proxyHeaderToBackend(
  backend: { readonly proxyProtocol?: ProxyProtocolOut },
  source: Endpoint,
  destination: Endpoint,
): Buffer | undefined {
  return backend.proxyProtocol === undefined ? undefined : proxyHeaderFor(backend.proxyProtocol, source, destination);
}

/** The header for a connection of wsgate's own (a health check). */
export function localProxyHeader(version: ProxyProtocolOut): Buffer {
  return version === 'v1' ? V1_UNKNOWN : V2_LOCAL;
}

function isIP(address: string): boolean {
  return isIPv4(address) || isIPv6(address);
}

function asIPv6(address: string): string {
  return isIPv4(address) ? `::ffff:${address}` : address;
}

function writeAddress(buf: Buffer, at: number, address: string, v4: boolean): void {
  if (v4) {
    const parts = address.split('.');
    for (let i = 0; i < 4; i++) buf[at + i] = Number(parts[i]);
    return;
  }
  const groups = expandIPv6(address);
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(groups[i] as number, at + 2 * i);
}

/** The eight 16-bit groups of a textual IPv6 address (embedded IPv4 tail and `::` included). */
function expandIPv6(address: string): number[] {
  let text = address;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const v4 = text
      .slice(lastColon + 1)
      .split('.')
      .map(Number) as [number, number, number, number];
    tail.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    // Keep a `::` that ends right before the IPv4 part; drop a single separating colon.
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const [head, rest] = text.includes('::') ? (text.split('::') as [string, string]) : [text, undefined];
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const zeros = 8 - tail.length - left.length - right.length;
  return [...left, ...new Array<number>(rest === undefined ? 0 : zeros).fill(0), ...right, ...tail];
}
