// The backend side of plain HTTP requests: one undici Pool per backend (keep-alive, no pipelining, at most
// limits.maxConnections connections, a connect timeout of its own), made when the backend first gets a request.
// Pools of backends that left their pool are closed when the next pool is made (a closing pool finishes what it
// has in flight first), so DNS churn does not pile them up.

import { isDeepStrictEqual } from 'node:util';
import { type Dispatcher, Pool } from 'undici';
import type { BackendConfig } from '../config/types.js';
import type { Member } from '../pool/pool.js';
import { upstreamTlsOptions } from '../upstream/tls.js';

/** Idle backend connections close after this long (or sooner, when the backend's Keep-Alive hint says so). */
export const IDLE_BACKEND_CONNECTION_MS = 4000;

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

export class UpstreamClient {
  private readonly pools = new Map<Member, BackendPool>();

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

  /** Ends every pool: requests in flight are cut (shutdown). */
  close(): void {
    for (const { pool } of this.pools.values()) void pool.destroy();
    this.pools.clear();
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

function poolFor(backend: BackendConfig, settings: UpstreamSettings): Pool {
  const host = backend.host.includes(':') ? `[${backend.host}]` : backend.host;
  const origin = `${backend.tls ? 'https' : 'http'}://${host}:${backend.port}`;
  const tls = backend.tls ? upstreamTlsOptions(backend) : undefined;
  return new Pool(origin, {
    connections: settings.maxConnections,
    // One request at a time per connection: a long poll would hold up every request pipelined behind it.
    pipelining: 1,
    keepAliveTimeout: IDLE_BACKEND_CONNECTION_MS,
    connectTimeout: settings.connectTimeoutMs,
    // wss:// backends speak HTTP/1.1 to us, as on the upgrade path.
    allowH2: false,
    ...(tls === undefined
      ? {}
      : {
          connect: {
            rejectUnauthorized: tls.rejectUnauthorized,
            ...(tls.ca === undefined ? {} : { ca: tls.ca }),
            ...(tls.servername === undefined ? {} : { servername: tls.servername }),
          },
        }),
  });
}
