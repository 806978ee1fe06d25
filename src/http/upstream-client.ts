// The backend side of plain HTTP requests: one undici Pool per backend (keep-alive, no pipelining, at most
// limits.maxConnections connections, a connect timeout of its own), made when the backend first gets a request.
// Pools of backends that left their pool are closed when the next pool is made (a closing pool finishes what it
// has in flight first), so DNS churn does not pile them up.

import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { isDeepStrictEqual } from 'node:util';
import { type buildConnector, Client, type Dispatcher, Pool } from 'undici';
import type { BackendConfig } from '../config/types.js';
import type { Member } from '../pool/pool.js';
import { tcpWithPreamble } from '../upstream/handshake.js';
import { upstreamTlsOptions } from '../upstream/tls.js';

/** Idle backend connections close after this long (or sooner, when the backend's Keep-Alive hint says so). */
export const IDLE_BACKEND_CONNECTION_MS = 4000;

/**
 * The `servername` every request to a backend is dispatched with. undici takes a request's TLS name from its Host
 * header unless told, and closes a wss:// backend's idle connection whenever that name changes from one request to
 * the next; our connector names the backend from pools.NAME.tls alone and never reads it, so one constant keeps the
 * connections of clients that vary Host. (undici's Request reads the option; its DispatchOptions type lacks it.)
 */
export const BACKEND_SERVERNAME = 'wsgate-backend';

/** What a backend's pool is built with; a change (a reload) gives the backend a new pool. */
export interface UpstreamSettings {
  /** limits.maxConnections: every request in flight holds an admission slot, so none waits for a connection. */
  readonly maxConnections: number;
  /** timeouts.handshake: dialling (TCP and TLS) must be done in this time. */
  readonly connectTimeoutMs: number;
}

interface BackendPool {
  readonly pool: Pool;
  backend: BackendConfig;
  readonly settings: UpstreamSettings;
}

/** Whose the private connections are: one client connection, closed with them when it closes. */
export interface ConnectionOwner {
  once(event: 'close', listener: () => void): unknown;
}

export class UpstreamClient {
  private readonly pools = new Map<Member, BackendPool>();
  /**
   * Backends of a pool with proxyProtocol: a PROXY header names one client, so each client connection gets its own
   * backend connections (never shared with another client's requests, as HAProxy does with `send-proxy`).
   */
  private readonly privateClients = new WeakMap<ConnectionOwner, Map<Member, Client>>();
  private readonly liveClients = new Set<Client>();

  /** The pool that sends `member`'s requests. */
  poolFor(member: Member, settings: UpstreamSettings): Dispatcher {
    const current = this.pools.get(member);
    if (current && current.backend === member.backend && current.settings === settings) return current.pool;
    if (current && sameBackend(current.backend, member.backend) && isDeepStrictEqual(current.settings, settings)) {
      // A reload made equal config objects: remember them, so the next request takes the first branch.
      current.backend = member.backend;
      return current.pool;
    }
    if (current) void current.pool.close();
    this.closeDeparted();
    const made: BackendPool = { pool: poolFor(member.backend, settings), backend: member.backend, settings };
    this.pools.set(member, made);
    return made.pool;
  }

  /**
   * The connection that sends `member`'s requests for the client connection `owner`, starting with `preamble`
   * (its PROXY header); closed when `owner` closes.
   */
  privateFor(member: Member, settings: UpstreamSettings, owner: ConnectionOwner, preamble: Buffer): Dispatcher {
    let clients = this.privateClients.get(owner);
    const existing = clients?.get(member);
    if (existing !== undefined && !existing.closed && !existing.destroyed) return existing;
    if (clients === undefined) {
      const made = new Map<Member, Client>();
      this.privateClients.set(owner, made);
      owner.once('close', () => {
        for (const client of made.values()) {
          this.liveClients.delete(client);
          void client.close();
        }
      });
      clients = made;
    }
    const client = new Client(originOf(member.backend), {
      ...commonOptions(settings),
      connect: connectorWithPreamble(member.backend, preamble, settings.connectTimeoutMs),
    });
    clients.set(member, client);
    this.liveClients.add(client);
    return client;
  }

  /** Ends every pool: requests in flight are cut (shutdown). */
  close(): void {
    for (const { pool } of this.pools.values()) void pool.destroy();
    this.pools.clear();
    for (const client of this.liveClients) void client.destroy();
    this.liveClients.clear();
  }

  private closeDeparted(): void {
    for (const [member, { pool }] of this.pools) {
      if (member.index >= 0) continue;
      void pool.close();
      this.pools.delete(member);
    }
  }
}

function sameBackend(a: BackendConfig, b: BackendConfig): boolean {
  return a.id === b.id && isDeepStrictEqual(a.tlsOptions, b.tlsOptions);
}

function originOf(backend: BackendConfig): string {
  const host = backend.host.includes(':') ? `[${backend.host}]` : backend.host;
  return `${backend.tls ? 'https' : 'http'}://${host}:${backend.port}`;
}

/** What a pool's and a private client's connections share. */
function commonOptions(settings: UpstreamSettings) {
  return {
    // One request at a time per connection: a long poll would hold up every request pipelined behind it.
    pipelining: 1,
    keepAliveTimeout: IDLE_BACKEND_CONNECTION_MS,
    connectTimeout: settings.connectTimeoutMs,
    // wss:// backends speak HTTP/1.1 to us, as on the upgrade path.
    allowH2: false,
  } as const;
}

const NO_PREAMBLE = Buffer.alloc(0);

/** Dials `backend` with `preamble` first on the TCP connection (before TLS for a wss:// backend). */
function connectorWithPreamble(backend: BackendConfig, preamble: Buffer, timeoutMs: number): buildConnector.connector {
  return (_options, callback) => {
    const tcp = tcpWithPreamble(backend, preamble);
    const socket: Socket = backend.tls
      ? tlsConnect({ socket: tcp, host: backend.host, ALPNProtocols: ['http/1.1'], ...upstreamTlsOptions(backend) })
      : tcp;
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        socket.destroy();
        callback(err, null);
      } else callback(null, socket);
    };
    const timer = setTimeout(() => settle(new Error(`connect timeout after ${timeoutMs} ms`)), timeoutMs);
    socket.once(backend.tls ? 'secureConnect' : 'connect', () => settle(null));
    socket.once('error', (err) => settle(err));
  };
}

function poolFor(backend: BackendConfig, settings: UpstreamSettings): Pool {
  return new Pool(originOf(backend), {
    connections: settings.maxConnections,
    ...commonOptions(settings),
    // A wss:// backend is dialled with pools.NAME.tls only: undici's own connector would take the SNI name and the
    // name the certificate is checked against from the client's Host header, over tls.serverName and the address.
    ...(backend.tls ? { connect: connectorWithPreamble(backend, NO_PREAMBLE, settings.connectTimeoutMs) } : {}),
  });
}
