// A listener: a server bound to one address. By default the server is our own net or tls server and our
// FirstRequestReader reads each connection's first head: a whole WebSocket upgrade goes straight to the upgrade
// handler, every other connection is emitted into a node:http server that parses it
// (src/platform/connection-adoption.ts). Otherwise node:http's own http or https server listens and parses every
// head, and the reader only keeps the first-head deadline and the per-address count of connections waiting for
// one. The handlers it calls are the proxy's own; header size (431) and header-read (slowloris) limits are
// enforced here.

import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  createServer as createTlsServer,
  type SecureContext,
  type TLSSocket,
  type TlsOptions,
  type Server as TlsServer,
} from 'node:tls';
import type { ClientCertMode, ListenerConfig } from '../config/types.js';
import { type CatalogueEntry, Errors } from '../errors.js';
import { isLingering, rejectHandshake } from '../handshake/reject.js';
import { toOriginForm } from '../handshake/request-target.js';
import type { UpgradeRequest } from '../handshake/upgrade-head.js';
import { adoptConnections, UPGRADE_PARSER } from '../platform/connection-adoption.js';
import { ClientAddressPolicy, type ConnectionInfo, clientOfConnection } from './client-address.js';
import { FirstRequestReader } from './first-request.js';
import { type ClientAddressRejection, ProxyStage } from './proxy-stage.js';
import { clientErrorEntry, emitAcceptWarning, isTlsHandshakeError, reportAcceptError } from './server-errors.js';
import { type CertificatePair, tlsServerOptions } from './tls.js';
import { SessionCache, ticketKeyFor } from './tls-sessions.js';
import { inTurn, responsePending } from './turns.js';

/** Request heads above this many bytes get 431 (node's parser enforces it). */
export const MAX_HEADER_BYTES = 16 * 1024;

/**
 * Emitted on a request (with node's error) when its body cannot be read: a parse error in it (a bad chunk line)
 * or node's requestTimeout while it is incomplete. Whoever proxies the request answers it (400, 408) and lets go
 * of the backend at once; the connection is then refused as for any client error, if that answer left it open.
 */
export const REQUEST_BODY_FAILED = 'wsgate:bodyFailed';

/** Each connection's latest request: a client error while its body is still incomplete is that body's. */
const latestRequest = new WeakMap<Duplex, IncomingMessage>();

export interface ListenerHandlers {
  upgrade(req: UpgradeRequest, socket: Duplex, head: Buffer, connection: ConnectionInfo): void;
  request(req: IncomingMessage, res: ServerResponse, connection: ConnectionInfo): void;
  /**
   * A request that never became one: malformed, too large, too slow (the socket is already answered). `client` is
   * the client's address (as a PROXY header gave it, else the peer's), for the log line.
   */
  clientError(entry: CatalogueEntry, detail: string, client: string, path?: string): void;
  /**
   * accept() failed (EMFILE, ENFILE...): the process stays up. Called for every failure, so it can be counted;
   * `logCount` is set at most once a second (they come in bursts): the failures since the last report, to log.
   * Default: a rate-limited process warning.
   */
  acceptError?(err: NodeJS.ErrnoException, logCount: number | undefined): void;
  /** How many connections one client address may have waiting for their first request head (default: no cap). */
  waitingPerIp?(): number;
  /** A TLS handshake completed; `resumed`: a ticket or a cached session spared the full handshake. */
  tlsHandshake?(listener: string, resumed: boolean): void;
  /** A connection closed at the PROXY protocol stage (listeners[].clientAddress.proxyProtocol). */
  clientAddressRejected?(listener: string, reason: ClientAddressRejection, detail: string, peer: string): void;
}

/** What every TLS listener of a process shares. */
export interface SharedTls {
  /** The certificate for a TLS listener without files (generated once, the same in every worker). */
  readonly fallbackCert: CertificatePair | undefined;
  /** The process tree's session ticket key, for listeners without a `sessionTicketKeys` file. */
  readonly ticketKey: Buffer;
}

