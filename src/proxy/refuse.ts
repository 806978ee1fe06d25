// The one way wsgate refuses a request before any tunnel exists: one counter, one log line, one answer with the
// catalogue entry's HTTP status and code. Upgrades are answered on the raw socket (handshake/reject.ts closes it
// gracefully), plain requests through their node:http response; a connection the listener has already answered
// or dropped (a malformed head, a TLS failure) is only counted and logged.

import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { type CatalogueEntry, reasonLabel } from '../errors.js';
import { rejectHandshake } from '../handshake/reject.js';
import type { Logger } from '../observe/log.js';
import { targetForLog } from '../observe/redact.js';
import type { ProxyContext } from './context.js';
import type { RouteRuntime } from './runtime.js';

/** How the refusal reaches the client. */
export type RefusalChannel =
  | { readonly socket: Duplex }
  | { readonly response: ServerResponse }
  /** Already answered or dropped by the listener: count and log only. */
  | { readonly answered: true };

/** Who was refused, for the log line and the `route` label. */
export interface Refused {
  readonly route: RouteRuntime | undefined;
  readonly client: string;
  /** The request target, cut for the log; absent when no request head was read. */
  readonly path?: string | undefined;
  /** The request's id (upstream/request-id.ts): logged and sent back in X-Request-Id; absent without a head. */
  readonly requestId?: string | undefined;
}

/**
 * A request target without its query string, for the log line of a refused token (which may sit in the query): gone
 * whole, whatever log.redact says.
 */
export function withoutQuery(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

export function refuse(
  ctx: Pick<ProxyContext, 'metrics' | 'log' | 'runtime'>,
  who: Refused,
  channel: RefusalChannel,
  entry: CatalogueEntry,
  detail?: string,
  headers?: Record<string, string>,
): void {
  const status = entry.status ?? 500;
  ctx.metrics.handshakeRejections.inc({
    route: who.route?.name ?? '',
    status: String(status),
    reason: reasonLabel(entry),
  });
  const log: Logger = who.route?.log ?? ctx.log;
  log.info(
    {
      event: 'rejected',
      status,
      code: entry.code,
      client: who.client,
      ...(who.path === undefined ? {} : { path: targetForLog(who.path, ctx.runtime.config.log.redact) }),
      ...(who.requestId === undefined ? {} : { requestId: who.requestId }),
      detail,
    },
    messageFor(channel),
  );
  const answerHeaders = who.requestId === undefined ? headers : { ...headers, 'X-Request-Id': who.requestId };
  if ('socket' in channel) rejectHandshake(channel.socket, entry, answerHeaders);
  else if ('response' in channel) answerWithEntry(channel.response, entry, answerHeaders);
}

function messageFor(channel: RefusalChannel): string {
  if ('socket' in channel) return 'handshake rejected';
  if ('response' in channel) return 'plain HTTP request rejected';
  return 'malformed request';
}

/** A catalogue answer through node:http; the connection closes after it, as on the raw path. */
export function answerWithEntry(
  res: ServerResponse,
  entry: CatalogueEntry,
  headers: Record<string, string> = {},
): void {
  const body = `${entry.message}\n`;
  res.writeHead(entry.status ?? 500, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Wsgate-Error': entry.code,
    Connection: 'close',
    ...headers,
  });
  res.end(body);
}
