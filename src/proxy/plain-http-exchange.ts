// One plain request's exchange with the backend (src/proxy/plain-http.ts admits it and picks the backend): the
// request head and body out through undici, the answer back through node:http's ServerResponse with backpressure,
// retries on a failed dial, and the answer and metric for each way it can go wrong.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { type CatalogueEntry, Errors } from '../errors.js';
import { latin1Headers } from '../http/headers.js';
import { RequestBody } from '../http/request-body.js';
import { BACKEND_SERVERNAME } from '../http/upstream-client.js';
import type { ConnectionInfo } from '../listen/client-address.js';
import type { BodyErrorReason } from '../observe/hot-counts.js';
import { targetForLog } from '../observe/redact.js';
import { MAX_ATTEMPTS, type Member } from '../pool/pool.js';
import { endToEndHeaders, forwardedHeaders } from '../upstream/request.js';
import type { RequestIdentity } from '../upstream/request-id.js';
import { type Affinity, setCookieFor } from './affinity.js';
import type { ProxyContext } from './context.js';
import { answerWithEntry, type Refused, refuse } from './refuse.js';
import type { RouteRuntime } from './runtime.js';

/** Where an exchange gets the undici dispatcher for a request to a member (PlainHttpProxy). */
export interface DispatcherSource {
  dispatcherFor(ctx: ProxyContext, member: Member, req: IncomingMessage, connection: ConnectionInfo): Dispatcher;
}

const kExchange = Symbol('wsgate.exchange');
type ExchangeResponse = ServerResponse & { [kExchange]?: Exchange };

/** The backend picked for a request, and what a pick of another one needs. */
export interface Pick {
  readonly member: Member;
  readonly keyHash: number;
  readonly affinity: Affinity | undefined;
  readonly identity: RequestIdentity;
}

