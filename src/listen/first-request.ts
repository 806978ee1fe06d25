// The first read of every connection, before node:http sees it. A complete WebSocket upgrade head that our strict
// reader accepts (src/handshake/upgrade-head.ts) goes straight to the upgrade handler: no HTTP parser, no
// IncomingMessage, none of node:http's per-connection listeners (docs/internals.md: what it saves). Anything
// else (plain HTTP, a head split over reads, anything unusual or malformed) is put back in front of the socket and
// handed to node:http (emitted into its server as a new connection), exactly as if it had just arrived.
//
// Until a connection's first request head is complete, the deadline is ours: from the connection's start, whether
// node:http parses the head or we do, so handing a slow head to node:http never restarts its clock. So is the
// count of connections one address has waiting for their first head, also where node:http reads every head itself
// (watch()).

import type { Socket } from 'node:net';
import { parseUpgradeHead, type UpgradeRequest } from '../handshake/upgrade-head.js';
import { clientOfConnection } from './client-address.js';

/** Hands a new connection to node:http; called with the reader's `server` as `this`. */
export type ConnectionHandler = (this: unknown, socket: Socket) => void;

export interface FirstRequestHandlers {
  upgrade(req: UpgradeRequest, socket: Socket, head: Buffer): void;
  /** The first head did not arrive in time; the socket is still open and ours to answer. */
  timeout(socket: Socket): void;
  /** How many connections one client address may have waiting for their first head at once. */
  waitingPerIp(): number;
  /** A connection over that limit: the reader let go of it, unread, for the handler to close. */
  tooManyWaiting(socket: Socket, ip: string): void;
}

const kReader = Symbol('wsgate.firstRequest');
/** How often an address at its waiting limit may trigger a sweep for closed sockets. */
const PURGE_MS = 100;
/** performance.now() when the connection arrived. */
const kSince = Symbol('wsgate.connectedAt');
/** The client address it is counted under while waiting. */
const kIp = Symbol('wsgate.waitingFrom');
type WaitingSocket = Socket & {
  [kReader]?: FirstRequestReader;
  [kSince]?: number;
  [kIp]?: string;
};

export class FirstRequestReader {
  private readonly server: unknown;
  private readonly httpConnection: ConnectionHandler;
  private readonly handlers: FirstRequestHandlers;
  private readonly timeoutMs: number;
  private readonly checkIntervalMs: number;
  /** Connections whose first request head is not complete yet. */
  private readonly waiting = new Set<WaitingSocket>();
  /**
   * How many of them each client address has: silent connections cost a descriptor each until the deadline, so
   * one address must not be able to take them all (the tunnel caps only count upgrades).
   */
  private readonly waitingFrom = new Map<string, number>();
  private lastPurge = 0;
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

  /** A new connection: wait for its first read; `first` holds bytes already read (after a PROXY header). */
  accept(socket: Socket, first?: Buffer): void {
    if (!this.watch(socket)) return;
    const s = socket as WaitingSocket;
    s[kReader] = this;
    s.on('data', onFirstData);
    s.on('error', onNothingToAnswer);
    s.on('end', onNothingToAnswer);
    if (first !== undefined && first.length > 0) this.read(s, first);
  }

  /**
   * A new connection whose first head node:http reads (from the start, or after read() handed it over): only its
   * deadline and its place in its address's count apply. False when the address has too many waiting already: the
   * socket went to tooManyWaiting.
   */
  watch(socket: Socket): boolean {
    const s = socket as WaitingSocket;
    const ip = clientOfConnection(socket);
    let count = this.waitingFrom.get(ip) ?? 0;
    if (count >= this.handlers.waitingPerIp()) {
      // Sockets node:http closed without an event (a CONNECT nobody handles) are forgotten only by the next check:
      // forget them now rather than refuse anyone for them (at most every PURGE_MS: a flood must not make each
      // refusal a scan).
      const now = performance.now();
      if (now - this.lastPurge >= PURGE_MS) {
        this.lastPurge = now;
        for (const waiting of this.waiting) if (waiting.destroyed) this.forget(waiting);
        count = this.waitingFrom.get(ip) ?? 0;
      }
      if (count >= this.handlers.waitingPerIp()) {
        this.handlers.tooManyWaiting(socket, ip);
        return false;
      }
    }
    this.waitingFrom.set(ip, count + 1);
    s[kIp] = ip;
    s[kSince] = performance.now();
    this.waiting.add(s);
    this.checker ??= setInterval(checkDeadlines, this.checkIntervalMs, this).unref();
    return true;
  }

  /**
   * node:http read the connection's first request (plain, upgrade, or one it answers itself, such as an `Expect` it
   * cannot meet): its deadline no longer applies.
   */
  settled(socket: Socket): void {
    this.forget(socket as WaitingSocket);
  }

  /** The socket no longer waits for its first head: its deadline and its place in its address's count go. */
  private forget(socket: WaitingSocket): void {
    if (!this.waiting.delete(socket)) return;
    const ip = socket[kIp] as string;
    const left = (this.waitingFrom.get(ip) ?? 1) - 1;
    if (left > 0) this.waitingFrom.set(ip, left);
    else this.waitingFrom.delete(ip);
  }

  /** Sockets still waiting for their first head (for tests). */
  get waitingCount(): number {
    return this.waiting.size;
  }

  read(socket: WaitingSocket, chunk: Buffer): void {
    stopWatching(socket);
    const parsed = parseUpgradeHead(chunk);
    if (parsed) {
      this.forget(socket);
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
      if (socket.destroyed || !socket.writable) {
        // Closed, or already being answered (a lingering close): nothing left to time out. (A request node:http
        // reads settles its deadline through the event it emits for it: the listener leaves node none to answer
        // on its own.)
        this.forget(socket);
      } else if (now - (socket[kSince] as number) >= this.timeoutMs) {
        this.forget(socket);
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
    this.forget(socket);
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
