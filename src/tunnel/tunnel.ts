// The tunnel after a verified 101: two pumps (pump.ts), client → backend and backend → client, and its single
// ending. Plain TCP sockets read into a shared buffer and write straight to the kernel (socket-io.ts); payload is
// copied only when the writer's kernel buffer is full.
//
// Per-connection state is this object plus two pumps (and, from their first frames, a scanner and a Limiter each);
// socket handlers are shared functions that find the tunnel through a symbol, so an idle tunnel costs no closures.
// Every exit converges on both sockets closing (closing.ts has the rules for the close frames on the way), and the
// tunnel is accounted for exactly once, when the second one has closed: with the first ending recorded.

import type { Socket } from 'node:net';
import type { ConnectionLimits, KeepaliveConfig } from '../config/types.js';
import { type CloseInitiator, type Ending, Endings, logReasonOf } from '../errors.js';
import type { RouteStats } from '../observe/hot-counts.js';
import { readDirect } from '../platform/socket-io.js';
import { closeByProxy, closeCodeOf, peerGone } from './closing.js';
import { coarseClock } from './coarse-clock.js';
import { Keepalive } from './keepalive.js';
import { type Deadline, NO_DEADLINE } from './lifetime.js';
import { Pump } from './pump.js';

/** Time the second socket gets to flush and close after the first one closed, before it is destroyed. */
export const TEARDOWN_LINGER_MS = 5000;

const kTunnel = Symbol('wsgate.tunnel');
type TunnelSocket = Socket & { [kTunnel]?: Tunnel };

export type Protocol = 'strict' | 'lenient' | 'off';

export interface TunnelEnd {
  /** The close log line's `reason` (the first ending's, see Ending.logReason). */
  readonly reason: string;
  readonly initiator: CloseInitiator;
  /** The close code that ended the WebSocket (first close frame seen or sent); 1006 when none was. */
  readonly closeCode: number;
  readonly bytesClientToBackend: number;
  readonly bytesBackendToClient: number;
  readonly messagesClientToBackend: number;
  readonly messagesBackendToClient: number;
  readonly durationMs: number;
}

/** What the owner of a tunnel is told; one object per route/backend, shared by its tunnels. */
export interface TunnelHooks {
  /** A frame violated RFC 6455 (counted in strict and lenient mode); the ending's label is the violation's kind. */
  violation(tunnel: Tunnel, fromClient: boolean, violation: Ending): void;
  /** A per-connection limit was hit; the ending's label names the limit. */
  limitExceeded(tunnel: Tunnel, limit: Ending, action: 'close' | 'throttle'): void;
  /** A peer did not answer a keepalive ping in time; the ending's label names the peer. */
  keepaliveTimeout(tunnel: Tunnel, timeout: Ending): void;
  /** The tunnel reached its deadline (lifetime.ts) and is being closed with `ending`. */
  deadlineReached(tunnel: Tunnel, ending: Ending): void;
  /** Called exactly once, after both sockets closed. */
  ended(tunnel: Tunnel, end: TunnelEnd): void;
}

export interface TunnelOptions {
  readonly stats: RouteStats;
  readonly protocol: Protocol;
  readonly limits: ConnectionLimits;
  /** permessage-deflate was negotiated (the backend's 101 said so): RSV1 is legal on first frames. */
  readonly rsv1Allowed: boolean;
  readonly clientAddress: string;
  /** The connection's request id (upstream/request-id.ts), in its log lines and the admin API's list. */
  readonly requestId: string;
  /** Hash of the connection's routing key, so rebalancing can tell whether its owner moved. */
  readonly keyHash: number;
  /** Close after this long without a data message (0: never). */
  readonly idleMs: number;
  readonly keepalive: KeepaliveConfig | undefined;
  /** When the proxy ends the tunnel on its own (maxLifetime, token expiry); absent: never. */
  readonly deadline?: Deadline | undefined;
}

