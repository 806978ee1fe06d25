// The live tunnels of one process as GET /api/connections lists them, so an operator can find one connection (by
// its request id, backend or client) among thousands. Read on demand from the gateway's tunnel set; nothing is kept
// per tunnel for it beyond what the tunnel has anyway.

import { backendAddress } from '../pool/admin-state.js';
import { placeOfTunnel } from '../proxy/tunnel-binding.js';
import type { Tunnel } from '../tunnel/tunnel.js';

export interface ConnectionFilter {
  /** Only tunnels to this backend (`host:port` or id). */
  readonly backend: string | undefined;
  readonly limit: number;
}

export interface ConnectionView {
  readonly id: string;
  readonly route: string;
  readonly pool: string;
  readonly backend: string;
  readonly client: string;
  readonly ageSeconds: number;
  readonly messages: { readonly clientToBackend: number; readonly backendToClient: number };
  readonly bytes: { readonly clientToBackend: number; readonly backendToClient: number };
}

export interface ConnectionList {
  /** Tunnels that matched the filter; `connections` holds at most `limit` of them. */
  readonly matched: number;
  readonly connections: ConnectionView[];
}

export function listConnections(tunnels: Iterable<Tunnel>, filter: ConnectionFilter): ConnectionList {
  const wanted = filter.backend === undefined ? undefined : backendAddress(filter.backend);
  const now = performance.now();
  const connections: ConnectionView[] = [];
  let matched = 0;
  for (const t of tunnels) {
    const place = placeOfTunnel(t);
    if (!place) continue;
    const backend = place.member.backend.id;
    if (wanted !== undefined && backendAddress(backend) !== wanted) continue;
    matched++;
    if (connections.length >= filter.limit) continue;
    connections.push({
      id: t.requestId,
      route: place.route.name,
      pool: place.pool.name,
      backend,
      client: t.clientAddress,
      ageSeconds: Math.round((now - t.startedAt) / 100) / 10,
      messages: { clientToBackend: t.c2b.messages, backendToClient: t.b2c.messages },
      bytes: { clientToBackend: t.c2b.bytes, backendToClient: t.b2c.bytes },
    });
  }
  return { matched, connections };
}

/** Several processes' lists as one: matches summed, the oldest connections first, at most `limit`. */
export function mergeConnectionLists(lists: readonly ConnectionList[], limit: number): ConnectionList {
  const all = lists.flatMap((l) => l.connections).sort((a, b) => b.ageSeconds - a.ageSeconds);
  return { matched: lists.reduce((n, l) => n + l.matched, 0), connections: all.slice(0, limit) };
}
