// Who the client is (listeners[].clientAddress): the socket's peer, unless an L4 balancer in front said otherwise
// in a PROXY protocol header (read per connection, before TLS) or trusted L7 proxies did in X-Forwarded-For /
// Forwarded (read per request). Every later stage (hash key `ip`, per-address caps, logs, the forwarding headers
// toward the backend, access lists, the status page) uses the address found here, never the socket's.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { ClientAddressConfig, ClientCertMode } from '../config/types.js';
import { CidrList } from '../net/cidr.js';
import { normaliseIp } from '../routing/hash-key.js';
import { forwardedClient } from './forwarded-for.js';
import type { ProxyHeader } from './proxy-protocol.js';

/** What one request's stages know of its connection. */
export interface ConnectionInfo {
  /** The listener is TLS (wss://, https://). */
  readonly secure: boolean;
  /** The client's address (IPv4-mapped IPv6 written as IPv4). */
  readonly client: string;
  /** The client's port, when the connection or a PROXY header says (forwarding headers carry none). */
  readonly clientPort: number | undefined;
  /** What the client connected to: the listener's own address, or the one a PROXY header named. */
  readonly destination: { readonly address: string; readonly port: number };
  /** The socket's peer is one of the listener's trustedProxies (its X-Request-Id and the like may be believed). */
  readonly trustedPeer: boolean;
  /** The TLS listener's listeners[].tls.clientCert (`none` on plain listeners): what the edge stage checks. */
  readonly clientCert: ClientCertMode;
}

/** A PROXY header's verdict on one connection, kept until the connection closes. */
interface ConnectionClient {
  readonly address: string;
  readonly port: number;
  readonly destination: { readonly address: string; readonly port: number };
}

// The raw TCP socket is what a PROXY header arrives on; a TLS listener's handlers see the TLSSocket node wraps it
// in, which shares the TCP connection's peer address and port: those find it again.
const byRawSocket = new WeakMap<Duplex, ConnectionClient>();
const byPeer = new Map<string, ConnectionClient>();

function peerKey(socket: Duplex): string {
  const s = socket as Socket;
  return `${s.remoteAddress}|${s.remotePort}`;
}

/** Records what a PROXY header said about `socket` (a header of kind `proxied`; the others change nothing). */
export function rememberProxyHeader(socket: Socket, header: ProxyHeader): void {
  if (header.kind !== 'proxied') return;
  const client: ConnectionClient = {
    address: normaliseIp(header.sourceAddress),
    port: header.sourcePort,
    destination: { address: normaliseIp(header.destinationAddress), port: header.destinationPort },
  };
  byRawSocket.set(socket, client);
  const key = peerKey(socket);
  byPeer.set(key, client);
  socket.once('close', () => {
    if (byPeer.get(key) === client) byPeer.delete(key);
  });
}

function proxiedClient(socket: Duplex): ConnectionClient | undefined {
  const direct = byRawSocket.get(socket);
  if (direct !== undefined || !(socket instanceof TLSSocket) || byPeer.size === 0) return direct;
  return byPeer.get(peerKey(socket));
}

/** The client of a connection before any request was read: a PROXY header's address, else the peer's. */
export function clientOfConnection(socket: Duplex): string {
  return proxiedClient(socket)?.address ?? normaliseIp((socket as Socket).remoteAddress ?? '');
}

/** A listener's policy, built once per listener config. */
export class ClientAddressPolicy {
  readonly config: ClientAddressConfig;
  readonly trusted: CidrList;

  constructor(config: ClientAddressConfig) {
    this.config = config;
    this.trusted = new CidrList(config.trustedProxies);
  }

  /** Whether the socket's peer may speak for clients (a PROXY header, forwarding headers, request ids). */
  isTrusted(peer: string): boolean {
    return this.trusted.has(peer);
  }

  /** What the stages of one request on `socket` (headers `rawHeaders`) know of its connection. */
  connectionOf(
    socket: Duplex,
    rawHeaders: readonly string[],
    secure: boolean,
    clientCert: ClientCertMode = 'none',
  ): ConnectionInfo {
    const s = socket as Socket;
    const peer = normaliseIp(s.remoteAddress ?? '');
    const trustedPeer = this.trusted.has(peer);
    const proxied = proxiedClient(socket);
    const connectionClient = proxied?.address ?? peer;
    let client = connectionClient;
    // Behind an L4 balancer that sent a PROXY header, the L7 hop (if any) is the client it named.
    if (this.config.forwardedFor) {
      client = forwardedClient(connectionClient, rawHeaders, this.trusted);
    }
    return {
      secure,
      client,
      clientPort: client === connectionClient ? (proxied?.port ?? s.remotePort) : undefined,
      destination: proxied?.destination ?? {
        address: normaliseIp(s.localAddress ?? ''),
        port: s.localPort ?? 0,
      },
      trustedPeer,
      clientCert,
    };
  }
}
