// One attempt at a backend: dial (TCP or TLS), send the upgrade request, read the response head, and verify a
// 101 (§4.1: Upgrade, Connection, Sec-WebSocket-Accept). Bytes after the head are handed on untouched.

import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { BackendConfig } from '../config/types.js';
import { type CatalogueEntry, Errors } from '../errors.js';
import { hasToken } from '../handshake/validate.js';
import { directWriteFd, writeChunk } from '../platform/socket-io.js';
import { upstreamTlsOptions } from './tls.js';

/** A backend response head larger than this is not a WebSocket handshake. */
export const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;

const HEAD_END = Buffer.from('\r\n\r\n');

export interface ResponseHead {
  readonly status: number;
  /** Lower-cased header names; a header sent on several lines has its values joined with ", " (RFC 9110 §5.3). */
  readonly headers: ReadonlyMap<string, string>;
  /**
   * The exact bytes to forward as-is: the head including its blank line, after any interim (1xx) answers that
   * came before it (RFC 9110 §15.2: a proxy forwards them).
   */
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

/**
 * Dials `backend` and sends the upgrade request `requestHead`; `proxyHeader` (pools.NAME.proxyProtocol) goes first
 * on the TCP connection, before TLS.
 */
export function attemptUpstream(
  backend: BackendConfig,
  requestHead: Buffer,
  expectedAccept: string,
  timeoutMs: number,
  proxyHeader?: Buffer,
): Promise<AttemptResult> {
  return new Promise((resolve) => {
    const socket = backend.tls
      ? tlsConnect({
          ...(proxyHeader === undefined
            ? { host: backend.host, port: backend.port }
            : // `host` still names the backend whose certificate is checked.
              { socket: tcpWithPreamble(backend, proxyHeader), host: backend.host }),
          ALPNProtocols: ['http/1.1'],
          ...upstreamTlsOptions(backend),
        }).setNoDelay(true)
      : // As an option, TCP_NODELAY is set once, when connected (setNoDelay() now would set it twice).
        netConnect({ host: backend.host, port: backend.port, noDelay: true });
    const head = proxyHeader !== undefined && !backend.tls ? Buffer.concat([proxyHeader, requestHead]) : requestHead;
    const attempt = new Attempt(socket, head, expectedAccept, timeoutMs, resolve);
    (socket as AttemptSocket)[kAttempt] = attempt;
    socket.once(backend.tls ? 'secureConnect' : 'connect', onConnect);
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}

/**
 * A TCP connection to `backend` that sends `preamble` first (a PROXY header before TLS). Its failures end the TLS
 * socket wrapped around it, which reports them.
 */
export function tcpWithPreamble(backend: BackendConfig, preamble: Buffer): Socket {
  const socket = netConnect({ host: backend.host, port: backend.port, noDelay: true });
  socket.write(preamble);
  return socket;
}

const kAttempt = Symbol('wsgate.upstreamAttempt');
type AttemptSocket = Socket & { [kAttempt]?: Attempt };

/**
 * One attempt's state. The socket handlers below are shared functions that find it through a symbol, so an
 * attempt costs this object, its timer and the promise: no closures per connection.
 */
class Attempt {
  readonly socket: Socket;
  /** The request head's bytes, made once per connection and sent as they are on every attempt. */
  readonly requestHead: Buffer;
  readonly expectedAccept: string;
  readonly timeoutMs: number;
  readonly resolve: (result: AttemptResult) => void;
  readonly timer: NodeJS.Timeout;
  buffered: Buffer | undefined = undefined;
  /** Where in `buffered` the next head starts: after the interim (1xx) answers read so far. */
  headStart = 0;
  connected = false;
  settled = false;

  constructor(
    socket: Socket,
    requestHead: Buffer,
    expectedAccept: string,
    timeoutMs: number,
    resolve: (result: AttemptResult) => void,
  ) {
    this.socket = socket;
    this.requestHead = requestHead;
    this.expectedAccept = expectedAccept;
    this.timeoutMs = timeoutMs;
    this.resolve = resolve;
    this.timer = setTimeout(attemptTimedOut, timeoutMs, this);
  }

  settle(result: AttemptResult): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    socket.removeListener('data', onData);
    socket.removeListener('error', onError);
    socket.removeListener('close', onClose);
    (socket as AttemptSocket)[kAttempt] = undefined;
    if (result.kind === 'failed') socket.destroy();
    else socket.pause();
    this.resolve(result);
  }

  fail(retryable: boolean, error: CatalogueEntry, reason: string, detail: string): void {
    this.settle({ kind: 'failed', retryable, error, reason, detail });
  }

  received(chunk: Buffer): void {
    const buffered = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    this.buffered = buffered;
    for (;;) {
      const end = buffered.indexOf(HEAD_END, this.headStart);
      // The limit holds for a head that arrived whole in one read too, and for interim answers and head together.
      if (end < 0 ? buffered.length > MAX_RESPONSE_HEAD_BYTES : end + HEAD_END.length > MAX_RESPONSE_HEAD_BYTES) {
        this.fail(false, Errors.UPSTREAM_BAD_RESPONSE, 'bad_response', 'response head too large');
        return;
      }
      if (end < 0) return;
      const headEnd = end + HEAD_END.length;
      const head = parseResponseHead(buffered.subarray(this.headStart, headEnd));
      if (head === undefined) {
        this.fail(false, Errors.UPSTREAM_BAD_RESPONSE, 'bad_response', 'unparseable response head');
        return;
      }
      if (head.status >= 100 && head.status < 200 && head.status !== 101) {
        // An interim answer (100 Continue, 103 Early Hints): the final one follows; both are forwarded.
        this.headStart = headEnd;
        continue;
      }
      this.finalHead({ ...head, raw: buffered.subarray(0, headEnd) }, buffered.subarray(headEnd));
      return;
    }
  }

  private finalHead(head: ResponseHead, rest: Buffer): void {
    if (head.status !== 101) {
      this.settle({ kind: 'refused', socket: this.socket, head, rest });
      return;
    }
    const problem = check101(head, this.expectedAccept);
    if (problem) this.fail(false, problem.error, problem.reason, problem.detail);
    else this.settle({ kind: 'switched', socket: this.socket, head, rest });
  }
}

function onConnect(this: AttemptSocket): void {
  const attempt = this[kAttempt];
  if (attempt === undefined) return;
  attempt.connected = true;
  writeChunk(this, directWriteFd(this), attempt.requestHead);
}

function onData(this: AttemptSocket, chunk: Buffer): void {
  this[kAttempt]?.received(chunk);
}

function onError(this: AttemptSocket, err: Error): void {
  const attempt = this[kAttempt];
  if (attempt === undefined) return;
  if (attempt.connected) attempt.fail(false, Errors.UPSTREAM_BAD_RESPONSE, 'reset', err.message);
  else attempt.fail(true, Errors.UPSTREAM_CONNECT_FAILED, 'connect', err.message);
}

function onClose(this: AttemptSocket): void {
  const attempt = this[kAttempt];
  if (attempt === undefined) return;
  attempt.fail(!attempt.connected, Errors.UPSTREAM_BAD_RESPONSE, 'closed', 'backend closed before answering');
}

function attemptTimedOut(attempt: Attempt): void {
  attempt.fail(true, Errors.UPSTREAM_TIMEOUT, 'timeout', `no handshake response within ${attempt.timeoutMs} ms`);
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
  let eol = text.indexOf('\r\n');
  if (eol < 0) eol = text.length;
  const status = statusOf(text, eol);
  if (status < 0) return undefined;
  const headers = new Map<string, string>();
  // Line by line without splitting the head into an array; empty lines are skipped, as before.
  for (let from = eol + 2; from < text.length; from = eol + 2) {
    eol = text.indexOf('\r\n', from);
    if (eol < 0) eol = text.length;
    if (eol === from) continue;
    const colon = text.indexOf(':', from);
    if (colon < 0 || colon >= eol || colon === from) return undefined;
    const name = text.slice(from, colon).trim().toLowerCase();
    const value = text.slice(colon + 1, eol).trim();
    const earlier = headers.get(name);
    headers.set(name, earlier === undefined ? value : `${earlier}, ${value}`);
  }
  return { status, headers, raw };
}

/** The status of "HTTP/1.x NNN[ reason]" (what /^HTTP\/1\.[01] (\d{3})(?: |$)/ matched), or -1. */
function statusOf(text: string, eol: number): number {
  if (eol < 12 || !text.startsWith('HTTP/1.') || (text[7] !== '0' && text[7] !== '1') || text[8] !== ' ') return -1;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    status = status * 10 + digit;
  }
  return eol === 12 || text[12] === ' ' ? status : -1;
}
