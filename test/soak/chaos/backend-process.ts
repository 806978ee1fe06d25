// A chaos-soak backend in its own process, so the soak can SIGKILL it and start it again on the same address:
// a `ws` echo server that names itself on connect ({"backend":id}) and echoes every message (binary stays binary),
// plus GET /health for the pool's health checks. On the IPC message {type:'stall', ms} it stops reading from every
// live connection for that long (a backend that stops reading); on {type:'count'} it answers how many health
// checks it has had (a health checker a replaced config left running shows as a higher rate). Usage: backend-process.ts ID HOST PORT.

import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';

const [id = 'backend', host = '127.0.0.1', port = '0'] = process.argv.slice(2);
const sockets = new Set<Socket>();
let healthChecks = 0;
const server = createServer((req, res) => {
  if (req.url === '/health') healthChecks++;
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(id);
});
server.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.send(JSON.stringify({ backend: id }));
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
process.on('message', (m: { type: string; ms?: number }) => {
  if (m.type === 'count') {
    process.send?.({ type: 'count', healthChecks });
    return;
  }
  if (m.type !== 'stall') return;
  const stalled = [...sockets];
  for (const s of stalled) s.pause();
  setTimeout(() => {
    for (const s of stalled) if (!s.destroyed) s.resume();
  }, m.ms ?? 1000);
});
process.on('disconnect', () => process.exit(0));
server.listen(Number(port), host, () => {
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
});
