// A backend's final answer other than 101, relayed to the client as it came (head, then body), after which both
// connections close: nothing is tunnelled. The body is delimited as RFC 9112 §6.3 says, so the relay stops right
// after it (a kept-alive backend never closes) and forwards nothing past it; a client that stops reading holds the
// backend back through TCP (nothing piles up here); a relay where the backend sends nothing for `idleMs` is cut.

import type { Socket } from 'node:net';
import { writeAndClose } from '../handshake/reject.js';
import { ChunkedBodyEnd } from '../http/chunked-end.js';
import type { ResponseHead } from '../upstream/handshake.js';

/** How the body of an answer is delimited (RFC 9112 §6.3). */
export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly bytes: number }
  | { readonly kind: 'chunked' }
  | { readonly kind: 'close' }
  /** A Content-Length no recipient may guess at: a proxy answers 502 instead (§6.3, item 5). */
  | { readonly kind: 'invalid' };

export function bodyFraming(head: ResponseHead): BodyFraming {
  const status = head.status;
  if (status < 200 || status === 204 || status === 304) return { kind: 'none' };
  const te = head.headers.get('transfer-encoding');
  if (te !== undefined) {
    // Chunked last: it delimits the body; any other final coding: the close does.
    const last = te
      .slice(te.lastIndexOf(',') + 1)
      .trim()
      .toLowerCase();
    return last === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  }
  const length = head.headers.get('content-length');
  if (length === undefined) return { kind: 'close' };
  // Repeated lines arrive joined with ", " (parseResponseHead); the same value repeated is that value.
  const values = new Set(length.split(',').map((v) => v.trim()));
  const [value] = values;
  if (values.size !== 1 || value === undefined || !/^\d{1,15}$/.test(value)) return { kind: 'invalid' };
  return { kind: 'length', bytes: Number(value) };
}

/** Starts relaying: `head` (the backend's bytes up to the body), then `rest` and what follows, up to the body's end. */
export function relayRefusal(
  client: Socket,
  backend: Socket,
  head: Buffer,
  rest: Buffer,
  framing: Exclude<BodyFraming, { kind: 'invalid' }>,
  idleMs: number,
): void {
  new RefusalRelay(client, backend, framing, idleMs).start(head, rest);
}

class RefusalRelay {
  private readonly client: Socket;
  private readonly backend: Socket;
  private readonly framing: Exclude<BodyFraming, { kind: 'invalid' }>;
  private readonly chunked: ChunkedBodyEnd | undefined;
  /** Body bytes still due, for a Content-Length body. */
  private left: number;
  private readonly idleMs: number;
  private timer: NodeJS.Timeout | undefined;
  private done = false;

  constructor(client: Socket, backend: Socket, framing: Exclude<BodyFraming, { kind: 'invalid' }>, idleMs: number) {
    this.client = client;
    this.backend = backend;
    this.framing = framing;
    this.chunked = framing.kind === 'chunked' ? new ChunkedBodyEnd() : undefined;
    this.left = framing.kind === 'length' ? framing.bytes : 0;
    this.idleMs = idleMs;
  }

  start(head: Buffer, rest: Buffer): void {
    this.client.write(head);
    if (this.framing.kind === 'none' || (this.framing.kind === 'length' && this.left === 0)) {
      this.finish();
      return;
    }
    this.relay(rest);
    if (this.done) return;
    const backend = this.backend;
    backend.on('data', (chunk: Buffer) => this.relay(chunk));
    // The backend ending or failing ends the body (a close-delimited one properly, any other cut short).
    backend.on('end', () => this.finish());
    backend.on('error', () => this.finish());
    backend.on('close', () => this.finish());
    // The client gone (its FIN or reset is only seen while it is read: what it sends meanwhile is dropped).
    const client = this.client;
    client.on('data', discard);
    client.on('end', () => this.abort());
    client.on('close', () => this.abort());
    client.resume();
    this.timer = setTimeout(() => this.abort(), this.idleMs);
    // Unless the relay of `rest` already filled the client: its drain resumes the backend.
    if (!client.writableNeedDrain) backend.resume();
  }

  private relay(chunk: Buffer): void {
    if (this.done || chunk.length === 0) return;
    this.timer?.refresh();
    let end = chunk.length;
    if (this.framing.kind === 'length') {
      end = Math.min(end, this.left);
      this.left -= end;
    } else if (this.chunked !== undefined) {
      const at = this.chunked.feed(chunk);
      if (this.chunked.failed) {
        this.abort();
        return;
      }
      if (at >= 0) end = at;
    }
    // A close-delimited body ends with the backend's FIN ('end' below), never inside a chunk.
    const ended = this.framing.kind === 'length' ? this.left === 0 : this.chunked?.ended === true;
    const writable = this.client.write(end === chunk.length ? chunk : chunk.subarray(0, end));
    if (ended) {
      this.finish();
      return;
    }
    if (!writable) {
      this.backend.pause();
      this.client.once('drain', () => {
        if (!this.done) this.backend.resume();
      });
    }
  }

  /** The body is through (or cut short by the backend): close both, the client after its bytes are flushed. */
  private finish(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.backend.destroy();
    writeAndClose(this.client, Buffer.alloc(0));
  }

  /** Nobody to relay to, or nothing came for too long, or the framing broke: both go now. */
  private abort(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.backend.destroy();
    this.client.destroy();
  }
}

function discard(): void {}
