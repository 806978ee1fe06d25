// Plain (non-upgrade) HTTP on a WebSocket route, e.g. Socket.IO long-polling: the stages of the upgrade path
// (route, origin, edge, token, admission, pick: the affinity cookie, else the hash key), then the request goes to the
// backend through the undici pool of src/http/upstream-client.ts. Its head is built like the upgrade path's
// (src/upstream/request.ts): the target byte-exact (RFC 9110 §7.7), hop-by-hop headers dropped both ways, the
// forwarding headers ours, and the client's X-Forwarded-* never trusted. Bodies stream both ways with
// backpressure; the response side is a node:http ServerResponse written from undici's callbacks.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { checkEdge } from '../access/edge.js';
import type { RouteAuth } from '../access/jwt/route-auth.js';
import { type CatalogueEntry, Errors } from '../errors.js';
import { isValidHost, originAllowed } from '../handshake/validate.js';
import { latin1Headers } from '../http/headers.js';
import { RequestBody } from '../http/request-body.js';
import { UpstreamClient, type UpstreamSettings } from '../http/upstream-client.js';
import type { ConnectionInfo } from '../listen/client-address.js';
import type { BodyErrorReason } from '../observe/hot-counts.js';
import { targetForLog } from '../observe/redact.js';
import { MAX_ATTEMPTS, type Member } from '../pool/pool.js';
import { hashString } from '../routing/hash.js';
import { hashKeyOf } from '../routing/hash-key.js';
import { isSuspiciousPath } from '../routing/router.js';
import { proxyHeaderToBackend } from '../upstream/proxy-header.js';
import { endToEndHeaders, forwardedHeaders } from '../upstream/request.js';
import { identify, type RequestIdentity } from '../upstream/request-id.js';
import { type Affinity, affinityOf, setCookieFor } from './affinity.js';
import type { ProxyContext } from './context.js';
import { answerWithEntry, type RefusalChannel, type Refused, refuse, withoutQuery } from './refuse.js';
import type { RouteRuntime } from './runtime.js';

/** A request that passed the checks up to the edge, on its way through the token check to admission. */
interface PlainRequest {
  readonly route: RouteRuntime;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly connection: ConnectionInfo;
  readonly who: Refused;
  readonly identity: RequestIdentity;
  readonly clientCert: string | undefined;
}

export class PlainHttpProxy {
  private readonly upstream = new UpstreamClient();
  /** Pools are built with these; a new object only when the config's values change (see upstreamSettings). */
  private settings: UpstreamSettings = { maxConnections: 0, connectTimeoutMs: 0 };

