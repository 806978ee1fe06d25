// A plain request's body on its way to the backend: the client's IncomingMessage relayed with backpressure, and
// the one place that notices the body broke (a malformed chunk line, which the listener reports on the request as
// REQUEST_BODY_FAILED) or stalled (no byte for timeouts.body). undici reads this stream, never the request: when
// undici gives up on a request it destroys the body it was given, and destroying an unfinished IncomingMessage
// destroys the client's socket, before the proxy could answer 400 or 408 on it.

import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { REQUEST_BODY_FAILED } from '../listen/listener.js';
import type { BodyErrorReason } from '../observe/hot-counts.js';

/** Told once, when the body broke or stalled; the relay has stopped by then. */
export type BodyFailure = (reason: BodyErrorReason, detail: string) => void;

const kBody = Symbol('wsgate.requestBody');
type BodySource = IncomingMessage & { [kBody]?: RequestBody };

export class RequestBody extends Readable {
  private readonly req: BodySource;
  private readonly stallMs: number;
  private readonly failed: BodyFailure;
  private readonly timer: NodeJS.Timeout;
  private detached = false;

  constructor(req: IncomingMessage, stallMs: number, failed: BodyFailure) {
    super();
    this.req = req as BodySource;
    this.stallMs = stallMs;
    this.failed = failed;
    this.req[kBody] = this;
    req.on('data', onData);
    req.on('end', onEnd);
    req.on(REQUEST_BODY_FAILED, onMalformed);
    // A client reset mid-body: the response's 'close' tells the exchange; the request's own error adds nothing.
    req.on('error', ignoreError);
    this.timer = setTimeout(onStall, stallMs, this);
    this.timer.unref();
  }

  override _read(): void {
    this.req.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.detach();
    callback(err);
  }

  /**
   * Stops relaying (the exchange is over, or undici is done with the body): what the client still sends is read
   * and dropped, as node does for a request nobody reads, so its connection stays usable.
   */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    clearTimeout(this.timer);
    const req = this.req;
    req.removeListener('data', onData);
    req.removeListener('end', onEnd);
    req.removeListener(REQUEST_BODY_FAILED, onMalformed);
    req[kBody] = undefined;
    req.resume();
  }

  relay(chunk: Buffer): void {
    this.timer.refresh();
    if (!this.push(chunk)) this.req.pause();
  }

  complete(): void {
    clearTimeout(this.timer);
    this.push(null);
  }

  fail(reason: BodyErrorReason, detail: string): void {
    if (this.detached) return;
    this.detach();
    this.failed(reason, detail);
  }

  stalled(): void {
    this.fail('timeout', `no request body byte for ${this.stallMs} ms`);
  }
}

function onData(this: BodySource, chunk: Buffer): void {
  this[kBody]?.relay(chunk);
}

function onEnd(this: BodySource): void {
  this[kBody]?.complete();
}

function onMalformed(this: BodySource, err: Error & { code?: string }): void {
  this[kBody]?.fail(err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'timeout' : 'malformed', err.code ?? err.message);
}

function onStall(body: RequestBody): void {
  body.stalled();
}

function ignoreError(): void {}