export class Tunnel {
  readonly client: Socket;
  readonly backend: Socket;
  readonly hooks: TunnelHooks;
  readonly stats: RouteStats;
  readonly clientAddress: string;
  readonly requestId: string;
  readonly keyHash: number;
  readonly idleMs: number;
  /** The route's per-connection limits, for each pump's Limiter. */
  readonly limits: ConnectionLimits;
  readonly keepalive: Keepalive | undefined;
  readonly startedAt: number;
  /** performance.now() time of the deadline (Infinity: none) and the ending it brings; the sweeper checks it. */
  readonly deadlineMs: number;
  readonly deadlineEnding: Ending;
  readonly c2b: Pump;
  readonly b2c: Pump;
  /** Coarse time of the last data message (or chunk, without scanning); the sweeper closes idle tunnels. */
  lastActivityMs: number;
  /** The first ending recorded wins: it is what the close log line and metrics report. */
  ending: Ending | undefined = undefined;
  /** Its detail (a socket error's code), if it has one. */
  endingDetail: string | undefined = undefined;
  /** Coarse time the close began (the first ending was recorded). */
  closingSinceMs = 0;
  /** Close code the proxy sent the client (0 if it sent none). */
  proxyCloseCode = 0;
  /** Both sockets are ending or destroyed: no more close frames, pings or endings of our own. */
  tearingDown = false;
  deadlineTimer: NodeJS.Timeout | undefined = undefined;
  private lingerTimer: NodeJS.Timeout | undefined = undefined;
  private openSockets = 2;

  constructor(client: Socket, backend: Socket, hooks: TunnelHooks, options: TunnelOptions) {
    this.client = client;
    this.backend = backend;
    this.hooks = hooks;
    this.stats = options.stats;
    this.clientAddress = options.clientAddress;
    this.requestId = options.requestId;
    this.keyHash = options.keyHash;
    this.idleMs = options.idleMs;
    this.limits = options.limits;
    this.startedAt = performance.now();
    this.lastActivityMs = this.startedAt;
    const deadline = options.deadline ?? NO_DEADLINE;
    this.deadlineMs = deadline.atMs;
    this.deadlineEnding = deadline.ending;
    const keepalive = options.keepalive && new Keepalive(options.keepalive, this.startedAt);
    this.keepalive = keepalive;
    this.c2b = new Pump(this, client, backend, true, options, keepalive?.client);
    this.b2c = new Pump(this, backend, client, false, options, keepalive?.backend);
    (client as TunnelSocket)[kTunnel] = this;
    (backend as TunnelSocket)[kTunnel] = this;
    client.setNoDelay(true);
    backend.setNoDelay(true);
    // 'data' stays subscribed with direct reads too: it delivers what the socket buffered before the switch.
    client.on('data', onClientData);
    backend.on('data', onBackendData);
    // The shared read buffer only feeds direct writes: a TLS destination gets the stream path's own buffers, which
    // its queue may keep without a copy.
    if (this.c2b.destFd >= 0) readDirect(client, onClientRead);
    if (this.b2c.destFd >= 0) readDirect(backend, onBackendRead);
    client.on('drain', onDrain);
    backend.on('drain', onDrain);
    client.on('end', onEnd);
    backend.on('end', onEnd);
    client.on('error', onError);
    backend.on('error', onError);
    client.on('close', onClose);
    backend.on('close', onClose);
  }

  /**
   * Starts the pumps, after the 101 and any early bytes have been written. A pump that early bytes already
   * throttled or filled its writer stays paused: its timer or its writer's drain resumes it.
   */
  start(): void {
    if (!this.c2b.readingHeld()) this.client.resume();
    if (!this.b2c.readingHeld()) this.backend.resume();
  }

  /** Forwards bytes that arrived with the handshake (frames glued to the 101 or to the request). */
  forwardEarly(fromClient: boolean, chunk: Buffer): void {
    if (chunk.length > 0) (fromClient ? this.c2b : this.b2c).push(chunk);
  }

  /** A close is under way (a close frame passed or was sent, or a socket went). */
  get closing(): boolean {
    return this.ending !== undefined;
  }

  get messagesClientToBackend(): number {
    return this.c2b.messages;
  }

  get messagesBackendToClient(): number {
    return this.b2c.messages;
  }

