// One WebSocket connection's way through wsgate, stage by stage: validate (RFC 6455 §4.2.1) → route → origin →
// edge (access lists, client certificate, connection rate) → token (routes[].auth.jwt) → admission → pick backend
// (affinity cookie, else hash key) → upstream handshake (retrying the next ring member) → tunnel.
// A stage that refuses answers the client itself with a real status, logs one line, bumps one counter.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { checkEdge } from '../access/edge.js';
import type { AuthVerdict } from '../access/jwt/route-auth.js';
import { Endings, Errors, reasonLabel } from '../errors.js';
import { acceptFor } from '../handshake/accept.js';
import type { UpgradeRequest } from '../handshake/upgrade-head.js';
import { originAllowed, validateUpgrade } from '../handshake/validate.js';
import { withHeaderLine, withHeaderSet } from '../http/headers.js';
import type { ConnectionInfo } from '../listen/client-address.js';
import { targetForLog } from '../observe/redact.js';
import { directWriteFd, writeChunk } from '../platform/socket-io.js';
import { MAX_ATTEMPTS, type Member } from '../pool/pool.js';
import { hashString } from '../routing/hash.js';
import { hashKeyOf } from '../routing/hash-key.js';
import { isSuspiciousPath } from '../routing/router.js';
import { deadlineFor } from '../tunnel/lifetime.js';
import { Tunnel } from '../tunnel/tunnel.js';
import { type AttemptResult, attemptUpstream } from '../upstream/handshake.js';
import { proxyHeaderToBackend } from '../upstream/proxy-header.js';
import { upstreamRequestHead } from '../upstream/request.js';
import { identify } from '../upstream/request-id.js';
import { affinityOf, setCookieFor } from './affinity.js';
import type { ProxyContext } from './context.js';
import { bodyFraming, relayRefusal } from './refusal-relay.js';
import { type Refused, refuse, withoutQuery } from './refuse.js';
import type { RouteRuntime } from './runtime.js';
import { bindingFor } from './tunnel-binding.js';

