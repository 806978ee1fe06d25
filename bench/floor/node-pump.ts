// The floor for a Node proxy on this machine: a TCP pump that does nothing but move bytes between a client and
// the echo backend with wsgate's own socket I/O (src/tunnel/socket-io.ts: shared read buffer, direct writes).
// No HTTP, no upgrade check (the client's handshake passes through to the backend), no scanning, no limits,
// no metrics. What wsgate costs above this is wsgate; what this costs above HAProxy is Node.
// Usage: node dist/bench/floor/node-pump.js BACKEND_PORT — binds 127.0.0.1:0 and sends { port } over IPC.

import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { directWriteFd, readDirect, writeChunk } from '../../src/platform/socket-io.js';

const backendPort = Number(process.argv[2]);
if (!Number.isInteger(backendPort) || backendPort <= 0) throw new Error('usage: node-pump.js BACKEND_PORT');

const peerOf = new WeakMap<Socket, { peer: Socket; fd: number }>();

function onRead(this: Socket, nread: number, buffer: Buffer): void {
  const to = peerOf.get(this);
  if (to !== undefined && !writeChunk(to.peer, to.fd, buffer.subarray(0, nread))) {
    this.pause();
    to.peer.once('drain', () => this.resume());
  }
}

function pipe(from: Socket, to: Socket): void {
  peerOf.set(from, { peer: to, fd: directWriteFd(to) });
  if (!readDirect(from, onRead)) throw new Error('direct socket I/O is not available here');
  const close = () => {
    from.destroy();
    to.destroy();
  };
  from.on('end', close);
  from.on('error', close);
}

const server = createServer({ pauseOnConnect: true, noDelay: true }, (client) => {
  const backend = connect({ port: backendPort, host: '127.0.0.1', noDelay: true });
  backend.once('connect', () => {
    pipe(client, backend);
    pipe(backend, client);
    client.resume();
    backend.resume();
  });
  backend.on('error', () => client.destroy());
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  if (process.send) process.send({ port });
  else console.log(`node-pump on 127.0.0.1:${port} → 127.0.0.1:${backendPort}`);
});