  /**
   * Ends the WebSocket on the proxy's behalf (drain, idle, keepalive, rebalancing, an unhealthy backend): each peer
   * hears its half of `ending` at the next frame boundary of its direction (the frame in flight finishes first,
   * within CLOSE_FRAME_DEADLINE_MS).
   */
  closeWith(ending: Ending): void {
    closeByProxy(this, ending);
  }

  /** Immediate end: both sockets destroyed now. */
  abort(ending: Ending): void {
    this.record(ending, undefined);
    this.destroyBoth();
  }

  /** Notes why the tunnel ends; the first ending recorded wins. */
  record(ending: Ending, detail: string | undefined): void {
    if (this.ending !== undefined) return;
    this.ending = ending;
    this.endingDetail = detail;
    this.closingSinceMs = coarseClock.nowMs;
  }

  /** Half-closes both sockets so queued bytes still flush; whatever is left after the linger is destroyed. */
  endSockets(): void {
    this.tearingDown = true;
    // A second end() on an ended socket would only build an ERR_STREAM_ALREADY_FINISHED for a callback we do not pass.
    if (!this.client.destroyed && !this.client.writableEnded) this.client.end();
    if (!this.backend.destroyed && !this.backend.writableEnded) this.backend.end();
    if (this.lingerTimer === undefined && this.openSockets > 0 && !(this.client.destroyed && this.backend.destroyed)) {
      this.lingerTimer = setTimeout(destroyBoth, TEARDOWN_LINGER_MS, this);
      this.lingerTimer.unref();
    }
  }

  destroyBoth(): void {
    this.client.destroy();
    this.backend.destroy();
  }

  /** @internal called by the shared close handler. */
  socketClosed(socket: Socket): void {
    this.openSockets--;
    if (this.openSockets === 1) {
      peerGone(this, socket, socket === this.client ? Endings.CLIENT_GONE : Endings.BACKEND_GONE, undefined);
      return;
    }
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    if (this.c2b.throttleTimer !== undefined) clearTimeout(this.c2b.throttleTimer);
    if (this.b2c.throttleTimer !== undefined) clearTimeout(this.b2c.throttleTimer);
    // The first socket's close recorded an ending if nothing had before.
    const ending = this.ending as Ending;
    this.hooks.ended(this, {
      reason: logReasonOf(ending, this.endingDetail),
      initiator: ending.initiator,
      closeCode: closeCodeOf(this, ending),
      bytesClientToBackend: this.c2b.bytes,
      bytesBackendToClient: this.b2c.bytes,
      messagesClientToBackend: this.c2b.messages,
      messagesBackendToClient: this.b2c.messages,
      durationMs: performance.now() - this.startedAt,
    });
  }
}

function onClientData(this: TunnelSocket, chunk: Buffer): void {
  this[kTunnel]!.c2b.push(chunk);
}

function onBackendData(this: TunnelSocket, chunk: Buffer): void {
  this[kTunnel]!.b2c.push(chunk);
}

function onClientRead(this: TunnelSocket, nread: number, buffer: Buffer): void {
  this[kTunnel]!.c2b.push(buffer.subarray(0, nread));
}

function onBackendRead(this: TunnelSocket, nread: number, buffer: Buffer): void {
  this[kTunnel]!.b2c.push(buffer.subarray(0, nread));
}

/** The writer drained: let its peer read again, unless that reader is throttled. (A halted reader is read and dropped.) */
function onDrain(this: TunnelSocket): void {
  const t = this[kTunnel]!;
  const pump = this === t.client ? t.b2c : t.c2b;
  if (pump.throttleTimer === undefined && !pump.source.destroyed) pump.source.resume();
}

function onEnd(this: TunnelSocket): void {
  const t = this[kTunnel]!;
  peerGone(t, this, this === t.client ? Endings.CLIENT_GONE : Endings.BACKEND_GONE, undefined);
}

function onError(this: TunnelSocket, err: NodeJS.ErrnoException): void {
  const t = this[kTunnel]!;
  peerGone(t, this, this === t.client ? Endings.CLIENT_ERROR : Endings.BACKEND_ERROR, err.code ?? 'unknown');
}

function onClose(this: TunnelSocket): void {
  this[kTunnel]!.socketClosed(this);
}

function destroyBoth(t: Tunnel): void {
  t.destroyBoth();
}
