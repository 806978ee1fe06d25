// A backend that speaks PROXY protocol (as one behind `pools.NAME.proxyProtocol` would): each connection's header
// first, then HTTP and WebSocket as usual. It names itself on every WebSocket connection, echoes messages, and
// records, per connection, the header and the X-Forwarded-For of each request.

import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { type ProxyHeader, ProxyHeaderReader } from '../../src/listen/proxy-protocol.js';

export interface ProxiedConnection {
  readonly header: ProxyHeader;
  /** X-Forwarded-For of each request on the connection, in order. */
  readonly forwardedFor: string[];
}

export interface ProxyProtocolBackend {
  readonly id: string;
  readonly url: string;
  readonly connections: ProxiedConnection[];
  close(): Promise<void>;
}

export async function startProxyProtocolBackend(
  id: string,
  options: { host?: string } = {},
): Promise<ProxyProtocolBackend> {
  const host = options.host ?? '127.0.0.1';
  const connections: ProxiedConnection[] = [];
  const bySocket = new WeakMap<Socket, ProxiedConnection>();
  const sockets = new Set<Socket>();
  const http = createHttpServer((req, res) => {
    bySocket.get(req.socket)?.forwardedFor.push(String(req.headers['x-forwarded-for']));
    res.end(req.url === '/health' ? 'ok' : `plain ${id}`);
  });
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    bySocket.get(req.socket as Socket)?.forwardedFor.push(String(req.headers['x-forwarded-for']));
    ws.on('error', () => {});
    ws.send(JSON.stringify({ backend: id }));
    ws.on('message', (m, binary) => ws.send(m, { binary }));
  });
  const tcp = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const reader = new ProxyHeaderReader('any');
    const onData = (chunk: Buffer) => {
      const step = reader.push(chunk);
      if (step.status === 'more') return;
      socket.removeListener('data', onData);
      if (step.status === 'invalid') {
        socket.destroy();
        return;
      }
      const seen: ProxiedConnection = { header: step.header, forwardedFor: [] };
      connections.push(seen);
      bySocket.set(socket, seen);
      if (step.rest.length > 0) socket.unshift(step.rest);
      http.emit('connection', socket);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(0, host, resolve);
  });
  const port = (tcp.address() as AddressInfo).port;
  return {
    id,
    url: `ws://${host}:${port}`,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        wss.close();
        tcp.close(() => resolve());
      }),
  };
}
