// A backend for pool tests that can be killed and brought back on the same address: a `ws` server that names
// itself on connect and echoes, plus an HTTP health endpoint whose status a test sets.

import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';

export interface PoolBackend {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** Status GET /health answers; 200 by default. */
  healthStatus: number;
  /** Health requests seen. */
  healthChecks: number;
  /** WebSocket connections accepted since start. */
  connections: number;
  /** Closes the listener and destroys every connection at the TCP level (a crashed process). */
  kill(): Promise<void>;
}

export function startPoolBackend(id: string, options: { host?: string; port?: number } = {}): Promise<PoolBackend> {
  const host = options.host ?? '127.0.0.1';
  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res) => {
    if (req.url === '/health') backend.healthChecks++;
    res.writeHead(req.url === '/health' ? backend.healthStatus : 200, { 'Content-Type': 'text/plain' });
    res.end(id);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    backend.connections++;
    ws.on('error', () => {});
    ws.send(JSON.stringify({ backend: id }));
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const backend = {
    id,
    host,
    port: 0,
    url: '',
    healthStatus: 200,
    healthChecks: 0,
    connections: 0,
    kill: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        wss.close();
        server.close(() => resolve());
      }),
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      backend.port = (server.address() as AddressInfo).port;
      backend.url = `ws://${host}:${backend.port}`;
      resolve(backend);
    });
  });
}