export async function handleUpgrade(
  ctx: ProxyContext,
  req: UpgradeRequest,
  socket: Duplex,
  head: Buffer,
  connection: ConnectionInfo,
): Promise<void> {
  const client = socket as ClientSocket;
  client.on('error', ignoreError);
  const runtime = ctx.runtime;
  const { secure, client: ip } = connection;
  let url = req.url ?? '/';
  const route = runtime.router.match(req.headers.host, url);
  const identity = identify(req.rawHeaders, connection.trustedPeer);
  const requestId = identity.id;
  let who: Refused = { route, client: ip, path: url, requestId };
  const channel = { socket: client };

  if (ctx.draining) return refuse(ctx, who, channel, Errors.SHUTTING_DOWN);
  const check = validateUpgrade(req);
  if (!check.ok) {
    const extra = check.error === Errors.BAD_VERSION ? { 'Sec-WebSocket-Version': '13' } : undefined;
    return refuse(ctx, who, channel, check.error, undefined, extra);
  }
  if (isSuspiciousPath(url)) return refuse(ctx, who, channel, Errors.BAD_PATH);
  if (!route) return refuse(ctx, who, channel, Errors.NO_ROUTE);
  if (!originAllowed(req.headers.origin, route.config.origins)) {
    return refuse(ctx, who, channel, Errors.ORIGIN_NOT_ALLOWED);
  }
  const edge = checkEdge(ctx.connectionRate, runtime.config, route.edge, connection, client);
  if (!edge.ok) return refuse(ctx, who, channel, edge.entry, edge.detail, edge.headers);
  let auth: Extract<AuthVerdict, { ok: true }> | undefined;
  if (route.auth !== undefined) {
    // The token is checked, and taken out of the request, before anything is spent on the connection.
    const verdict = await route.auth.check(req);
    if (!verdict.ok) {
      const logged = { ...who, path: withoutQuery(url) };
      return refuse(ctx, logged, channel, verdict.entry, verdict.detail, verdict.headers);
    }
    if (client.destroyed) return;
    auth = verdict;
    url = req.url ?? '/';
    who = { ...who, path: url };
  }
  const limits = runtime.config.limits;
  const refusal = ctx.admission.tryAcquire(ip, limits.maxConnections, limits.maxConnectionsPerIp, client);
  if (refusal) return refuse(ctx, who, channel, refusal);

  // The admission slot is held until the client socket closes, however this ends. The client stays paused until
  // the 101: anything it sends early waits in its socket (TCP backpressure bounds it), and never reaches a backend
  // that does not switch protocols. A FIN or close meanwhile means there is nobody to tunnel for.
  client[kGone] = false;
  client.pause();
  client.on('end', onClientGone);
  client.on('close', onClientGone);

  const pool = route.pool;
  const keySpec = route.auth?.config.hashKey ?? pool.config.hashKey;
  const hashKey = hashKeyOf(
    { headers: req.headers, rawHeaders: req.rawHeaders, url, remoteAddress: ip, claims: auth?.claims },
    keySpec,
  );
  if (hashKey.fellBack && keySpec.kind !== 'ip') ctx.metrics.hashKeyFallbacks.inc({ route: route.name });
  // Header strings hold the bytes as latin1 (one char per byte): encoding back as latin1 forwards them
  // byte-exact (utf8 would turn one obs-text byte such as 0xE9 into two). Encoded once for all attempts.
  const stickyCookie = pool.sticky?.spec.cookie;
  const forward = { clientAddress: ip, secure, stickyCookie, identity, clientCert: edge.clientCert };
  const requestHead = Buffer.from(upstreamRequestHead(req, forward), 'latin1');
  const expectedAccept = acceptFor(check.key);
  const timeoutMs = runtime.config.timeouts.handshakeMs;

  const keyHash = hashString(hashKey.key);
  const clientEndpoint = { address: ip, port: connection.clientPort ?? 0 };
  const affinity = affinityOf(ctx, pool, req.rawHeaders);
  // Members, not indexes: a reload or a DNS answer during the attempts renumbers the pool's members.
  const tried: Member[] = [];
  let last: AttemptResult | undefined;
  let member: Member | undefined;
  // A connection its affinity cookie pinned goes to that backend or fails: its session lives there.
  const attempts = affinity?.pinned ? 1 : Math.min(MAX_ATTEMPTS, pool.members.length);
  for (let i = 0; i < attempts && !client[kGone]; i++) {
    // The ring leaves unhealthy and ejected members out (within the panic threshold), so picks skip them.
    member =
      tried.length === 0
        ? (affinity?.pinned ?? pool.pickHash(keyHash, NOTHING_TRIED))
        : pool.pickHash(keyHash, tried.map(indexOf));
    if (!member) break;
    tried.push(member);
    const started = performance.now();
    const preamble = proxyHeaderToBackend(member.backend, clientEndpoint, connection.destination);
    last = await attemptUpstream(member.backend, requestHead, expectedAccept, timeoutMs, preamble);
    if (last.kind === 'failed') {
      pool.reportFailure(member);
      ctx.metrics.upstreamErrors.inc({ pool: pool.name, backend: member.backend.id, reason: last.reason });
      route.log.warn(
        {
          event: 'upstream_failed',
          backend: member.backend.id,
          reason: last.reason,
          detail: last.detail,
          client: ip,
          requestId,
        },
        'backend attempt failed',
      );
      if (last.retryable) continue;
      break;
    }
    pool.reportSuccess(member);
    bindingFor(ctx, route, pool, member)
      .current()
      .handshakeTimes.observe((performance.now() - started) / 1000);
    break;
  }
  client.removeListener('end', onClientGone);
  client.removeListener('close', onClientGone);

  if (client[kGone] || client.destroyed) {
    if (last && last.kind !== 'failed') last.socket.destroy();
    client.destroy();
    return;
  }
  if (ctx.draining) {
    // Shutdown began while the backend answered: no new tunnel may start after the drain took its snapshot.
    if (last && last.kind !== 'failed') last.socket.destroy();
    return refuse(ctx, who, channel, Errors.SHUTTING_DOWN);
  }
  if (!member && !last) return refuse(ctx, who, channel, Errors.NO_HEALTHY_BACKEND);
  if (!last || last.kind === 'failed') {
    // The last attempt decides: timeouts answer 504, connect errors and bad answers 502.
    return refuse(ctx, who, channel, last?.error ?? Errors.UPSTREAM_CONNECT_FAILED, last?.detail);
  }
  if (last.kind === 'refused') return relayBackendRefusal(ctx, { ...who, route, requestId }, client, last);

  // Verified 101: answer the client with the backend's own head, then tunnel.
  const backendSocket = last.socket;
  const selected = member as Member;
  const setCookie = setCookieFor(pool, affinity, selected, secure);
  let answer = setCookie === undefined ? last.head.raw : withHeaderLine(last.head.raw, 'Set-Cookie', setCookie);
  // The client offered only the token's protocol entries: a 101 naming none would fail in clients that insist on
  // one of theirs (RFC 6455 §4.1), so it names the marker entry, which the client did offer.
  if (auth?.protocolReply !== undefined && !last.head.headers.has('sec-websocket-protocol')) {
    answer = withHeaderLine(answer, 'Sec-WebSocket-Protocol', auth.protocolReply);
  }
  answer = withRequestId(answer, last.head.headers, requestId);
  writeChunk(client, directWriteFd(client), answer);
  const binding = bindingFor(ctx, route, pool, selected);
  const children = binding.current();
  children.active++;
  children.total++;
  route.stats.opened++;
  const routeConfig = route.config;
  const timeouts = runtime.config.timeouts;
  const tunnel = new Tunnel(client, backendSocket, binding, {
    stats: route.stats,
    protocol: routeConfig.protocol,
    limits: routeConfig.limits,
    rsv1Allowed: negotiatedDeflate(last.head.headers.get('sec-websocket-extensions')),
    clientAddress: ip,
    requestId,
    keyHash,
    idleMs: timeouts.idleMs,
    keepalive: routeConfig.keepalive,
    deadline: deadlineFor(performance.now(), timeouts.maxLifetimeMs, timeouts.maxLifetimeJitter, auth?.expiresInMs),
  });
  pool.acquire(selected, tunnel, affinity?.pinned === selected);
  ctx.tunnels.add(tunnel);
  // The tunnel handles errors now; one listener per event keeps the emitter from growing an array per socket.
  client.removeListener('error', ignoreError);
  if (route.log.isLevelEnabled('info')) {
    route.log.info(
      {
        event: 'open',
        backend: selected.backend.id,
        client: ip,
        path: targetForLog(url, runtime.config.log.redact),
        attempts: tried.length,
        requestId,
        ...(identity.traceparent === undefined ? {} : { traceparent: identity.traceparent }),
      },
      'connection opened',
    );
  }
  tunnel.forwardEarly(false, last.rest);
  tunnel.forwardEarly(true, head);
  tunnel.start();
  // A reload during the backend handshake may have removed this route: the drain did not see this tunnel yet.
  if (ctx.runtime !== runtime && !ctx.runtime.keepsConnectionsOf(route)) {
    tunnel.closeWith(Endings.ROUTE_REMOVED);
  }
}

