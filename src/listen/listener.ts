// A listener: a node:http or node:https server bound to one address, used only for its HTTP/1.1 parser. The
// handlers it calls are the proxy's own; header size (431) and header-read (slowloris) limits are enforced here.

import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenerConfig } from '../config/types.js';
import { type CatalogueEntry, Errors } from '../errors.js';
import { rejectHandshake } from '../handshake/reject.js';
import { type CertificatePair, tlsServerOptions } from './tls.js';

/** Request heads above this many bytes get 431 (node's parser enforces it). */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface ListenerHandlers {
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, secure: boolean): void;
  request(req: IncomingMessage, res: ServerResponse, secure: boolean): void;
  /** A request that never became one: malformed, too large, too slow. The socket is already answered. */
  clientError(entry: CatalogueEntry, detail: string): void;
}

export class Listener {
  readonly config: ListenerConfig;
  readonly server: Server;
  readonly secure: boolean;
  readonly selfSigned: boolean;

  constructor(
    config: ListenerConfig,
    handlers: ListenerHandlers,
    handshakeTimeoutMs: number,
    fallbackCert?: CertificatePair,
  ) {
    this.config = config;
    this.secure = config.tls !== undefined;
    const httpOptions = {
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: handshakeTimeoutMs,
      requestTimeout: Math.max(handshakeTimeoutMs, 30_000),
      // How often node checks headersTimeout; the default (30 s) would let a slowloris outlive the timeout.
      connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(handshakeTimeoutMs / 4))),
      keepAliveTimeout: 5000,
      noDelay: true,
    };
    if (config.tls) {
      const tls = tlsServerOptions(config.tls, fallbackCert);
      this.selfSigned = tls.selfSigned;
      this.server = createHttpsServer({ ...httpOptions, ...tls.options, handshakeTimeout: handshakeTimeoutMs });
    } else {
      this.selfSigned = false;
      this.server = createHttpServer(httpOptions);
    }
    const secure = this.secure;
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      handlers.upgrade(req, socket, head, secure),
    );
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => handlers.request(req, res, secure));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // Node may report one bad request twice (the second time on a socket no longer writable): answer once.
      if (!socket.writable || err.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      const entry = clientErrorEntry(err);
      handlers.clientError(entry, err.code ?? err.message);
      rejectHandshake(socket, entry);
    });
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen({ port: this.config.port, host: this.config.address }, () => {
        this.server.removeListener('error', onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? this.config.port;
  }

  /** Stops accepting; live connections are left to their owners. */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      // Idle keep-alive HTTP connections would hold close() open; upgraded sockets are no longer the server's.
      this.server.closeIdleConnections();
    });
  }
}

function clientErrorEntry(err: NodeJS.ErrnoException): CatalogueEntry {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return Errors.HEADERS_TOO_LARGE;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_TIMEOUT':
      return Errors.HANDSHAKE_TIMEOUT;
    default:
      return Errors.BAD_REQUEST;
  }
}
