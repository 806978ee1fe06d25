// Plain (non-upgrade) HTTP on a WebSocket route, e.g. Socket.IO long-polling: proxied to the backend the same hash
// key picks, so a client's polling and WebSocket transports land on one backend. Each request is one node:http
// client request whose head is built like the upgrade path's (src/upstream/request.ts): the target byte-exact
// (RFC 9110 §7.7), hop-by-hop headers dropped both ways, the forwarding headers ours, a chunked body sent chunked
// (never re-framed), and the client's X-Forwarded-* never trusted.

import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { BackendConfig, UpstreamTls } from '../config/types.js';
import { Errors } from '../errors.js';
import { isValidHost, originAllowed } from '../handshake/validate.js';
import type { Member } from '../pool/pool.js';
import { hashKeyOf, normaliseIp } from '../routing/hash-key.js';
import { isSuspiciousPath } from '../routing/router.js';
import { endToEndHeaders, forwardedHeaders } from '../upstream/request.js';
import { upstreamTlsOptions } from '../upstream/tls.js';
import type { ProxyContext } from './context.js';
import { answerWithEntry, type RefusalChannel, type Refused, refuse } from './refuse.js';
import type { RouteRuntime } from './runtime.js';

export class PlainHttpProxy {
  // No maxSockets cap (node's default is none; nginx has none either). A long poll holds its backend socket until
  // the backend answers (Socket.IO: up to pingInterval, 25 s), and a request queued behind a cap has no socket, so
  // no timeout runs for it: with 256 polls held, the 257th request would wait as long as they do. The sockets are
  // bounded anyway: node:http serves one request per client connection at a time, each request takes an admission
  // slot (limits.maxConnections, maxConnectionsPerIp), and idle kept-alive sockets are capped by maxFreeSockets.
  private readonly httpAgent = new Agent({ keepAlive: true });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true });
  private readonly tlsAgents = new Map<UpstreamTls, HttpsAgent>();

  handle(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, secure: boolean): void {
    const url = req.url ?? '/';
    const route = ctx.runtime.router.match(req.headers.host, url);
    const ip = normaliseIp(req.socket.remoteAddress ?? '');
    const who: Refused = { route, client: ip, path: url };
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
    // The route's Origin list holds here too, for what a browser marks as cross-site (it sends Origin); a request
    // without one passes, since browsers send none on same-origin GETs (a Socket.IO long poll).
    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(origin, route.config.origins)) {
      refuse(ctx, who, channel, Errors.ORIGIN_NOT_ALLOWED);
      return;
    }
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
      { headers: req.headers, rawHeaders: req.rawHeaders, url, remoteAddress: ip },
      pool.config.hashKey,
    );
    const member = pool.pick(key);
    if (!member) {
      refuse(ctx, who, channel, Errors.NO_HEALTHY_BACKEND);
      return;
    }
    this.forward({ ctx, route, member, req, res, ip, url, secure }, true);
  }

  /**
   * One request to the backend. A kept-alive backend socket the backend closed just as it was reused fails with a
   * reset before any answer: a request that has no body and is safe to repeat (RFC 9110 §9.2.2) is then sent once
   * more on a fresh connection (node's documented use of request.reusedSocket; nginx does the same), instead of
   * answering 502 for a race the client had no part in.
   */
  private forward(x: Exchange, mayRetry: boolean): void {
    const { ctx, route, member, req, res, ip, url } = x;
    const pool = route.pool;
    const b = member.backend;
    const upstream = (b.tls ? httpsRequest : httpRequest)({
      host: b.host,
      port: b.port,
      method: req.method,
      path: url,
      // An array is sent as it is (node adds only its own Connection: keep-alive): nothing merged or re-cased.
      headers: forwardedHeaders(req, { clientAddress: ip, secure: x.secure }),
      agent: b.tls ? this.httpsAgentFor(b) : this.httpAgent,
    });

    // What went wrong decides the answer and the metric, as on the upgrade path: the backend connection idle for
    // timeouts.idle (a long poll's wait included) is 504; a failed dial 502 "connect"; a reset after it 502 "reset".
    let connected = false;
    let timedOut = false;
    let badAnswer = false;
    let answered = false;
    let done = false;
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      upstream.destroy();
      if (mayRetry && upstream.reusedSocket && !answered && !timedOut && isRepeatable(req)) {
        this.forward(x, false);
        return;
      }
      const [entry, reason] = timedOut
        ? [Errors.UPSTREAM_TIMEOUT, 'timeout']
        : badAnswer
          ? [Errors.UPSTREAM_BAD_RESPONSE, 'bad_response']
          : connected
            ? [Errors.UPSTREAM_BAD_RESPONSE, 'reset']
            : [Errors.UPSTREAM_CONNECT_FAILED, 'connect'];
      ctx.metrics.upstreamErrors.inc({ pool: pool.name, backend: b.id, reason });
      // A backend that cannot be reached counts toward its passive ejection, as on the upgrade path. A timeout does
      // not: a long poll may rightly keep its backend quiet for as long as the backend's poll interval.
      if (reason === 'connect') pool.reportFailure(member);
      route.log.warn(
        { event: 'upstream_failed', backend: b.id, reason, detail: err.message, client: ip, path: url.slice(0, 200) },
        'plain HTTP request to backend failed',
      );
      if (!res.headersSent) answerWithEntry(res, entry);
      else res.destroy();
    };
    upstream.on('socket', (socket: Socket) => {
      // A kept-alive socket is connected already; a new one once its TCP (and TLS) handshake is done.
      if (!socket.connecting) connected = true;
      else socket.once(b.tls ? 'secureConnect' : 'connect', () => (connected = true));
    });
    const timeoutMs = ctx.runtime.config.timeouts.idleMs;
    const onTimeout = () => {
      // Quiet because the client reads slowly (the answer is paused until it drains), not because the backend is:
      // wait another period.
      if (res.writableNeedDrain) {
        upstream.setTimeout(timeoutMs, onTimeout);
        return;
      }
      timedOut = true;
      upstream.destroy(new Error(`no data from the backend for ${timeoutMs} ms`));
    };
    upstream.setTimeout(timeoutMs, onTimeout);
    upstream.on('error', fail);
    upstream.on('response', (answer: IncomingMessage) => {
      answered = true;
      try {
        res.writeHead(
          answer.statusCode ?? 502,
          answer.statusMessage,
          endToEndHeaders(answer.rawHeaders, answer.headers.connection),
        );
      } catch (err) {
        // node's client accepts status lines its server will not write (a status below 100, a control character
        // in the reason): a bad answer, 502, never an exception out of this handler (it would end the process).
        badAnswer = true;
        res.statusMessage = ''; // writeHead kept the bad one: our own 502 must not reuse it
        answer.destroy();
        fail(err as Error);
        return;
      }
      pool.reportSuccess(member);
      // pipe, not stream.pipeline: pipeline aborts an AbortController of its own when it ends, which builds a
      // DOMException with its stack on every request.
      answer.on('error', fail);
      answer.on('end', () => {
        done = true;
      });
      answer.pipe(res);
    });
    // The client went away (reset, or closed before the whole answer): nobody to answer, and the backend's
    // socket, mid-exchange, cannot be reused: drop it. Not counted as a backend failure.
    res.on('close', () => {
      // Answered before the client finished its body (a 401 or 413 before reading it): the rest of the upload is
      // for nobody. The backend connection must not outlive the request's admission slot, and what the client
      // still sends is read and dropped, as node does for a request nobody reads (the connection stays usable).
      if (!upstream.writableFinished) {
        req.unpipe(upstream);
        req.resume();
        upstream.destroy();
      }
      if (res.writableFinished || done) return;
      done = true;
      upstream.destroy();
    });
    if (isRepeatable(req)) {
      // No body: nothing to stream, so the request can be sent again as it is.
      req.resume();
      upstream.end();
      return;
    }
    // A client reset mid-body is seen by res 'close' above; the request stream's own error adds nothing.
    req.on('error', ignoreClientAbort);
    req.pipe(upstream);
  }

  /**
   * Agents carry the TLS settings (node merges agent options over request options), so the SNI name and CA of
   * pools.NAME.tls apply here too; one agent per pool TLS setting, the shared one without.
   */
  private httpsAgentFor(b: BackendConfig): HttpsAgent {
    const settings = b.tlsOptions;
    if (settings === undefined) return this.httpsAgent;
    let agent = this.tlsAgents.get(settings);
    if (!agent) {
      const tls = upstreamTlsOptions(b);
      agent = new HttpsAgent({
        keepAlive: true,
        rejectUnauthorized: tls.rejectUnauthorized,
        ...(tls.ca === undefined ? {} : { ca: tls.ca }),
        ...(tls.servername === undefined ? {} : { servername: tls.servername }),
      });
      this.tlsAgents.set(settings, agent);
    }
    return agent;
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    for (const agent of this.tlsAgents.values()) agent.destroy();
  }
}

/** One plain request on its way: what forward() needs to send it, and again for a retry. */
interface Exchange {
  readonly ctx: ProxyContext;
  readonly route: RouteRuntime;
  readonly member: Member;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly ip: string;
  readonly url: string;
  readonly secure: boolean;
}

/** Safe to send twice and without a body (RFC 9110 §9.2.1): GET, HEAD and OPTIONS with no Content-Length above 0. */
function isRepeatable(req: IncomingMessage): boolean {
  const method = req.method;
  if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

function ignoreClientAbort(): void {}

/** How many lines of header `name` (lower-case) a request has. */
function countHeader(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) n++;
  return n;
}
