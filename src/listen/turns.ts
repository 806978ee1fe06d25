// Pipelined requests are answered in request order (RFC 9112 §9.3.2). node:http writes the responses it creates in
// that order, but emits 'request' and 'upgrade' as soon as each head is parsed, so a handler that writes to the
// socket itself (an upgrade, a raw refusal) would overtake the responses before it. Each connection keeps the
// last of its responses that has not closed yet; whatever comes next waits for that one's 'close'. A response
// closes once it is finished (node then gives the socket to the next) or when the connection goes.

import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

const kLastResponse = Symbol('wsgate.lastResponse');
type TurnSocket = Duplex & { [kLastResponse]?: ServerResponse | undefined };

/** Whether a response on `socket` has not closed yet: a handler called now would not be in turn. */
export function responsePending(socket: Duplex): boolean {
  return (socket as TurnSocket)[kLastResponse] !== undefined;
}

/**
 * Calls `proceed(...args)` when it is the turn of the request whose response is `own` (null for an upgrade or a
 * malformed request, which have none and come last): once every response before it on `socket` has closed.
 * `proceed` never runs on a connection that can no longer answer: an earlier response closed it
 * (`Connection: close`; §9.6: no further request is processed), we refused on it, or it is gone; whoever ended it
 * (node after that response, reject.ts's lingering close) destroys it.
 */
export function inTurn<Args extends unknown[]>(
  socket: Duplex,
  own: ServerResponse | null,
  proceed: (...args: Args) => void,
  ...args: Args
): void {
  if (socket.destroyed) return;
  const s = socket as TurnSocket;
  const before = s[kLastResponse];
  if (own !== null) {
    s[kLastResponse] = own;
    own.once('close', () => {
      if (s[kLastResponse] === own) s[kLastResponse] = undefined;
    });
  }
  if (before === undefined) proceedIfOpen(socket, proceed, args);
  else before.once('close', () => proceedIfOpen(socket, proceed, args));
}

function proceedIfOpen<Args extends unknown[]>(socket: Duplex, proceed: (...args: Args) => void, args: Args): void {
  if (!socket.destroyed && socket.writable) proceed(...args);
}
