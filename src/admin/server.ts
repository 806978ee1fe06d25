// The admin listener (127.0.0.1 by default): /metrics (Prometheus text), /healthz (process alive), /readyz (bound,
// config loaded, not shutting down), POST /reload, the JSON API (docs/admin-api.md: status, pools and their
// backends' runtime control, live connections) and GET / (the status page, one self-contained HTML file polling
// /api/status). With admin.token set, /reload and /api/* need
// `Authorization: Bearer <token>`; probes and /metrics stay open so kubelets and Prometheus need no secret.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ConnectionFilter } from '../gateway/connections.js';
import { type BackendChange, parseBackendChange } from '../pool/admin-state.js';
import { readJsonBody } from './request-body.js';

/** What a reload asked for by POST /reload came to; sent whole as JSON to a client that accepts it. */
export type ReloadAnswer =
  | { readonly ok: true; readonly status: number; readonly generation: number; readonly unchanged: boolean }
  | { readonly ok: false; readonly status: number; readonly errors: readonly string[] };

/** What the admin listener serves; the control plane (src/control/) implements it. */
export interface AdminApi {
  ready(): boolean;
  metrics(): Promise<{ readonly text: string; readonly contentType: string }>;
  status(): Promise<unknown>;
  reload(): Promise<ReloadAnswer>;
  /** The bearer token required for /reload and /api/*, read per request so a reload can change it. */
  token(): string | undefined;
  /** GET /api/pools. */
  pools(): Promise<unknown>;
  /** POST /api/pools/{pool}/backends/{backend}: the backend's new state, or why there is no such backend. */
  controlBackend(
    pool: string,
    backend: string,
    change: BackendChange,
  ): Promise<{ readonly ok: true; readonly backend: unknown } | { readonly ok: false; readonly error: string }>;
  /** GET /api/connections: live tunnels, optionally of one backend, at most `limit`. */
  connections(filter: ConnectionFilter): Promise<unknown>;
}

/** GET /api/connections lists this many tunnels unless `limit` says otherwise, and never more than the maximum. */
export const DEFAULT_CONNECTIONS_LIMIT = 100;
export const MAX_CONNECTIONS_LIMIT = 10_000;

const BACKEND_PATH = /^\/api\/pools\/([^/]+)\/backends\/([^/]+)$/;

export class AdminServer {
  readonly server: Server;
  private readonly state: AdminApi;

