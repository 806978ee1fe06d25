// Connection admission: the global and per-client-IP caps, counted from the accepted upgrade to the tunnel's end.

import { type CatalogueEntry, Errors } from '../errors.js';

export class Admission {
  active = 0;
  private readonly perIp = new Map<string, number>();

  /** Takes a slot for `ip`, or returns the catalogue entry to refuse with (503 global, 429 per IP). */
  tryAcquire(ip: string, maxConnections: number, maxPerIp: number): CatalogueEntry | undefined {
    if (this.active >= maxConnections) return Errors.TOO_MANY_CONNECTIONS;
    const fromIp = this.perIp.get(ip) ?? 0;
    if (fromIp >= maxPerIp) return Errors.TOO_MANY_FROM_IP;
    this.active++;
    this.perIp.set(ip, fromIp + 1);
    return undefined;
  }

  release(ip: string): void {
    this.active--;
    const left = (this.perIp.get(ip) ?? 1) - 1;
    if (left <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, left);
  }

  get distinctIps(): number {
    return this.perIp.size;
  }
}
