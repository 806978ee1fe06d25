// Keepalive pings of one tunnel (routes[].keepalive): the sweeper sends a ping to each watched peer at a frame
// boundary every interval, and closes the tunnel when a peer owes its pong past the timeout while nothing was read
// from it and the proxy was not holding it back. The answers are the proxy's own business: a pong carrying our
// payload is cut out of the stream on its way through the pump (PongWatch), all other pongs pass.

import type { KeepaliveConfig } from '../config/types.js';
import { Endings } from '../errors.js';
import { encodePing, encodePong } from './close-frame.js';
import type { FrameScanner } from './frame-scanner.js';
import type { Pump } from './pump.js';
import type { Tunnel } from './tunnel.js';

/** Payload of the proxy's own keepalive pings; pongs carrying it are absorbed, all others pass. */
export const KEEPALIVE_PAYLOAD = Buffer.from('wsgate-keepalive');

const EMPTY = Buffer.alloc(0);

/** The pongs a pinged peer owes, watched by the pump that reads that peer. */
export class PongWatch {
  /** A keepalive ping went to the peer and its pong has not come back. */
  expected = false;
  /** The next pong header must pass (it straddled chunks, so it cannot be cut out). */
  passNext = false;
  /** A pong we cut out that turned out not to be ours: written back in its place. */
  reinject: Buffer | undefined = undefined;

  /** A pong header of our payload's length while one is owed: likely ours (its payload decides). */
  mayBeOurs(s: FrameScanner): boolean {
    return this.expected && s.payloadLength === KEEPALIVE_PAYLOAD.length;
  }

  /** The pong that was cut out, read whole: true if it was ours; a foreign one is kept to be written back (`reinject`). */
  cutOut(payload: Buffer | undefined, mask: boolean): boolean {
    if (payload?.equals(KEEPALIVE_PAYLOAD)) {
      this.expected = false;
      return true;
    }
    this.reinject = encodePong(payload ?? EMPTY, mask);
    return false;
  }

  /** A pong that went through: true if it answered our ping (its header straddled two reads, so it was not cut out). */
  answeredBy(payload: Buffer | undefined): boolean {
    if (!this.expected || payload?.equals(KEEPALIVE_PAYLOAD) !== true) return false;
    this.expected = false;
    return true;
  }
}

export class Keepalive {
  readonly settings: KeepaliveConfig;
  /** Watches of the pinged peers' pongs (each shared with the pump reading that peer); undefined: not pinged. */
  readonly client: PongWatch | undefined;
  readonly backend: PongWatch | undefined;
  /** When the outstanding ping was sent (0: none outstanding). */
  pingSentMs = 0;
  lastPingMs: number;

  constructor(settings: KeepaliveConfig, startedMs: number) {
    this.settings = settings;
    this.client = settings.client ? new PongWatch() : undefined;
    this.backend = settings.backend ? new PongWatch() : undefined;
    this.lastPingMs = startedMs;
  }

  /** A pong came back; once every pinged peer answered, no ping is outstanding. */
  answered(): void {
    if (this.client?.expected !== true && this.backend?.expected !== true) this.pingSentMs = 0;
  }

  /** Sends pings where due and closes the tunnel when a peer did not answer in time; called by the sweeper. */
  sweep(t: Tunnel, nowMs: number): void {
    if (t.tearingDown) return;
    if (this.pingSentMs !== 0) {
      if (nowMs - this.pingSentMs < this.settings.timeoutMs) return;
      const clientSilent = silentSince(t.c2b, this.pingSentMs);
      if (!clientSilent && !silentSince(t.b2c, this.pingSentMs)) return;
      const ending = clientSilent ? Endings.CLIENT_KEEPALIVE_TIMEOUT : Endings.BACKEND_KEEPALIVE_TIMEOUT;
      t.hooks.keepaliveTimeout(t, ending);
      t.closeWith(ending);
      return;
    }
    if (nowMs - this.lastPingMs < this.settings.intervalMs) return;
    // Pings go out only at frame boundaries; a busy stream gets its ping on a later sweep.
    const client = this.client;
    const backend = this.backend;
    const toClient = client !== undefined && t.b2c.atFrameBoundary() && !t.b2c.closedToDest;
    const toBackend = backend !== undefined && t.c2b.atFrameBoundary() && !t.c2b.closedToDest;
    if (!toClient && !toBackend) return;
    if (toClient) {
      t.client.write(encodePing(KEEPALIVE_PAYLOAD, false));
      client.expected = true;
    }
    if (toBackend) {
      t.backend.write(encodePing(KEEPALIVE_PAYLOAD, true));
      backend.expected = true;
    }
    this.pingSentMs = nowMs;
    this.lastPingMs = nowMs;
  }
}

/**
 * Whether the peer `pump` reads owes a pong and shows no sign of life since the ping at `pingMs`: nothing read from
 * it since (a throttled upload proves the peer is there, its pong is only behind its data), and not held back by
 * the proxy (its pong may wait unread behind what it sent).
 */
function silentSince(pump: Pump, pingMs: number): boolean {
  return pump.pongs?.expected === true && pump.lastReadMs < pingMs && !pump.readingHeld();
}