const NOTHING_TRIED: readonly number[] = [];

function indexOf(member: Member): number {
  return member.index;
}

const kGone = Symbol('wsgate.clientGone');
/** A client socket during the backend handshake: kGone is set once it ended or closed. */
type ClientSocket = Socket & { [kGone]?: boolean };

function onClientGone(this: ClientSocket): void {
  this[kGone] = true;
}

/** A non-101 answer goes to the client as it came (refusal-relay.ts), then both sockets close. */
function relayBackendRefusal(
  ctx: ProxyContext,
  who: Refused & { route: RouteRuntime; requestId: string },
  client: Socket,
  result: Extract<AttemptResult, { kind: 'refused' }>,
): void {
  const framing = bodyFraming(result.head);
  if (framing.kind === 'invalid') {
    // RFC 9112 §6.3: a proxy must not guess where such a body ends; it answers 502 instead.
    result.socket.destroy();
    refuse(ctx, who, { socket: client }, Errors.UPSTREAM_BAD_RESPONSE, 'invalid Content-Length in refusal');
    return;
  }
  const status = result.head.status;
  const route = who.route;
  const reason = reasonLabel(Errors.BACKEND_REFUSED);
  ctx.metrics.handshakeRejections.inc({ route: route.name, status: String(status), reason });
  route.log.info(
    { event: 'rejected', status, code: reason, client: who.client, requestId: who.requestId },
    Errors.BACKEND_REFUSED.message,
  );
  const head = withRequestId(result.head.raw, result.head.headers, who.requestId);
  relayRefusal(client, result.socket, head, result.rest, framing, ctx.runtime.config.timeouts.handshakeMs);
}

/**
 * A backend's answer head with the request's id as its one X-Request-Id: kept as it is when the backend echoed that
 * very id; any other id of the backend's is replaced, so the client, the backend's request and our logs agree.
 */
function withRequestId(head: Buffer, headers: { get(name: string): string | undefined }, requestId: string): Buffer {
  const echoed = headers.get('x-request-id');
  if (echoed === requestId) return head;
  return echoed === undefined
    ? withHeaderLine(head, 'X-Request-Id', requestId)
    : withHeaderSet(head, 'X-Request-Id', requestId);
}

function ignoreError(): void {}

/** permessage-deflate in the backend's 101 means RSV1 may be set on first frames (RFC 7692 §6). */
function negotiatedDeflate(extensions: string | undefined): boolean {
  if (extensions === undefined) return false;
  // A list of `name; params` items (repeated header lines arrive joined with ", "): match the name, not a substring.
  for (const item of extensions.split(',')) {
    const semicolon = item.indexOf(';');
    if ((semicolon < 0 ? item : item.slice(0, semicolon)).trim().toLowerCase() === 'permessage-deflate') return true;
  }
  return false;
}
