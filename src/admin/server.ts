// The admin listener: /metrics (Prometheus text), /healthz (process alive), /readyz (listeners bound, config
// loaded, not draining). Binds 127.0.0.1 by default.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AdminState {
  ready(): boolean;
  metricsText(): Promise<string>;
  readonly metricsContentType: string;
}

export class AdminServer {
  readonly server: Server;
  private readonly state: AdminState;

  constructor(state: AdminState) {
    this.state = state;
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: Error) => send(res, 500, `internal error: ${err.message}\n`));
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
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    switch (path) {
      case '/metrics':
        return send(res, 200, await this.state.metricsText(), this.state.metricsContentType);
      case '/healthz':
        return send(res, 200, 'ok\n');
      case '/readyz':
        return this.state.ready() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n');
      default:
        return send(res, 404, 'not found\n');
    }
  }
}

function send(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
