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
  // noServer: ws would re-emit the server's errors (a busy port) on itself, where nobody listens.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
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
      // Chat: everyone else in the same room on this backend hears it too (so the status page shows more
      // messages going to clients than coming from them).
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

/** What the demo child tells its parent: all backends listening, or the first that could not. */
export type DemoBackendsMessage =
  | { readonly ready: readonly { readonly id: string; readonly port: number }[] }
  | { readonly failed: { readonly port: number; readonly code: string | undefined; readonly message: string } };

// Run as a child of `wsgate` in demo mode: `node backends.js 3001 3002 3003`; exits with its parent.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '') && process.argv[2]) {
  const ports = process.argv.slice(2).map(Number);
  const send = (message: DemoBackendsMessage, then?: () => void) => process.send?.(message, undefined, {}, then);
  Promise.allSettled(ports.map((port) => startDemoBackend(demoBackendId(port), port))).then((results) => {
    const i = results.findIndex((r) => r.status === 'rejected');
    const failure = results[i];
    if (failure?.status === 'rejected') {
      const err = failure.reason as NodeJS.ErrnoException;
      send({ failed: { port: ports[i] as number, code: err.code, message: err.message } }, () => process.exit(1));
      return;
    }
    send({ ready: results.flatMap((r) => (r.status === 'fulfilled' ? [{ id: r.value.id, port: r.value.port }] : [])) });
  });
  process.on('disconnect', () => process.exit(0));
}