  constructor(state: AdminApi) {
    this.state = state;
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: Error) => {
        if (!res.headersSent) send(res, 500, `internal error: ${err.message}\n`);
        else res.destroy();
      });
    });
  }

  listen(port: number, address: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ port, host: address }, () => {
        this.server.removeListener('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/reload') {
      if (req.method !== 'POST') return send(res, 405, 'use POST /reload\n', TEXT, { Allow: 'POST' });
      req.resume(); // a body, if any, is not used
      if (!this.authorized(req)) return unauthorized(res);
      return this.reload(req, res);
    }
    if (path?.startsWith('/api/')) {
      // A wrong method is answered before any auth question, as for the other routes.
      const allow = BACKEND_PATH.test(path) ? 'POST' : 'GET, HEAD';
      if (!allow.split(', ').includes(req.method ?? '')) {
        req.resume();
        const hint = allow === 'POST' ? 'use POST with {"state": …} or {"weight": …}\n' : 'method not allowed\n';
        return send(res, 405, hint, TEXT, { Allow: allow });
      }
      if (!this.authorized(req)) {
        req.resume();
        return unauthorized(res);
      }
      return this.api(req, res, path);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, 405, 'method not allowed\n', TEXT, { Allow: 'GET, HEAD' });
    }
    switch (path) {
      case '/':
        return sendPage(res);
      case '/metrics': {
        const metrics = await this.state.metrics();
        return send(res, 200, metrics.text, metrics.contentType);
      }
      case '/healthz':
        return send(res, 200, 'ok\n');
      case '/readyz':
        return this.state.ready() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n');
      default:
        return send(res, 404, 'not found\n');
    }
  }

  /** The JSON API, once authorized. */
  private async api(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const backend = BACKEND_PATH.exec(path);
    if (backend) {
      return this.controlBackend(
        req,
        res,
        decodeURIComponent(backend[1] as string),
        decodeURIComponent(backend[2] as string),
      );
    }
    req.resume(); // the other routes take no body
    switch (path) {
      case '/api/status':
        return sendJson(res, 200, await this.state.status());
      case '/api/pools':
        return sendJson(res, 200, await this.state.pools());
      case '/api/connections': {
        const query = new URL(req.url ?? '/', 'http://admin').searchParams;
        const limitText = query.get('limit');
        const limit = limitText === null ? DEFAULT_CONNECTIONS_LIMIT : Number(limitText);
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_CONNECTIONS_LIMIT) {
          return sendJson(res, 400, { errors: [`limit: expected a whole number from 1 to ${MAX_CONNECTIONS_LIMIT}`] });
        }
        return sendJson(res, 200, await this.state.connections({ backend: query.get('backend') ?? undefined, limit }));
      }
      default:
        return sendJson(res, 404, { error: `no API route ${path}` });
    }
  }

  private async controlBackend(
    req: IncomingMessage,
    res: ServerResponse,
    pool: string,
    backend: string,
  ): Promise<void> {
    const body = await readJsonBody(req);
    if (!body.ok) return sendJson(res, body.status, { errors: [body.error] });
    const parsed = parseBackendChange(body.value);
    if (!parsed.ok) return sendJson(res, 400, { errors: parsed.errors });
    const result = await this.state.controlBackend(pool, backend, parsed.change);
    if (!result.ok) return sendJson(res, 404, { error: result.error });
    return sendJson(res, 200, result.backend);
  }

  private async reload(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const outcome = await this.state.reload();
    if (wantsJson(req)) return sendJson(res, outcome.status, outcome);
    if (outcome.ok) {
      const what = outcome.unchanged ? 'unchanged' : 'applied';
      return send(res, 200, `reloaded: configuration generation ${outcome.generation} ${what}\n`);
    }
    return send(res, outcome.status, `reload failed:\n${outcome.errors.join('\n')}\n`);
  }

  private authorized(req: IncomingMessage): boolean {
    const token = this.state.token();
    if (token === undefined) return true;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer +(\S+)\s*$/i.exec(header);
    // Compare digests: equal length whatever was sent, and constant time.
    return match !== null && timingSafeEqual(digest(match[1] as string), digest(token));
  }
}

const TEXT = 'text/plain; charset=utf-8';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function wantsJson(req: IncomingMessage): boolean {
  return (req.headers.accept ?? '').includes('application/json');
}

function unauthorized(res: ServerResponse): void {
  send(res, 401, 'admin token required: Authorization: Bearer <admin.token>\n', TEXT, {
    'WWW-Authenticate': 'Bearer realm="wsgate admin"',
  });
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = TEXT,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, `${JSON.stringify(value, null, 2)}\n`, 'application/json; charset=utf-8');
}

interface Page {
  readonly html: string;
  readonly csp: string;
}
let page: Page | undefined;

/**
 * The status page, read once. tsc does not copy HTML into dist/, so next to this module (source, or a build
 * that copied it, like the Dockerfile's) comes first, then the package's src/admin/.
 */
function statusPage(): Page {
  if (page) return page;
  const candidates = [
    new URL('./status-page.html', import.meta.url),
    new URL('../../../src/admin/status-page.html', import.meta.url),
  ];
  let html: string | undefined;
  for (const url of candidates) {
    try {
      html = readFileSync(url, 'utf8');
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  if (html === undefined) throw new Error('status-page.html not found next to the admin module or in src/admin/');
  // Only the page's own inline script and style may run: pin them by hash.
  const hashes = (tag: string) =>
    [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))]
      .map(
        (m) =>
          `'sha256-${createHash('sha256')
            .update(m[1] as string)
            .digest('base64')}'`,
      )
      .join(' ');
  const csp = [
    "default-src 'none'",
    `script-src ${hashes('script')}`,
    `style-src ${hashes('style')}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  page = { html, csp };
  return page;
}

function sendPage(res: ServerResponse): void {
  const { html, csp } = statusPage();
  send(res, 200, html, 'text/html; charset=utf-8', {
    'Content-Security-Policy': csp,
    'Referrer-Policy': 'no-referrer',
  });
}
