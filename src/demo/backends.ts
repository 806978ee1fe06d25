// Demo backends for `npm start`: one small WebSocket echo/chat server per port, each naming itself in every
// reply so a user can watch consistent hashing pick the same backend for the same key. Not part of the proxy.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { demoBackendId } from './names.js';

export interface DemoBackend {
  readonly id: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts one demo backend on 127.0.0.1:`port` (0 picks a free port). */
export function startDemoBackend(id: string, port: number, host = '127.0.0.1'): Promise<DemoBackend> {
  const server: Server = createServer((req, res) => {
    const body = req.url === '/health' ? 'ok\n' : `hello from ${id} (plain HTTP ${req.method} ${req.url})\n`;
    res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Backend-Id': id });
    res.end(body);
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    const room = new URL(req.url ?? '/', 'http://demo').searchParams.get('room') ?? 'lobby';
    (ws as unknown as { room: string }).room = room;
    ws.send(JSON.stringify({ backend: id, event: 'welcome', room, path: req.url }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        ws.send(data, { binary: true });
        return;
      }
      const text = data.toString();
      ws.send(JSON.stringify({ backend: id, event: 'echo', text }));
      // Chat: everyone else in the same room on this backend hears it too.
      for (const peer of wss.clients) {
        if (peer !== ws && (peer as unknown as { room: string }).room === room && peer.readyState === peer.OPEN) {
          peer.send(JSON.stringify({ backend: id, event: 'chat', room, text }));
        }
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const bound = (server.address() as AddressInfo).port;
      resolve({
        id,
        port: bound,
        close: () =>
          new Promise<void>((done) => {
            for (const c of wss.clients) c.terminate();
            wss.close();
            server.close(() => done());
          }),
      });
    });
  });
}

// Run as a child of `wsgate` in demo mode: `node backends.js 3001 3002 3003`; exits with its parent.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '') && process.argv[2]) {
  const ports = process.argv.slice(2).map(Number);
  Promise.all(ports.map((p) => startDemoBackend(demoBackendId(p), p)))
    .then((started) => {
      process.send?.({ ready: started.map((b) => ({ id: b.id, port: b.port })) });
    })
    .catch((err: Error) => {
      process.send?.({ error: err.message });
      process.exit(1);
    });
  process.on('disconnect', () => process.exit(0));
}
