// The first read of every connection, before node:http sees it. A complete WebSocket upgrade head that our strict
// reader accepts (src/handshake/upgrade-head.ts) goes straight to the upgrade handler: no HTTP parser, no
// IncomingMessage, none of node:http's per-connection listeners (about a tenth of a ws handshake's CPU). Anything
// else (plain HTTP, a head split over reads, anything unusual or malformed) is put back in front of the socket and
// handed to node:http's own connection handler, exactly as if it had just arrived.
//
// Until a connection's first request head is complete, the deadline is ours: from the connection's start, whether
// node:http parses the head or we do, so handing a slow head to node:http never restarts its clock.

import type { Socket } from 'node:net';
import { parseUpgradeHead, type UpgradeRequest } from '../handshake/upgrade-head.js';

/** node:http's handler for a new connection (`connection`, or `secureConnection` for https). */
export type ConnectionHandler = (this: unknown, socket: Socket) => void;

export interface FirstRequestHandlers {
  upgrade(req: UpgradeRequest, socket: Socket, head: Buffer): void;
  /** The first head did not arrive in time; the socket is still open and ours to answer. */
  timeout(socket: Socket): void;
}

const kReader = Symbol('wsgate.firstRequest');
/** performance.now() when the connection arrived. */
const kSince = Symbol('wsgate.connectedAt');
/** `_httpMessage` is node:http's response in progress on the socket (internal, long-standing). */
type WaitingSocket = Socket & { [kReader]?: FirstRequestReader; [kSince]?: number; _httpMessage?: object | null };

export class FirstRequestReader {
  private readonly server: unknown;
  private readonly httpConnection: ConnectionHandler;
  private readonly handlers: FirstRequestHandlers;
  private readonly timeoutMs: number;
  private readonly checkIntervalMs: number;
  /** Connections whose first request head is not complete yet. */
  private readonly waiting = new Set<WaitingSocket>();
  private checker: NodeJS.Timeout | undefined;

  constructor(
    server: unknown,
    httpConnection: ConnectionHandler,
    handlers: FirstRequestHandlers,
    timeoutMs: number,
    checkIntervalMs: number,
  ) {
    this.server = server;
    this.httpConnection = httpConnection;
    this.handlers = handlers;
    this.timeoutMs = timeoutMs;
    this.checkIntervalMs = checkIntervalMs;
  }

  /** A new connection: wait for its first read. */
  accept(socket: Socket): void {
    const s = socket as WaitingSocket;
    s[kReader] = this;
    s[kSince] = performance.now();
    this.waiting.add(s);
    this.checker ??= setInterval(checkDeadlines, this.checkIntervalMs, this).unref();
    s.on('data', onFirstData);
    s.on('error', onNothingToAnswer);
    s.on('end', onNothingToAnswer);
  }

  /**
   * node:http read the connection's first request (plain, upgrade, or one it answers itself, such as an `Expect` it
   * cannot meet): its deadline no longer applies.
   */
  settled(socket: Socket): void {
    this.waiting.delete(socket as WaitingSocket);
  }

  /** Sockets still waiting for their first head (for tests). */
  get waitingCount(): number {
    return this.waiting.size;
  }

  read(socket: WaitingSocket, chunk: Buffer): void {
    stopWatching(socket);
    const parsed = parseUpgradeHead(chunk);
    if (parsed) {
      this.waiting.delete(socket);
      this.handlers.upgrade(parsed.request, socket, chunk.subarray(parsed.headEnd));
      return;
    }
    // No 'data' listener is left, so unshift buffers the chunk; node:http's 'data' listener then resumes the socket,
    // and its parser reads the chunk first, before anything that arrives later.
    socket.unshift(chunk);
    this.httpConnection.call(this.server, socket);
  }

  check(now: number): void {
    for (const socket of this.waiting) {
      if (socket.destroyed || !socket.writable || socket._httpMessage) {
        // Closed, already being answered (a lingering close), or node:http is answering a request it read, maybe
        // without any event (400 for a missing Host under requireHostHeader, 503 past maxRequestsPerSocket):
        // nothing left to time out.
        this.waiting.delete(socket);
      } else if (now - (socket[kSince] as number) >= this.timeoutMs) {
        this.waiting.delete(socket);
        // A socket that sent nothing yet is still ours: bytes after the 408 must not reach onFirstData.
        stopWatching(socket);
        this.handlers.timeout(socket);
      }
    }
    if (this.waiting.size === 0 && this.checker !== undefined) {
      clearInterval(this.checker);
      this.checker = undefined;
    }
  }

  drop(socket: WaitingSocket): void {
    stopWatching(socket);
    this.waiting.delete(socket);
    socket.destroy();
  }
}

function checkDeadlines(reader: FirstRequestReader): void {
  reader.check(performance.now());
}

function stopWatching(socket: WaitingSocket): void {
  // A long-lived tunnel's socket must not keep this reader (and a retired listener's server) alive.
  socket[kReader] = undefined;
  socket.removeListener('data', onFirstData);
  socket.removeListener('error', onNothingToAnswer);
  socket.removeListener('end', onNothingToAnswer);
}

function onFirstData(this: WaitingSocket, chunk: Buffer): void {
  this[kReader]?.read(this, chunk);
}

/** A reset or a FIN before any byte: nobody to answer. */
function onNothingToAnswer(this: WaitingSocket): void {
  this[kReader]?.drop(this);
}
