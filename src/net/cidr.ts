// Address lists in CIDR notation (IPv4 and IPv6), checked with node:net's BlockList. An IPv4-mapped IPv6 address
// (::ffff:10.1.2.3, what a dual-stack socket reports for an IPv4 peer) matches the IPv4 entries.

import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** One entry parsed: its address family and prefix; `error` says what is wrong with a bad one. */
export type ParsedCidr =
  | { readonly ok: true; readonly address: string; readonly prefix: number; readonly family: 'ipv4' | 'ipv6' }
  | { readonly ok: false; readonly error: string };

/** Parses `10.0.0.0/8`, `2001:db8::/32`, or a single address (a /32 or /128). */
export function parseCidr(text: string): ParsedCidr {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
  if (family === undefined) return { ok: false, error: `"${text}" is not an IPv4 or IPv6 address or CIDR block` };
  const max = family === 'ipv4' ? 32 : 128;
  if (slash < 0) return { ok: true, address, prefix: max, family };
  const prefixText = text.slice(slash + 1);
  if (!/^(?:0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > max) {
    return { ok: false, error: `"${text}": the prefix length after / must be 0 to ${max}` };
  }
  return { ok: true, address, prefix: Number(prefixText), family };
}

/** An immutable set of CIDR blocks; build it from entries `parseCidr` accepted (config validation did). */
export class CidrList {
  readonly entries: readonly string[];
  private readonly list = new BlockList();

  constructor(entries: readonly string[]) {
    this.entries = entries;
    for (const entry of entries) {
      const parsed = parseCidr(entry);
      if (!parsed.ok) throw new Error(parsed.error);
      this.list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
  }

  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** Whether `address` (a textual IPv4 or IPv6 address) is in one of the blocks; false for anything else. */
  has(address: string): boolean {
    if (isIPv4(address)) return this.list.check(address, 'ipv4');
    if (isIPv6(address)) return this.list.check(address, 'ipv6');
    return false;
  }
}