  handle(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, connection: ConnectionInfo): void {
    const url = req.url ?? '/';
    const route = ctx.runtime.router.match(req.headers.host, url);
    const ip = connection.client;
    const identity = identify(req.rawHeaders, connection.trustedPeer);
    const who: Refused = { route, client: ip, path: url, requestId: identity.id };
    const channel: RefusalChannel = { response: res };
    if (ctx.draining) {
      refuse(ctx, who, channel, Errors.SHUTTING_DOWN);
      return;
    }
    // RFC 9112 §3.2: a request with no Host or several is answered 400, as on the upgrade path (validate.ts). The
    // listener turns off node's own bare 400 for a missing Host (requireHostHeader) so that it is answered here.
    if (countHeader(req.rawHeaders, 'host') > 1) {
      refuse(ctx, who, channel, Errors.DUPLICATE_HEADER, 'host');
      return;
    }
    if (!req.headers.host) {
      refuse(ctx, who, channel, Errors.MISSING_HOST);
      return;
    }
    if (!isValidHost(req.headers.host)) {
      refuse(ctx, who, channel, Errors.BAD_HOST);
      return;
    }
    if (req.headers.upgrade !== undefined) {
      // An Upgrade the parser did not treat as one (no "Connection: upgrade") must not reach a backend that might
      // (h2c smuggling): refuse it like any malformed upgrade.
      refuse(ctx, who, channel, Errors.BAD_CONNECTION);
      return;
    }
    if (req.headers['sec-websocket-key'] !== undefined || req.headers['sec-websocket-version'] !== undefined) {
      // A WebSocket handshake without `Upgrade: websocket` is a broken client, not a plain request: say so now
      // instead of proxying it as HTTP.
      refuse(ctx, who, channel, Errors.BAD_UPGRADE);
      return;
    }
    if (isSuspiciousPath(url)) {
      refuse(ctx, who, channel, Errors.BAD_PATH);
      return;
    }
    if (!route) {
      refuse(ctx, who, channel, Errors.NO_ROUTE);
      return;
    }
    if (route.config.http === 'refuse') {
      refuse(ctx, who, channel, Errors.WEBSOCKET_ONLY);
      return;
    }
    // The route's Origin list holds here too, for what a browser marks as cross-site (it sends Origin); a request
    // without one passes, since browsers send none on same-origin GETs (a Socket.IO long poll).
    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(origin, route.config.origins)) {
      refuse(ctx, who, channel, Errors.ORIGIN_NOT_ALLOWED);
      return;
    }
    // The same edge checks as an upgrade: a long-polling fallback must not get around them.
    const edge = checkEdge(ctx.connectionRate, ctx.runtime.config, route.edge, connection, req.socket);
    if (!edge.ok) {
      refuse(ctx, who, channel, edge.entry, edge.detail, edge.headers);
      return;
    }
    const request: PlainRequest = { route, req, res, connection, who, identity, clientCert: edge.clientCert };
    // Nor around the route's token check: the same check as on upgrades.
    if (route.auth === undefined) this.admit(ctx, request, undefined);
    else void this.authenticate(route.auth, ctx, request);
  }

  private async authenticate(auth: RouteAuth, ctx: ProxyContext, request: PlainRequest): Promise<void> {
    const { req, res, who } = request;
    const verdict = await auth.check(req);
    if (!verdict.ok) {
      const logged: Refused = { ...who, path: withoutQuery(req.url ?? '/') };
      refuse(ctx, logged, { response: res }, verdict.entry, verdict.detail, verdict.headers);
      return;
    }
    if (res.destroyed) return;
    // The check took the token out of the target (a query parameter): log the target that goes on.
    this.admit(ctx, { ...request, who: { ...who, path: req.url ?? '/' } }, verdict.claims);
  }

  /** Admission, then the pick and the exchange with the backend. */
  private admit(ctx: ProxyContext, request: PlainRequest, claims: Readonly<Record<string, unknown>> | undefined): void {
    const { route, req, res, connection, who } = request;
    const ip = connection.client;
    const channel: RefusalChannel = { response: res };
    // A request being proxied holds a backend connection: it takes a slot under the same caps as a tunnel (a long
    // poll holds it for as long as the backend waits), given back when its response is done or the client is gone.
    const limits = ctx.runtime.config.limits;
    const refusal = ctx.admission.tryAcquire(ip, limits.maxConnections, limits.maxConnectionsPerIp, res);
    if (refusal) {
      refuse(ctx, who, channel, refusal);
      return;
    }
    const pool = route.pool;
    const { key } = hashKeyOf(
      { headers: req.headers, rawHeaders: req.rawHeaders, url: req.url ?? '/', remoteAddress: ip, claims },
      route.auth?.config.hashKey ?? pool.config.hashKey,
    );
    const keyHash = hashString(key);
    const affinity = affinityOf(ctx, pool, req.rawHeaders);
    const member = affinity?.pinned ?? pool.pickHash(keyHash);
    if (!member) {
      refuse(ctx, who, channel, Errors.NO_HEALTHY_BACKEND);
      return;
    }
    const pick = { member, keyHash, affinity, identity: request.identity };
    const exchange = new Exchange(this, ctx, route, pick, req, res, connection, request.clientCert);
    exchange.send();
  }

  /**
   * What sends a request of `req`'s connection to `member`: the backend's undici pool, built with the current
   * config's limits, or (pools.NAME.proxyProtocol) connections of that client connection's own.
   */
  dispatcherFor(ctx: ProxyContext, member: Member, req: IncomingMessage, connection: ConnectionInfo): Dispatcher {
    const settings = this.upstreamSettings(ctx);
    const preamble = proxyHeaderToBackend(
      member.backend,
      { address: connection.client, port: connection.clientPort ?? 0 },
      connection.destination,
    );
    if (preamble === undefined) return this.upstream.poolFor(member, settings);
    return this.upstream.privateFor(member, settings, req.socket, preamble);
  }

  close(): void {
    this.upstream.close();
  }

  private upstreamSettings(ctx: ProxyContext): UpstreamSettings {
    const config = ctx.runtime.config;
    const current = this.settings;
    if (
      current.maxConnections !== config.limits.maxConnections ||
      current.connectTimeoutMs !== config.timeouts.handshakeMs
    ) {
      this.settings = { maxConnections: config.limits.maxConnections, connectTimeoutMs: config.timeouts.handshakeMs };
    }
    return this.settings;
  }
}

const kExchange = Symbol('wsgate.exchange');
type ExchangeResponse = ServerResponse & { [kExchange]?: Exchange };

/** The backend picked for a request, and what a pick of another one needs. */
interface Pick {
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
class Exchange implements Dispatcher.DispatchHandler {
  private readonly proxy: PlainHttpProxy;
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
    proxy: PlainHttpProxy,
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
      },
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
    if (headers['x-request-id'] !== this.pick.identity.id) out.push('X-Request-Id', this.pick.identity.id);
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

/** How many lines of header `name` (lower-case) a request has. */
function countHeader(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) n++;
  return n;
}
