// Builds the upgrade request sent to a backend: the client's headers minus hop-by-hop ones, plus the
// X-Forwarded-* and RFC 7239 Forwarded headers that tell the backend who the client really is.

import type { UpgradeRequest } from '../handshake/upgrade-head.js';

/** RFC 9110 §7.6.1 hop-by-hop headers, and the ones we rewrite ourselves. */
const DROPPED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'host',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

export interface ForwardInfo {
  readonly clientAddress: string;
  readonly secure: boolean;
}

export function upstreamRequestHead(req: UpgradeRequest, info: ForwardInfo): string {
  const raw = req.rawHeaders;
  const nominated = connectionNominated(req.headers.connection);
  const host = req.headers.host ?? '';
  // Host from the parsed headers, not the raw ones: an absolute-form target has replaced it (request-target.ts).
  let head = `GET ${req.url ?? '/'} HTTP/1.1\r\nHost: ${host}\r\n`;
  let xff: string | undefined;
  let forwarded: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (DROPPED.has(lower) || nominated?.has(lower)) continue;
    if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
    else if (lower === 'forwarded') forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`;
    else head += `${name}: ${value}\r\n`;
  }
  const proto = info.secure ? 'https' : 'http';
  const client = info.clientAddress;
  const forwardedFor = client.includes(':') ? `"[${client}]"` : client;
  const thisHop = `for=${forwardedFor};proto=${proto};host=${quoteIfNeeded(host)}`;
  head += `X-Forwarded-For: ${xff === undefined ? client : `${xff}, ${client}`}\r\n`;
  head += `X-Forwarded-Proto: ${proto}\r\n`;
  head += `X-Forwarded-Host: ${host}\r\n`;
  head += `Forwarded: ${forwarded === undefined ? thisHop : `${forwarded}, ${thisHop}`}\r\n`;
  head += 'Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
  return head;
}

/** Headers a client names in `Connection` are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionNominated(connection: string | undefined): Set<string> | undefined {
  if (connection === undefined || !connection.includes(',')) return undefined;
  const names = new Set<string>();
  for (const token of connection.split(',')) names.add(token.trim().toLowerCase());
  return names;
}

function quoteIfNeeded(value: string): string {
  return /^[A-Za-z0-9.-]*$/.test(value) ? value : `"${value.replace(/["\\]/g, '')}"`;
}
