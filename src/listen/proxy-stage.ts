// The first stage of a listener behind an L4 balancer (listeners[].clientAddress.proxyProtocol): before TLS and
// before any HTTP, read the connection's PROXY header, then hand the connection on with the header's bytes gone and
// what followed them put back. A connection from outside trustedProxies (when given), with a malformed or
// missing header, or without a whole header within the handshake timeout, is closed without an answer: nothing
// written could be read by a client that does not speak the protocol, and a balancer that does retries elsewhere.

import type { Socket } from 'node:net';
import { normaliseIp } from '../routing/hash-key.js';
import { rememberProxyHeader } from './client-address.js';
import { ProxyHeaderReader, type ProxyProtocolVersion } from './proxy-protocol.js';

/** The `reason` label of wsgate_client_address_rejections_total. */
export type ClientAddressRejection = 'untrusted' | 'invalid' | 'timeout' | 'closed';

export interface ProxyStageOptions {
  readonly version: ProxyProtocolVersion;
  /** Whether a peer may send a header at all (its address, IPv4-mapped written as IPv4). */
  readonly trusted: (peer: string) => boolean;
  readonly timeoutMs: number;
  /**
   * The header was read: `socket` now starts with the connection's own bytes. Called in the tick that read them,
   * with the socket still flowing: attach the next reader (or pause) before returning.
   */
  readonly accepted: (socket: Socket) => void;
  /** The connection was closed (or went away) before a header; `detail` says what was wrong, for the log. */
  readonly rejected: (socket: Socket, reason: ClientAddressRejection, detail: string) => void;
}

const kStage = Symbol('wsgate.proxyStage');
type StagedSocket = Socket & { [kStage]?: Stage };

interface Stage {
  readonly reader: ProxyHeaderReader;
  readonly options: ProxyStageOptions;
  readonly timer: NodeJS.Timeout;
}

/** Reads the PROXY header of a freshly accepted connection (see the file's header). */
export function readProxyHeader(socket: Socket, options: ProxyStageOptions): void {
  const peer = normaliseIp(socket.remoteAddress ?? '');
  if (!options.trusted(peer)) {
    socket.destroy();
    options.rejected(socket, 'untrusted', `peer ${peer} is not in trustedProxies`);
    return;
  }
  const s = socket as StagedSocket;
  s[kStage] = {
    reader: new ProxyHeaderReader(options.version),
    options,
    timer: setTimeout(stageTimedOut, options.timeoutMs, s),
  };
  s.on('data', onStageData);
  s.on('error', onStageGone);
  s.on('end', onStageGone);
  s.on('close', onStageGone);
}

function leave(socket: StagedSocket): Stage | undefined {
  const stage = socket[kStage];
  if (stage === undefined) return undefined;
  socket[kStage] = undefined;
  clearTimeout(stage.timer);
  socket.removeListener('data', onStageData);
  socket.removeListener('error', onStageGone);
  socket.removeListener('end', onStageGone);
  socket.removeListener('close', onStageGone);
  return stage;
}

function onStageData(this: StagedSocket, chunk: Buffer): void {
  const stage = this[kStage];
  if (stage === undefined) return;
  const step = stage.reader.push(chunk);
  if (step.status === 'more') return;
  leave(this);
  if (step.status === 'invalid') {
    this.destroy();
    stage.options.rejected(this, 'invalid', step.reason);
    return;
  }
  rememberProxyHeader(this, step.header);
  // Put back what followed the header; the next reader, attached in this same tick, gets it first.
  if (step.rest.length > 0) this.unshift(step.rest);
  stage.options.accepted(this);
}

function onStageGone(this: StagedSocket): void {
  const stage = leave(this);
  if (stage === undefined) return;
  this.destroy();
  stage.options.rejected(this, 'closed', 'the connection ended before its PROXY header');
}

function stageTimedOut(socket: StagedSocket): void {
  const stage = leave(socket);
  if (stage === undefined) return;
  socket.destroy();
  stage.options.rejected(socket, 'timeout', `no whole PROXY header within ${stage.options.timeoutMs} ms`);
}
