// The first stage of a listener behind an L4 balancer (listeners[].clientAddress.proxyProtocol): before TLS and
// before any HTTP, read the connection's PROXY header, then hand the connection on with the bytes that followed
// the header. A connection from outside trustedProxies (when given), with a malformed or missing header, or without
// a whole header within the handshake timeout, is closed without an answer: nothing written could be read by a
// client that does not speak the protocol, and a balancer that does retries elsewhere. One deadline check per
// listener serves every waiting connection (no timer per connection).

import type { Socket } from 'node:net';
import { normaliseIp } from '../routing/hash-key.js';
import { rememberProxyHeader } from './client-address.js';
import { ProxyHeaderReader, type ProxyProtocolVersion } from './proxy-protocol.js';

/** The `reason` label of wsgate_client_address_rejections_total. */
export type ClientAddressRejection = 'untrusted' | 'invalid' | 'timeout' | 'closed';

export interface ProxyStageOptions {
  /** The version the listener expects now (a reload may change it between v1, v2 and any). */
  version(): ProxyProtocolVersion;
  /** Whether a peer may send a header at all (its address, IPv4-mapped written as IPv4). */
  trusted(peer: string): boolean;
  readonly timeoutMs: number;
  readonly checkIntervalMs: number;
  /**
   * The header was read: `rest` is what followed it in the same read (maybe nothing); the socket still flows and
   * its later bytes are the connection's own, so attach the next reader (or pause) before returning.
   */
  accepted(socket: Socket, rest: Buffer): void;
  /** The connection was closed (or went away) before a header; `detail` says what was wrong, for the log. */
  rejected(socket: Socket, reason: ClientAddressRejection, detail: string): void;
}

const kStage = Symbol('wsgate.proxyStage');
type StagedSocket = Socket & { [kStage]?: Waiting };

interface Waiting {
  readonly stage: ProxyStage;
  readonly reader: ProxyHeaderReader;
  readonly since: number;
}

export class ProxyStage {
  private readonly options: ProxyStageOptions;
  private readonly waiting = new Set<StagedSocket>();
  private checker: NodeJS.Timeout | undefined;

  constructor(options: ProxyStageOptions) {
    this.options = options;
  }

  /** A freshly accepted connection: refuse an untrusted peer at once, else wait for its header. */
  accept(socket: Socket): void {
    const peer = normaliseIp(socket.remoteAddress ?? '');
    if (!this.options.trusted(peer)) {
      socket.destroy();
      this.options.rejected(socket, 'untrusted', `peer ${peer} is not in trustedProxies`);
      return;
    }
    const s = socket as StagedSocket;
    s[kStage] = { stage: this, reader: new ProxyHeaderReader(this.options.version()), since: performance.now() };
    this.waiting.add(s);
    this.checker ??= setInterval(checkStage, this.options.checkIntervalMs, this).unref();
    s.on('data', onStageData);
    s.on('error', onStageGone);
    s.on('end', onStageGone);
    s.on('close', onStageGone);
  }

  /** @internal */
  read(socket: StagedSocket, waiting: Waiting, chunk: Buffer): void {
    const step = waiting.reader.push(chunk);
    if (step.status === 'more') return;
    this.leave(socket);
    if (step.status === 'invalid') {
      socket.destroy();
      this.options.rejected(socket, 'invalid', step.reason);
      return;
    }
    rememberProxyHeader(socket, step.header);
    this.options.accepted(socket, step.rest);
  }

  /** @internal */
  gone(socket: StagedSocket): void {
    this.leave(socket);
    socket.destroy();
    this.options.rejected(socket, 'closed', 'the connection ended before its PROXY header');
  }

  /** @internal */
  check(now: number): void {
    for (const socket of this.waiting) {
      const since = socket[kStage]?.since ?? now;
      if (now - since < this.options.timeoutMs) continue;
      this.leave(socket);
      socket.destroy();
      this.options.rejected(socket, 'timeout', `no whole PROXY header within ${this.options.timeoutMs} ms`);
    }
    if (this.waiting.size === 0 && this.checker !== undefined) {
      clearInterval(this.checker);
      this.checker = undefined;
    }
  }

  private leave(socket: StagedSocket): void {
    socket[kStage] = undefined;
    this.waiting.delete(socket);
    socket.removeListener('data', onStageData);
    socket.removeListener('error', onStageGone);
    socket.removeListener('end', onStageGone);
    socket.removeListener('close', onStageGone);
  }
}

function onStageData(this: StagedSocket, chunk: Buffer): void {
  const waiting = this[kStage];
  waiting?.stage.read(this, waiting, chunk);
}

function onStageGone(this: StagedSocket): void {
  this[kStage]?.stage.gone(this);
}

function checkStage(stage: ProxyStage): void {
  stage.check(performance.now());
}