type SniCallback = (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;

export class Listener {
  /** Replaced by update() on reload; address, port and plain/TLS never change for one Listener. */
  config: ListenerConfig;
  /**
   * The server bound to the port: ours (net or tls), or node:http's own (`http` itself) when it reads every head;
   * behind a PROXY protocol balancer a plain TCP one, which hands each connection to `front` after its header.
   */
  readonly server: NetServer;
  /** The server a new connection reaches (after its PROXY header, if one is expected). */
  private readonly front: NetServer;
  /** Plain connections go straight to the first-request reader (no node:http server in front of it). */
  private readonly readsFirstHeads: boolean;
  /** node:http's server: parses the connections the first-request reader leaves to it, or all of them. */
  readonly http: Server;
  readonly secure: boolean;
  selfSigned: boolean;
  /** The current SNI chooser; node fixes a server's SNICallback at creation, so it calls through this field. */
  private sni: SniCallback | undefined;
  /** Who the client is (listeners[].clientAddress); replaced by update() on reload. */
  private policy: ClientAddressPolicy;
  /** listeners[].tls.clientCert, given to each request's ConnectionInfo; replaced by update() on reload. */
  private clientCert: ClientCertMode;
  /** TLS sessions by id, for clients that resume without tickets. */
  private readonly sessions = new SessionCache();
  /** Reads each connection's first head before node:http does, or (when node:http reads them all) watches it. */
  private readonly firstRequest: FirstRequestReader;

  constructor(config: ListenerConfig, handlers: ListenerHandlers, handshakeTimeoutMs: number, shared: SharedTls) {
    this.config = config;
    this.secure = config.tls !== undefined;
    this.policy = new ClientAddressPolicy(config.clientAddress);
    this.clientCert = config.tls?.clientCert ?? 'none';
    // How often node (and the first-request reader) check header deadlines; node's default (30 s) would let a
    // slowloris outlive the timeout.
    const checkIntervalMs = Math.max(250, Math.min(1000, Math.floor(handshakeTimeoutMs / 4)));
    const httpOptions = {
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: handshakeTimeoutMs,
      requestTimeout: Math.max(handshakeTimeoutMs, 30_000),
      connectionsCheckingInterval: checkIntervalMs,
      keepAliveTimeout: 5000,
      noDelay: true,
      // A missing Host is answered by the proxy (400 WSG_MISSING_HOST, counted), not with node's bare 400. With
      // this (and no maxRequestsPerSocket), every request node:http reads reaches one of the handlers below.
      requireHostHeader: false,
    };
    const ownServer = UPGRADE_PARSER === 'wsgate';
    let tlsOptions: TlsOptions | undefined;
    if (config.tls) {
      const { SNICallback, ...options } = tlsServerOptions(config.tls, shared.fallbackCert).options;
      this.selfSigned = config.tls.files === undefined;
      this.sni = SNICallback;
      const sniCallback: SniCallback = (name, cb) => (this.sni ? this.sni(name, cb) : cb(null, undefined));
      tlsOptions = {
        noDelay: true,
        ...options,
        ticketKeys: ticketKeyFor(config.tls, shared.ticketKey),
        SNICallback: sniCallback,
        handshakeTimeout: handshakeTimeoutMs,
      };
    } else {
      this.selfSigned = false;
    }
    if (!ownServer) {
      this.http = tlsOptions ? createHttpsServer({ ...httpOptions, ...tlsOptions }) : createHttpServer(httpOptions);
      this.front = this.http;
    } else {
      this.http = createHttpServer(httpOptions);
      adoptConnections(this.http);
      // The socket options node:http's and node:https's servers would give their connections.
      this.front = tlsOptions ? createTlsServer(tlsOptions) : createNetServer({ allowHalfOpen: true, noDelay: true });
    }
    this.readsFirstHeads = ownServer && !this.secure;
    if (config.clientAddress.proxyProtocol === 'off') {
      this.server = this.front;
    } else {
      // The PROXY header comes first, before TLS: the port is a plain TCP server's, and `front` (which never listens)
      // gets each connection once its header is read. (sameSocket in gateway.ts rebinds when this choice changes.)
      this.server = createNetServer({ allowHalfOpen: true, noDelay: true });
      const stage = new ProxyStage({
        version: () =>
          this.config.clientAddress.proxyProtocol === 'off' ? 'any' : this.config.clientAddress.proxyProtocol,
        trusted: (peer) => this.policy.trusted.empty || this.policy.isTrusted(peer),
        timeoutMs: handshakeTimeoutMs,
        checkIntervalMs,
        accepted: (socket, rest) => this.afterProxyHeader(socket, rest),
        rejected: (socket, reason, detail) =>
          handlers.clientAddressRejected?.(this.config.name, reason, detail, socket.remoteAddress ?? ''),
      });
      this.server.on('connection', (socket: Socket) => stage.accept(socket));
    }
    const secure = this.secure;
    const refuse = (socket: Duplex, entry: CatalogueEntry, detail: string, path?: string) => {
      handlers.clientError(entry, detail, clientOfConnection(socket), path);
      rejectHandshake(socket, entry);
    };
    const badTarget = (req: UpgradeRequest, socket: Duplex): boolean => {
      if (toOriginForm(req)) return false;
      // The target goes to the log line's `path`, where log.redact applies to it.
      refuse(socket, Errors.BAD_REQUEST, 'request target is neither origin nor absolute form', req.url ?? '');
      return true;
    };
    const upgrade = (req: UpgradeRequest, socket: Duplex, head: Buffer) => {
      if (!badTarget(req, socket)) {
        handlers.upgrade(req, socket, head, this.policy.connectionOf(socket, req.rawHeaders, secure, this.clientCert));
      }
    };
    const reader = firstRequestReader(this.http, upgrade, handlers, handshakeTimeoutMs, checkIntervalMs);
    this.firstRequest = reader;
    const connectionEvent = this.secure ? 'secureConnection' : 'connection';
    if (ownServer) this.front.on(connectionEvent, (socket: Socket) => reader.accept(socket));
    // On node:http's own server, ahead of its connection handler, the reader only keeps the first-head deadline and
    // the per-address count of connections waiting for one.
    else this.front.prependListener(connectionEvent, (socket: Socket) => reader.watch(socket));
    // node:http emits 'upgrade' as soon as the head is parsed, even while it still writes the responses to requests
    // pipelined before it. Deferring the upgrade until they are out is safe: node has let go of the socket (no
    // parser, its listeners removed, nobody reading), so what follows the head waits in the socket meanwhile.
    const upgradeInTurn = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // node's handler for the last of those responses armed its keep-alive timeout on the socket; a tunnel has none.
      (socket as Socket).setTimeout(0);
      upgrade(req, socket, head);
    };
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.firstRequest.settled(req.socket);
      // node removed its 'error' listener: a reset while the upgrade waits must not throw (the socket is destroyed
      // anyway, so the upgrade is dropped).
      if (responsePending(socket)) socket.on('error', ignoreError);
      inTurn(socket, null, upgradeInTurn, req, socket, head);
    });
    const requestInTurn = (req: IncomingMessage, res: ServerResponse) => {
      // llhttp accepts HTTP/0.9 ("GET /path" with no version and no headers, also what a CR/LF injected into a
      // request target looks like); such a request must never be proxied as if it were HTTP/1.1.
      if (req.httpVersionMajor < 1) {
        refuse(req.socket, Errors.BAD_HTTP_VERSION, `HTTP/${req.httpVersion}`);
        return;
      }
      if (!badTarget(req, req.socket)) {
        handlers.request(req, res, this.policy.connectionOf(req.socket, req.rawHeaders, secure, this.clientCert));
      }
    };
    this.http.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.firstRequest.settled(req.socket);
      latestRequest.set(req.socket, req);
      // A pipelined request is served once the responses before it are out, so nothing is proxied on a connection
      // an earlier answer closed, and our raw refusals (reject.ts) cannot overtake them.
      inTurn(req.socket, res, requestInTurn, req, res);
    });
    // node:http answers an `Expect` other than 100-continue itself (417), without 'request' or 'clientError';
    // with this listener it is ours to answer, as node would, and the first-head deadline is settled.
    this.http.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      this.firstRequest.settled(req.socket);
      inTurn(req.socket, res, expectationFailed, res);
    });
    // After listen(), 'error' only reports accept() failures (EMFILE/ENFILE when libuv's reserve-fd trick could
    // not shed the connection). Without a listener node would throw it and take the process down.
    this.server.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.server.listening) return; // bind errors: listen() rejects with them
      reportAcceptError(err, handlers.acceptError ?? emitAcceptWarning);
    });
    const clientError = (err: NodeJS.ErrnoException, socket: Duplex) => {
      // node:http answers this one itself (its own header timeout included): our first-head deadline is moot.
      this.firstRequest.settled(socket as Socket);
      // Already refused: its lingering close ends it (where node:http still parses it, it reads what follows).
      if (isLingering(socket)) return;
      // Node may report one bad request twice (the second time on a socket no longer writable): answer once.
      if (!socket.writable || err.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      if (this.secure && isTlsHandshakeError(err)) {
        // A failed TLS handshake (https routes tlsClientError here). No HTTP answer can be read on such a socket,
        // and a lingering close would keep it 2 s past the handshake timeout: count it and drop it now.
        const tlsEntry = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? Errors.HANDSHAKE_TIMEOUT : Errors.BAD_REQUEST;
        handlers.clientError(tlsEntry, err.code ?? err.message, clientOfConnection(socket));
        socket.destroy();
        return;
      }
      // A bad request pipelined behind good ones is answered (and counted) after them, not across their responses
      // (node's own default would not answer at all once one has started), and not at all if one of them closes
      // the connection. Until then its parser, which can only repeat the error, reads nothing more.
      // The error may lie in the body of a request already handed out: that request hears it first.
      const reading = latestRequest.get(socket);
      if (reading && !reading.complete) reading.emit(REQUEST_BODY_FAILED, err);
      if (responsePending(socket)) socket.pause();
      inTurn(socket, null, refuse, socket, clientErrorEntry(err), err.code ?? err.message);
    };
    this.http.on('clientError', clientError);
    if (this.front !== this.http) this.front.on('tlsClientError', clientError);
    if (this.secure) {
      this.sessions.attach(this.front as TlsServer);
      this.front.on('secureConnection', (socket: TLSSocket) =>
        handlers.tlsHandshake?.(this.config.name, socket.isSessionReused()),
      );
    }
  }

  /** A connection whose PROXY header was read goes on to `front`, `rest` (what followed the header) first. */
  private afterProxyHeader(socket: Socket, rest: Buffer): void {
    if (this.readsFirstHeads) {
      this.firstRequest.accept(socket, rest);
      return;
    }
    if (rest.length > 0) socket.unshift(rest);
    // TLS takes the socket over as a stream: nothing may flow past it meanwhile.
    if (this.secure) socket.pause();
    this.front.emit('connection', socket);
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

  /**
   * Stops accepting; live connections are left to their owners. Resolves once the port is released, not when
   * every connection has ended: node's close callback also waits for upgraded sockets, i.e. live tunnels.
   */
  stopAccepting(): Promise<void> {
    if (this.server.listening) {
      this.server.close();
      // node:http's own server stops its connection checker on close; one that never listened is told here.
      if (this.http !== this.server) this.http.close();
      // Idle keep-alive HTTP connections are ours to end; requests in flight finish and then close.
      this.http.closeIdleConnections();
    }
    return Promise.resolve();
  }

  /**
   * A reloaded config for the same socket: the client-address policy for new requests, and new certificates, SNI
   * entries, ciphers or minimum version for new TLS handshakes (sessions already established keep theirs). Throws
   * (leaving the old settings) when a key does not match its certificate.
   */
  update(config: ListenerConfig, shared: SharedTls): void {
    if ((config.tls === undefined) !== !this.secure) {
      throw new Error(`listener ${config.name}: plain/TLS cannot change in place`);
    }
    if (config.tls) {
      const { SNICallback, ...options } = tlsServerOptions(config.tls, shared.fallbackCert).options;
      (this.front as TlsServer).setSecureContext({
        ...options,
        ticketKeys: ticketKeyFor(config.tls, shared.ticketKey),
      });
      this.sni = SNICallback;
      this.selfSigned = config.tls.files === undefined;
    }
    this.policy = new ClientAddressPolicy(config.clientAddress);
    this.clientCert = config.tls?.clientCert ?? 'none';
    this.config = config;
  }

  /** The process tree's ticket key changed (rotation): listeners without a key file take it. */
  setTreeTicketKey(key: Buffer): void {
    if (this.config.tls && this.config.tls.sessionTicketKeys === undefined)
      (this.front as TlsServer).setTicketKeys(key);
  }
}

