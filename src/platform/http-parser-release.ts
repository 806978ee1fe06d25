// Taking a connection away from node:http's parser, so that a refusal written raw on it (src/handshake/reject.ts)
// can drain the client's bytes in a lingering close without node:http turning them into requests or parse errors.
// node:http lets go of a connection publicly only for an upgrade.
//
// Internals: node:http sets `socket.parser` while it parses a connection (null once it lets go); its reader is
// then its 'data' listener, and for a socket it reads through libuv directly, the `on` wrapper node installs on the
// socket takes the parser off the handle when the next 'data' listener is added. Probe (once, at start): a Duplex
// emitted into a probe server gets a `parser` and an own `on`; a request it is fed becomes a 'request', one fed
// after release() does not. Fallback (the probe fails, WSGATE_NODE_INTERNALS=off): release() does nothing and
// node:http's parser reads the refused connection to its end, which drains it as well; nothing it parses there
// gets a turn (src/listen/turns.ts: the connection is no longer writable) and the parse errors it reports on a
// connection in its lingering close are ignored (src/listen/listener.ts).
// What it buys: no CPU on any path that is not a refusal (0 µs per handshake or message). After a refusal, what
// the client sends on is discarded unread instead of parsed into requests nobody serves, each an IncomingMessage,
// a ServerResponse and a waiting listener until the connection closes (at most LINGER_MS later).

import { createServer } from 'node:http';
import { Duplex } from 'node:stream';
import { NODE_INTERNALS_ALLOWED } from './switches.js';

type MaybeParsedSocket = Duplex & { parser?: unknown };

function takeParser(socket: Duplex): void {
  if ((socket as MaybeParsedSocket).parser) socket.removeAllListeners('data');
}

function parserIsReleased(): boolean {
  const server = createServer();
  let requests = 0;
  server.on('request', () => requests++);
  const socket = new Duplex({
    read() {},
    write(_chunk, _encoding, done) {
      done();
    },
  });
  server.emit('connection', socket);
  const request = Buffer.from('GET / HTTP/1.1\r\nHost: probe\r\n\r\n', 'latin1');
  const parsed = Boolean((socket as MaybeParsedSocket).parser) && Object.hasOwn(socket, 'on');
  socket.emit('data', request);
  const before = requests;
  takeParser(socket);
  socket.on('data', () => {});
  socket.emit('data', request);
  socket.destroy();
  server.close();
  return parsed && before === 1 && requests === 1;
}

/** Whether release() takes connections from node:http's parser ('internal') or leaves them to it ('fallback'). */
export const PARSER_RELEASE: 'internal' | 'fallback' =
  NODE_INTERNALS_ALLOWED && parserIsReleased() ? 'internal' : 'fallback';

/**
 * Stops node:http's parser reading `socket`, if it still does; the caller adds its own 'data' listener next (which
 * also takes node's parser off the socket's handle). Does nothing on the fallback path.
 */
export function releaseFromNodeHttp(socket: Duplex): void {
  if (PARSER_RELEASE === 'internal') takeParser(socket);
}