/**
 * One plain request on its way, and undici's handler for it. What went wrong decides the answer and the metric,
 * as on the upgrade path: the backend silent for timeouts.idle (a long poll's wait included) is 504 "timeout"; a
 * failed dial 502 "connect" (counted toward passive ejection; a request without a body and not pinned by its
 * affinity cookie tries the next ring member, up to MAX_ATTEMPTS backends); a reset or close after it 502 "reset"; an answer node cannot pass on 502
 * "bad_response". A request body that breaks or stalls is the client's doing: 400 or 408, nothing counted against
 * the backend. Each exchange ends once (`over`); undici's later callbacks are ignored.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  private readonly proxy: DispatcherSource;
  private readonly ctx: ProxyContext;
  private readonly route: RouteRuntime;
  private readonly pick: Pick;
  private readonly req: IncomingMessage;
  private readonly res: ExchangeResponse;
  private readonly connection: ConnectionInfo;
  private readonly ip: string;
  private readonly secure: boolean;
  private readonly headers: string[];
  /** The backend this attempt goes to; the ones tried before it are in `tried`. */
  private member: Member;
  private tried: Member[] | undefined = undefined;
  private setCookie: string | undefined;
  private readonly body: RequestBody | undefined;
  private controller: Dispatcher.DispatchController | undefined = undefined;
  /** The backend connection was up (undici calls onRequestStart on a connected socket). */
  private connected = false;
  /** The backend's answer head was passed on. */
  private answered = false;
  private over = false;
  private mayRetry: boolean;
  private drainListening = false;

  constructor(
    proxy: DispatcherSource,
    ctx: ProxyContext,
    route: RouteRuntime,
    pick: Pick,
    req: IncomingMessage,
    res: ServerResponse,
    connection: ConnectionInfo,
    clientCert: string | undefined,
  ) {
    const { client: ip, secure } = connection;
    this.connection = connection;
    this.proxy = proxy;
    this.ctx = ctx;
    this.route = route;
    this.pick = pick;
    this.member = pick.member;
    this.req = req;
    this.res = res as ExchangeResponse;
    this.ip = ip;
    this.secure = secure;
    const pool = route.pool;
    this.setCookie = setCookieFor(pool, pick.affinity, pick.member, secure);
    const stickyCookie = pool.sticky?.spec.cookie;
    this.headers = forwardedHeaders(req, {
      clientAddress: ip,
      secure,
      stickyCookie,
      identity: pick.identity,
      clientCert,
    });
    const repeatable = isRepeatable(req);
    // A request without a body can be sent again as it is; one with a body streams from the client.
    this.mayRetry = repeatable;
    if (repeatable) req.resume();
    else this.body = new RequestBody(req, ctx.runtime.config.timeouts.bodyMs, (r, d) => this.bodyFailed(r, d));
    this.res[kExchange] = this;
    res.on('close', onResponseClose);
  }

  send(): void {
    const idleMs = this.ctx.runtime.config.timeouts.idleMs;
    this.proxy.dispatcherFor(this.ctx, this.member, this.req, this.connection).dispatch(
      {
        method: this.req.method ?? 'GET',
        path: this.req.url ?? '/',
        headers: this.headers,
        body: this.body ?? null,
        headersTimeout: idleMs,
        bodyTimeout: idleMs,
        servername: BACKEND_SERVERNAME,
      } as Dispatcher.DispatchOptions,
      this,
    );
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Gone while its connection was being made: the request is not sent at all.
    if (this.over) controller.abort(new Error('exchange over'));
    else this.connected = true;
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    // Interim answers (100, 103) stay between us and the backend: the client's 100 Continue came from our server.
    if (statusCode < 200 || this.over) return;
    this.answered = true;
    const connection = headers.connection;
    const out = endToEndHeaders(
      latin1Headers((controller.rawHeaders ?? []) as (Buffer | string)[]),
      typeof connection === 'string' ? connection : undefined,
    );
    if (this.setCookie !== undefined) out.push('Set-Cookie', this.setCookie);
    if (headers['x-request-id'] !== this.pick.identity.id) setRequestId(out, this.pick.identity.id);
    try {
      this.res.writeHead(statusCode, statusMessage, out);
    } catch (err) {
      // undici accepts reason phrases node:http will not write (a control character): a bad answer, 502, never an
      // exception out of this handler.
      this.res.statusMessage = ''; // writeHead kept the bad one: our own 502 must not reuse it
      this.failed(Errors.UPSTREAM_BAD_RESPONSE, 'bad_response', err as Error);
      return;
    }
    this.route.pool.reportSuccess(this.member);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.over || this.res.write(chunk)) return;
    // The client reads slower than the backend sends: undici stops reading (and its body timeout waits) until
    // the client drains.
    controller.pause();
    if (!this.drainListening) {
      this.drainListening = true;
      this.res.on('drain', onResponseDrain);
    }
  }

  onResponseEnd(): void {
    if (this.over) return;
    this.over = true;
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.over) return;
    const code = (err as { code?: string }).code ?? '';
    if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
      // Something in the request undici will not send (node's parser let it through): the client's, not the
      // backend's, problem.
      this.over = true;
      this.body?.detach();
      refuse(this.ctx, this.who(), { response: this.res }, Errors.BAD_REQUEST, err.message);
      return;
    }
    if (code === 'UND_ERR_DESTROYED') {
      // The pools were destroyed: the gateway is stopping and this request outlived the drain.
      this.over = true;
      this.body?.detach();
      if (this.res.headersSent) this.res.destroy();
      else refuse(this.ctx, this.who(), { response: this.res }, Errors.SHUTTING_DOWN, err.message);
      return;
    }
    if (!this.connected) this.connectFailed(err);
    else if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      this.failed(Errors.UPSTREAM_TIMEOUT, 'timeout', err);
    } else if (isBadAnswer(code)) this.failed(Errors.UPSTREAM_BAD_RESPONSE, 'bad_response', err);
    else if (this.mayRetry && !this.answered) {
      // A kept-alive backend connection the backend closed just as it was reused fails before any answer: a
      // request without a body that is safe to repeat (RFC 9110 §9.2.2) is sent once more (nginx does the same),
      // instead of answering 502 for a race the client had no part in. undici does not say whether the connection
      // was a reused one, so a fresh one that fails alike gets the one retry too.
      this.mayRetry = false;
      this.connected = false;
      this.controller = undefined;
      this.send();
    } else this.failed(Errors.UPSTREAM_BAD_RESPONSE, 'reset', err);
  }

  /**
   * The backend could not be reached: the request was not sent, so one without a body goes to the next ring
   * member, as on the upgrade path. Not one its affinity cookie pinned: its session lives on that backend, and
   * another could only answer "unknown session"; it gets 502, and once the failures eject the backend the cookie
   * is stale and the next request is pinned anew.
   */
  private connectFailed(err: Error): void {
    this.countFailure('connect', err);
    const next = this.body === undefined && this.pick.affinity?.pinned === undefined ? this.nextMember() : undefined;
    if (next === undefined) {
      this.answerFailure(Errors.UPSTREAM_CONNECT_FAILED, err);
      return;
    }
    this.member = next;
    this.setCookie = setCookieFor(this.route.pool, this.pick.affinity, next, this.secure);
    this.controller = undefined;
    this.send();
  }

  private nextMember(): Member | undefined {
    const tried = this.tried ?? [this.pick.member];
    this.tried = tried;
    if (tried.length >= Math.min(MAX_ATTEMPTS, this.route.pool.members.length)) return undefined;
    const next = this.route.pool.pickHash(this.pick.keyHash, tried.map(indexOf));
    if (next !== undefined) tried.push(next);
    return next;
  }

  /** The backend failed this request: counted, logged, answered (or the client's connection cut mid-answer). */
  private failed(entry: CatalogueEntry, reason: string, err: Error): void {
    this.countFailure(reason, err);
    this.answerFailure(entry, err);
  }

  private countFailure(reason: string, err: Error): void {
    const pool = this.route.pool;
    const backend = this.member.backend.id;
    this.ctx.metrics.upstreamErrors.inc({ pool: pool.name, backend, reason });
    // A backend that cannot be reached counts toward its passive ejection, as on the upgrade path. A timeout does
    // not: a long poll may rightly keep its backend quiet for as long as the backend's poll interval.
    if (reason === 'connect') pool.reportFailure(this.member);
    this.route.log.warn(
      {
        event: 'upstream_failed',
        backend,
        reason,
        detail: err.message,
        client: this.ip,
        path: this.pathForLog(),
        requestId: this.pick.identity.id,
      },
      'plain HTTP request to backend failed',
    );
  }

  private answerFailure(entry: CatalogueEntry, err: Error): void {
    if (this.over) return;
    this.over = true;
    this.body?.detach();
    this.controller?.abort(err);
    if (!this.res.headersSent) answerWithEntry(this.res, entry, { 'X-Request-Id': this.pick.identity.id });
    else this.res.destroy();
  }

  /** The client's body broke or stalled: its answer is ours (400, 408), the backend is let go and not blamed. */
  private bodyFailed(reason: BodyErrorReason, detail: string): void {
    if (this.over) return;
    this.over = true;
    this.controller?.abort(new Error(`request body ${reason}`));
    this.ctx.metrics.requestBodyErrors.inc({ route: this.route.name, reason });
    if (this.res.headersSent) {
      this.res.destroy();
      return;
    }
    const entry = reason === 'timeout' ? Errors.BODY_TIMEOUT : Errors.BAD_BODY;
    refuse(this.ctx, this.who(), { response: this.res }, entry, detail);
  }

  /**
   * The response closed: answered, or the client went away (reset, or closed before the whole answer). Nobody is
   * left to answer, and a backend connection mid-exchange cannot be reused: undici drops it. The client's body,
   * if it still comes (the backend answered before reading it all), is read and dropped. Not a backend failure.
   */
  responseClosed(): void {
    this.body?.detach();
    if (this.over) return;
    this.over = true;
    this.controller?.abort(new Error('client went away'));
  }

  resumeAnswer(): void {
    this.controller?.resume();
  }

  private who(): Refused {
    return { route: this.route, client: this.ip, path: this.req.url ?? '/', requestId: this.pick.identity.id };
  }

  private pathForLog(): string {
    return targetForLog(this.req.url ?? '/', this.ctx.runtime.config.log.redact);
  }
}

function indexOf(member: Member): number {
  return member.index;
}

function onResponseClose(this: ExchangeResponse): void {
  this[kExchange]?.responseClosed();
}

function onResponseDrain(this: ExchangeResponse): void {
  this[kExchange]?.resumeAnswer();
}

/** undici's codes for an answer that is not valid HTTP/1.1 or does not match its own framing. */
function isBadAnswer(code: string): boolean {
  return (
    code.startsWith('HPE_') ||
    code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' ||
    code === 'UND_ERR_HEADERS_OVERFLOW' ||
    code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE'
  );
}

/** Safe to send twice and without a body (RFC 9110 §9.2.1): GET, HEAD and OPTIONS with no Content-Length above 0. */
function isRepeatable(req: IncomingMessage): boolean {
  const method = req.method;
  if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

/** The answer's one X-Request-Id is the request's: a different one of the backend's is replaced (see upgrade.ts). */
function setRequestId(headers: string[], id: string): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if ((headers[i] as string).toLowerCase() === 'x-request-id') headers.splice(i, 2);
  }
  headers.push('X-Request-Id', id);
}
