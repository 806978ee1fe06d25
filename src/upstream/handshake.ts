// One attempt at a backend: dial (TCP or TLS), send the upgrade request, read the response head, and verify a
// 101 (§4.1: Upgrade, Connection, Sec-WebSocket-Accept). Bytes after the head are handed on untouched.

import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { BackendConfig } from '../config/types.js';
import { type CatalogueEntry, Errors } from '../errors.js';
import { hasToken } from '../handshake/validate.js';

/** A backend response head larger than this is not a WebSocket handshake. */
export const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;

const HEAD_END = Buffer.from('\r\n\r\n');

export interface ResponseHead {
  readonly status: number;
  /** Lower-cased header names; the first value of each. */
  readonly headers: ReadonlyMap<string, string>;
  /** The exact bytes of the head, including the blank line, to forward as-is. */
  readonly raw: Buffer;
}

export type AttemptResult =
  /** Verified 101: the socket is ready for the tunnel; `rest` holds frame bytes that came with the head. */
  | { readonly kind: 'switched'; readonly socket: Socket; readonly head: ResponseHead; readonly rest: Buffer }
  /** Any other answer: relayed to the client, never tunnelled. */
  | { readonly kind: 'refused'; readonly socket: Socket; readonly head: ResponseHead; readonly rest: Buffer }
  | {
      readonly kind: 'failed';
      /** Whether another backend may be tried (connect errors and timeouts, not bad answers). */
      readonly retryable: boolean;
      readonly error: CatalogueEntry;
      readonly reason: string;
      readonly detail: string;
    };

export function attemptUpstream(
  backend: BackendConfig,
  requestHead: string,
  expectedAccept: string,
  timeoutMs: number,
): Promise<AttemptResult> {
  return new Promise((resolve) => {
    const socket = backend.tls
      ? tlsConnect({
          host: backend.host,
          port: backend.port,
          servername: sniName(backend.host),
          ALPNProtocols: ['http/1.1'],
        })
      : netConnect({ host: backend.host, port: backend.port });
    socket.setNoDelay(true);
    let buffered: Buffer | undefined;
    let connected = false;
    let settled = false;

    const settle = (result: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      if (result.kind === 'failed') socket.destroy();
      else socket.pause();
      resolve(result);
    };
    const fail = (retryable: boolean, error: CatalogueEntry, reason: string, detail: string) =>
      settle({ kind: 'failed', retryable, error, reason, detail });

    const onData = (chunk: Buffer) => {
      buffered = buffered === undefined ? chunk : Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf(HEAD_END);
      if (end < 0) {
        if (buffered.length > MAX_RESPONSE_HEAD_BYTES)
          fail(false, Errors.UPSTREAM_BAD_RESPONSE, 'bad_response', 'response head too large');
        return;
      }
      const headEnd = end + HEAD_END.length;
      // The limit holds for a head that arrived whole in one read too, not only for one still incomplete.
      if (headEnd > MAX_RESPONSE_HEAD_BYTES)
        return fail(false, Errors.UPSTREAM_BAD_RESPONSE, 'bad_response', 'response head too large');
      const head = parseResponseHead(buffered.subarray(0, headEnd));
      if (head === undefined)
        return fail(false, Errors.UPSTREAM_BAD_RESPONSE, 'bad_response', 'unparseable response head');
      const rest = buffered.subarray(headEnd);
      if (head.status !== 101) return settle({ kind: 'refused', socket, head, rest });
      const problem = check101(head, expectedAccept);
      if (problem) return fail(false, problem.error, problem.reason, problem.detail);
      settle({ kind: 'switched', socket, head, rest });
    };
    const onError = (err: Error) => {
      if (connected) fail(false, Errors.UPSTREAM_BAD_RESPONSE, 'reset', err.message);
      else fail(true, Errors.UPSTREAM_CONNECT_FAILED, 'connect', err.message);
    };
    const onClose = () => fail(!connected, Errors.UPSTREAM_BAD_RESPONSE, 'closed', 'backend closed before answering');
    const timer = setTimeout(
      () => fail(true, Errors.UPSTREAM_TIMEOUT, 'timeout', `no handshake response within ${timeoutMs} ms`),
      timeoutMs,
    );

    socket.once(backend.tls ? 'secureConnect' : 'connect', () => {
      connected = true;
      // node's parser decodes header bytes as latin1; encoding back as latin1 forwards them byte-exact
      // (the default utf8 would turn one obs-text byte such as 0xE9 into two).
      socket.write(requestHead, 'latin1');
    });
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}

function check101(
  head: ResponseHead,
  expectedAccept: string,
): { error: CatalogueEntry; reason: string; detail: string } | undefined {
  const h = head.headers;
  if (h.get('upgrade')?.toLowerCase() !== 'websocket' || !hasToken(h.get('connection'), 'upgrade')) {
    return { error: Errors.UPSTREAM_BAD_RESPONSE, reason: 'bad_response', detail: '101 without Upgrade: websocket' };
  }
  if (h.get('sec-websocket-accept') !== expectedAccept) {
    return { error: Errors.UPSTREAM_BAD_ACCEPT, reason: 'bad_accept', detail: 'Sec-WebSocket-Accept mismatch' };
  }
  return undefined;
}

/** Parses "HTTP/1.1 101 Switching Protocols\r\nName: value\r\n...\r\n\r\n". Undefined if malformed. */
export function parseResponseHead(raw: Buffer): ResponseHead | undefined {
  const text = raw.toString('latin1');
  const lines = text.split('\r\n');
  const statusLine = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (!statusLine) return undefined;
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  return { status: Number(statusLine[1]), headers, raw };
}

function sniName(host: string): string | undefined {
  // SNI must not be an IP address (RFC 6066 §3).
  return /^[\d.]+$/.test(host) || host.includes(':') ? undefined : host;
}
