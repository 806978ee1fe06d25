// Connections a node:http server did not accept itself. When it can, wsgate owns each listener's port with a net or
// tls server of its own, reads whole upgrade heads itself (src/listen/first-request.ts), and emits every other
// connection into a node:http server that never listens, as 'connection': node documents that for injecting any
// Duplex. What it does not document: node:http enforces headersTimeout and requestTimeout on a connection, and
// closeIdleConnections() finds it, only through its connection tracking, which it starts on the server's own
// 'listening' event; a server that never listens never emits it, so adoptConnections() does.
//
// Internal: node:http's connection tracking starts on 'listening'. Probe (once, at start): a Duplex emitted into
// a probe server after that event must be among the connections closeAllConnections() closes. Fallback (the probe
// fails, WSGATE_UPGRADE_PARSER=node, WSGATE_NODE_INTERNALS=off): node:http's own server listens and reads every
// request head.
// What it buys (`npm run bench:floor -- --mode handshake`, wsgate with WSGATE_UPGRADE_PARSER=node and without, in
// turns, 22 paired rounds, 2026-12-04 on a 2-core machine under heavy load, which inflates every figure): ~60 µs
// of ~480 µs CPU per ws handshake (12%; on a quiet machine, 2026-11-30, 215 → 199 µs).

import { createServer, type Server } from 'node:http';
import { Duplex } from 'node:stream';
import { NODE_INTERNALS_ALLOWED, UPGRADE_PARSER_FORCED_NODE } from './switches.js';

/** Makes `server`, which never listens, time out and track connections emitted into it as 'connection'. */
export function adoptConnections(server: Server): void {
  server.emit('listening');
}

function adoptedConnectionsAreTracked(): boolean {
  const server = createServer();
  adoptConnections(server);
  const connection = new Duplex({
    read() {},
    write(_chunk, _encoding, done) {
      done();
    },
  });
  server.emit('connection', connection);
  server.closeAllConnections();
  const tracked = connection.destroyed;
  connection.destroy();
  server.close(); // stops its connection checker
  return tracked;
}

/**
 * Who reads a connection's first request head: wsgate's strict upgrade reader on its own server, with node:http for
 * everything else (default), or node:http alone on its own server.
 */
export const UPGRADE_PARSER: 'wsgate' | 'node' =
  NODE_INTERNALS_ALLOWED && !UPGRADE_PARSER_FORCED_NODE && adoptedConnectionsAreTracked() ? 'wsgate' : 'node';
