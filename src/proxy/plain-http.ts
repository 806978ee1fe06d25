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
import { Errors } from '../errors.js';
import { isValidHost, originAllowed } from '../handshake/validate.js';
import { UpstreamClient, type UpstreamSettings } from '../http/upstream-client.js';
import type { ConnectionInfo } from '../listen/client-address.js';
import type { Member } from '../pool/pool.js';
import { hashString } from '../routing/hash.js';
import { hashKeyOf } from '../routing/hash-key.js';
import { isSuspiciousPath } from '../routing/router.js';
import { proxyHeaderToBackend } from '../upstream/proxy-header.js';
import { identify, type RequestIdentity } from '../upstream/request-id.js';
import { affinityOf } from './affinity.js';
import type { ProxyContext } from './context.js';
import { Exchange } from './plain-http-exchange.js';
import { type RefusalChannel, type Refused, refuse, withoutQuery } from './refuse.js';
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

/** How many lines of header `name` (lower-case) a request has. */
function countHeader(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) n++;
  return n;
}
