// Connection admission: the global and per-client-IP caps. A slot is held from an accepted request until the
// connection (an upgrade: the client socket, whatever became of it) or the plain request's response closes:
// released in one place, by that event, whichever way the request ended.

import { type CatalogueEntry, Errors } from '../errors.js';

/** What holds a slot: it emits 'close' once when it is over (a net.Socket, a ServerResponse). */
export interface SlotHolder {
  once(event: 'close', listener: () => void): unknown;
}

export class Admission {
  active = 0;
  private readonly perIp = new Map<string, number>();

  /**
   * Takes a slot for `ip`, held until `holder` closes, or returns the catalogue entry to refuse with (503 global,
   * 429 per IP).
   */
  tryAcquire(ip: string, maxConnections: number, maxPerIp: number, holder: SlotHolder): CatalogueEntry | undefined {
    if (this.active >= maxConnections) return Errors.TOO_MANY_CONNECTIONS;
    const fromIp = this.perIp.get(ip) ?? 0;
    if (fromIp >= maxPerIp) return Errors.TOO_MANY_FROM_IP;
    this.active++;
    this.perIp.set(ip, fromIp + 1);
    holder.once('close', () => this.release(ip));
    return undefined;
  }

  private release(ip: string): void {
    this.active--;
    const left = (this.perIp.get(ip) ?? 1) - 1;
    if (left <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, left);
  }

  get distinctIps(): number {
    return this.perIp.size;
  }
}
