// Plain (non-upgrade) HTTP on a WebSocket route, e.g. Socket.IO long-polling: proxied with http-proxy-3 to the
// backend the same hash key picks, so a client's polling and WebSocket transports land on one backend.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { ProxyServer } from 'http-proxy-3';
import { type CatalogueEntry, Errors, reasonLabel } from '../errors.js';
import type { ProxyContext } from '../proxy/context.js';
import { hashKeyOf, normaliseIp } from '../routing/hash-key.js';
import { isSuspiciousPath } from '../routing/router.js';

export class PlainHttpProxy {
  private readonly proxy: ProxyServer;
  private readonly httpAgent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 256 });

  constructor() {
    this.proxy = new ProxyServer({ xfwd: true, proxyTimeout: 60_000 });
  }

  handle(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const route = ctx.runtime.router.match(req.headers.host, url);
    const ip = normaliseIp(req.socket.remoteAddress ?? '');
    const refuse = (entry: CatalogueEntry) => {
      ctx.metrics.handshakeRejections.inc({
        route: route?.name ?? '',
        status: String(entry.status),
        reason: reasonLabel(entry),
      });
      respond(res, entry);
    };
    if (ctx.draining) {
      refuse(Errors.SHUTTING_DOWN);
      return;
    }
    if (req.headers.upgrade !== undefined) {
      // An Upgrade the parser did not treat as one (no "Connection: upgrade") must not reach a backend that might
      // (h2c smuggling): refuse it like any malformed upgrade.
      refuse(Errors.BAD_CONNECTION);
      return;
    }
    if (isSuspiciousPath(url)) {
      refuse(Errors.BAD_PATH);
      return;
    }
    if (!route) {
      refuse(Errors.NO_ROUTE);
      return;
    }
    const pool = route.pool;
    const { key } = hashKeyOf({ headers: req.headers, url, remoteAddress: ip }, pool.config.hashKey);
    const member = pool.pick(key);
    if (!member) {
      refuse(Errors.NO_HEALTHY_BACKEND);
      return;
    }
    const b = member.backend;
    const target = `${b.tls ? 'https' : 'http'}://${b.host.includes(':') ? `[${b.host}]` : b.host}:${b.port}`;
    this.proxy.web(req, res, { target, agent: b.tls ? this.httpsAgent : this.httpAgent }, (err) => {
      ctx.metrics.upstreamErrors.inc({ pool: pool.name, backend: b.id, reason: 'http_proxy' });
      route.log.warn(
        { event: 'http_proxy_error', backend: b.id, err: (err as Error).message },
        'plain HTTP proxy error',
      );
      if (!res.headersSent) respond(res, Errors.UPSTREAM_CONNECT_FAILED);
      else res.destroy();
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    this.proxy.close();
  }
}

function respond(res: ServerResponse, entry: CatalogueEntry): void {
  const body = `${entry.message}\n`;
  res.writeHead(entry.status ?? 500, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Wsgate-Error': entry.code,
    Connection: 'close',
  });
  res.end(body);
}