/** The reader of first request heads; what it does not read itself it hands to node:http's server `http`. */
function firstRequestReader(
  http: Server,
  upgrade: (req: UpgradeRequest, socket: Duplex, head: Buffer) => void,
  handlers: ListenerHandlers,
  timeoutMs: number,
  checkIntervalMs: number,
): FirstRequestReader {
  return new FirstRequestReader(
    http,
    (socket: Socket) => http.emit('connection', socket),
    {
      upgrade,
      timeout(socket: Socket) {
        handlers.clientError(
          Errors.HANDSHAKE_TIMEOUT,
          `no complete request head within ${timeoutMs} ms`,
          clientOfConnection(socket),
        );
        rejectHandshake(socket, Errors.HANDSHAKE_TIMEOUT);
      },
      waitingPerIp: () => handlers.waitingPerIp?.() ?? Number.POSITIVE_INFINITY,
      tooManyWaiting(socket: Socket, ip: string) {
        // Closed unread and at once: under a flood, an answer and a lingering close would hold the descriptor.
        handlers.clientError(Errors.TOO_MANY_FROM_IP, 'too many connections waiting for their first request', ip);
        socket.destroy();
      },
    },
    timeoutMs,
    checkIntervalMs,
  );
}

/** What node:http answers to an `Expect` it cannot meet. */
function expectationFailed(res: ServerResponse): void {
  res.writeHead(417);
  res.end();
}

function ignoreError(): void {}
