// Plain (non-upgrade) HTTP on a WebSocket route, e.g. Socket.IO long-polling: proxied with http-proxy-3 to the
// backend the same hash key picks, so a client's polling and WebSocket transports land on one backend.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { ProxyServer } from 'http-proxy-3';
import type { BackendConfig, UpstreamTls } from '../config/types.js';
import { type CatalogueEntry, Errors, reasonLabel } from '../errors.js';
import type { ProxyContext } from '../proxy/context.js';
import { hashKeyOf, normaliseIp } from '../routing/hash-key.js';
import { isSuspiciousPath } from '../routing/router.js';
import { upstreamTlsOptions } from '../upstream/tls.js';

export class PlainHttpProxy {
  private readonly proxy: ProxyServer;
  private readonly httpAgent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 256 });
  private readonly tlsAgents = new Map<UpstreamTls, HttpsAgent>();

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
    if (req.headers['sec-websocket-key'] !== undefined || req.headers['sec-websocket-version'] !== undefined) {
      // A WebSocket handshake without `Upgrade: websocket` is a broken client, not a plain request: say so now
      // instead of proxying it as HTTP.
      refuse(Errors.BAD_UPGRADE);
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
    const { key } = hashKeyOf(
      { headers: req.headers, rawHeaders: req.rawHeaders, url, remoteAddress: ip },
      pool.config.hashKey,
    );
    const member = pool.pick(key);
    if (!member) {
      refuse(Errors.NO_HEALTHY_BACKEND);
      return;
    }
    const b = member.backend;
    const host = b.host.includes(':') ? `[${b.host}]` : b.host;
    const options = b.tls ? this.httpsOptions(b, host) : { target: `http://${host}:${b.port}`, agent: this.httpAgent };
    this.proxy.web(req, res, options, (err) => {
      ctx.metrics.upstreamErrors.inc({ pool: pool.name, backend: b.id, reason: 'http_proxy' });
      route.log.warn(
        { event: 'http_proxy_error', backend: b.id, err: (err as Error).message },
        'plain HTTP proxy error',
      );
      if (!res.headersSent) respond(res, Errors.UPSTREAM_CONNECT_FAILED);
      else res.destroy();
    });
  }

  /** An https target verified like the WebSocket upstream (pools.NAME.tls: CA, name, or no verification). */
  private httpsOptions(b: BackendConfig, host: string) {
    return {
      target: { protocol: 'https:', host, port: b.port },
      secure: b.tlsOptions?.rejectUnauthorized ?? true,
      agent: this.httpsAgentFor(b),
    };
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
        maxSockets: 256,
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
