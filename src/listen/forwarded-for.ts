// The client behind trusted L7 proxies (listeners[].clientAddress.forwardedFor): X-Forwarded-For, or RFC 7239
// Forwarded `for=` when no X-Forwarded-For is present, walked from the right as nginx's `real_ip_recursive on`
// does: entries that are trusted proxies are skipped, the first one that is not is the client. A malformed entry
// ends the walk and the last trusted address stands. Only a peer that is itself trusted is believed at all.

import { isIPv4, isIPv6 } from 'node:net';
import type { CidrList } from '../net/cidr.js';
import { normaliseIp } from '../routing/hash-key.js';

/** The client address for a request from `peer` carrying `rawHeaders` (node's [name, value, …] list). */
export function forwardedClient(peer: string, rawHeaders: readonly string[], trusted: CidrList): string {
  if (!trusted.has(peer)) return peer;
  let xff: string | undefined;
  let forwarded: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    const value = rawHeaders[i + 1] as string;
    // Several lines of one header are one comma-separated list, in order (RFC 9110 §5.3).
    if (name === 'x-forwarded-for') xff = xff === undefined ? value : `${xff},${value}`;
    else if (name === 'forwarded') forwarded = forwarded === undefined ? value : `${forwarded},${value}`;
  }
  const list = xff ?? forwarded;
  if (list === undefined) return peer;
  const read = xff !== undefined ? xffAddress : forwardedForAddress;
  let current = peer;
  let end = list.length;
  while (end > 0) {
    const comma = list.lastIndexOf(',', end - 1);
    const address = read(list.slice(comma + 1, end));
    if (address === undefined) return current;
    if (!trusted.has(address)) return address;
    current = address;
    end = Math.max(comma, 0);
  }
  return current;
}

/** One X-Forwarded-For entry: an address, optionally `v4:port` or `[v6]:port` (some balancers add the port). */
function xffAddress(entry: string): string | undefined {
  return addressOf(entry.trim());
}

/** One Forwarded element's `for=` (token or quoted string; RFC 7239 §6: `"[v6]:port"`, `"v4:port"`). */
function forwardedForAddress(element: string): string | undefined {
  for (const pair of element.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    return addressOf(value);
  }
  return undefined;
}

function addressOf(text: string): string | undefined {
  if (isIPv4(text)) return text;
  if (isIPv6(text)) return normaliseIp(text);
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    const inner = text.slice(1, close);
    if (close < 0 || !isIPv6(inner) || !isPortSuffix(text.slice(close + 1))) return undefined;
    return normaliseIp(inner);
  }
  const colon = text.indexOf(':');
  if (colon > 0 && isIPv4(text.slice(0, colon)) && isPortSuffix(text.slice(colon))) return text.slice(0, colon);
  return undefined;
}

/** Nothing, or `:port` (0 to 65535). */
function isPortSuffix(text: string): boolean {
  return text === '' || (/^:\d{1,5}$/.test(text) && Number(text.slice(1)) <= 65535);
}
