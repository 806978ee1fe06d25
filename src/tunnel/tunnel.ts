// The tunnel after a verified 101: each direction is a pump that writes the very Buffer it read to the other
// socket (no copies), pausing the reader while the writer is full. Per-connection state is one object; the
// socket handlers are shared functions that find it through a symbol, so an idle tunnel costs two sockets and
// this object. Every exit goes through teardown, and the tunnel is accounted for exactly once, when both
// sockets have closed.

import type { Socket } from 'node:net';

/** Time the second socket gets to flush and close after the first one closed, before it is destroyed. */
export const TEARDOWN_LINGER_MS = 5000;

const kTunnel = Symbol('wsgate.tunnel');
type TunnelSocket = Socket & { [kTunnel]?: Tunnel };

export type CloseInitiator = 'client' | 'backend' | 'proxy';

export interface TunnelEnd {
  readonly reason: string;
  readonly initiator: CloseInitiator;
  readonly bytesClientToBackend: number;
  readonly bytesBackendToClient: number;
  readonly durationMs: number;
}

/** What the owner of a tunnel is told; one object per route/backend, shared by its tunnels. */
export interface TunnelHooks {
  /** Hot path: bytes forwarded, called per chunk. */
  countBytes(fromClient: boolean, bytes: number): void;
  /** Called exactly once, after both sockets closed. */
  ended(tunnel: Tunnel, end: TunnelEnd): void;
}

export class Tunnel {
  readonly client: Socket;
  readonly backend: Socket;
  readonly hooks: TunnelHooks;
  readonly clientAddress: string;
  readonly startedAt: number;
  bytesClientToBackend = 0;
  bytesBackendToClient = 0;
  /** First reason recorded wins: it is what the close log line and metrics report. */
  reason: string | undefined;
  initiator: CloseInitiator = 'proxy';
  private openSockets = 2;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(client: Socket, backend: Socket, hooks: TunnelHooks, idleTimeoutMs: number, clientAddress: string) {
    this.client = client;
    this.backend = backend;
    this.hooks = hooks;
    this.clientAddress = clientAddress;
    this.startedAt = performance.now();
    (client as TunnelSocket)[kTunnel] = this;
    (backend as TunnelSocket)[kTunnel] = this;
    client.setNoDelay(true);
    backend.setNoDelay(true);
    client.on('data', onClientData);
    backend.on('data', onBackendData);
    client.on('drain', onDrain);
    backend.on('drain', onDrain);
    client.on('end', onEnd);
    backend.on('end', onEnd);
    client.on('error', onError);
    backend.on('error', onError);
    client.on('close', onClose);
    backend.on('close', onClose);
    if (idleTimeoutMs > 0) {
      // Node re-arms this on every read or write of the client socket, which sees both directions.
      client.setTimeout(idleTimeoutMs, onIdle);
    }
  }

  /** Starts the pumps, after the 101 and any early bytes have been written. */
  start(): void {
    this.client.resume();
    this.backend.resume();
  }

  /** Forwards bytes that arrived with the handshake (frames glued to the 101 or to the request). */
  forwardEarly(fromClient: boolean, chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (fromClient) pump(this, this.client, this.backend, chunk, true);
    else pump(this, this.backend, this.client, chunk, false);
  }

  /**
   * Graceful end: remember why, half-close both sockets so queued bytes still flush, and destroy whatever is
   * left after TEARDOWN_LINGER_MS.
   */
  close(reason: string, initiator: CloseInitiator): void {
    if (this.reason === undefined) {
      this.reason = reason;
      this.initiator = initiator;
    }
    if (!this.client.destroyed) this.client.end();
    if (!this.backend.destroyed) this.backend.end();
    if (this.lingerTimer === undefined && this.openSockets > 0) {
      this.lingerTimer = setTimeout(destroyBoth, TEARDOWN_LINGER_MS, this);
      this.lingerTimer.unref();
    }
  }

  /** Immediate end: both sockets destroyed now. */
  abort(reason: string, initiator: CloseInitiator): void {
    if (this.reason === undefined) {
      this.reason = reason;
      this.initiator = initiator;
    }
    destroyBoth(this);
  }

  /** @internal called by the shared close handler. */
  socketClosed(socket: Socket): void {
    this.openSockets--;
    if (this.openSockets === 1) {
      // The peer of a closed socket has nothing more to say to it: flush and close.
      const fromClient = socket === this.client;
      this.close(fromClient ? 'client_closed' : 'backend_closed', fromClient ? 'client' : 'backend');
      return;
    }
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.client.setTimeout(0);
    this.hooks.ended(this, {
      reason: this.reason ?? 'closed',
      initiator: this.initiator,
      bytesClientToBackend: this.bytesClientToBackend,
      bytesBackendToClient: this.bytesBackendToClient,
      durationMs: performance.now() - this.startedAt,
    });
  }
}

function pump(t: Tunnel, source: Socket, dest: Socket, chunk: Buffer, fromClient: boolean): void {
  if (fromClient) t.bytesClientToBackend += chunk.length;
  else t.bytesBackendToClient += chunk.length;
  t.hooks.countBytes(fromClient, chunk.length);
  if (!dest.write(chunk)) source.pause();
}

function onClientData(this: TunnelSocket, chunk: Buffer): void {
  const t = this[kTunnel]!;
  pump(t, this, t.backend, chunk, true);
}

function onBackendData(this: TunnelSocket, chunk: Buffer): void {
  const t = this[kTunnel]!;
  pump(t, this, t.client, chunk, false);
}

/** The writer drained: let its peer read again. */
function onDrain(this: TunnelSocket): void {
  const t = this[kTunnel]!;
  const reader = this === t.client ? t.backend : t.client;
  if (!reader.destroyed) reader.resume();
}

function onEnd(this: TunnelSocket): void {
  const t = this[kTunnel]!;
  const fromClient = this === t.client;
  t.close(fromClient ? 'client_closed' : 'backend_closed', fromClient ? 'client' : 'backend');
}

function onError(this: TunnelSocket, err: NodeJS.ErrnoException): void {
  const t = this[kTunnel]!;
  const fromClient = this === t.client;
  const side = fromClient ? 'client' : 'backend';
  t.abort(`${side}_error:${err.code ?? 'unknown'}`, side);
}

function onClose(this: TunnelSocket): void {
  this[kTunnel]!.socketClosed(this);
}

function onIdle(this: TunnelSocket): void {
  this[kTunnel]!.close('idle_timeout', 'proxy');
}

function destroyBoth(t: Tunnel): void {
  t.client.destroy();
  t.backend.destroy();
}
