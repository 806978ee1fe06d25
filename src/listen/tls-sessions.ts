// TLS session resumption on a listener. Session tickets (stateless: the client keeps the session, encrypted with
// the listener's ticket key) resume wherever the key is the same: every worker and instance given the same
// `sessionTicketKeys` file, or every worker of one process tree with the key it shares. For clients that resume by
// session id instead (TLS 1.2 without tickets), an in-process cache of recent sessions, bounded in count and age.

import { randomBytes } from 'node:crypto';
import type { Server as TlsServer } from 'node:tls';
import { TICKET_KEY_BYTES } from '../config/normalise.js';
import type { TlsConfig } from '../config/types.js';

/** A process tree's own ticket key (no `sessionTicketKeys` file) is replaced this often. */
export const TICKET_KEY_ROTATION_MS = 12 * 60 * 60 * 1000;
/** Sessions kept for resumption by id, and for how long (OpenSSL's own default lifetime). */
export const SESSION_CACHE_ENTRIES = 20_000;
export const SESSION_CACHE_TTL_MS = 300_000;

export function newTicketKey(): Buffer {
  return randomBytes(TICKET_KEY_BYTES);
}

/** The key a listener encrypts tickets with: its file's, or the process tree's. */
export function ticketKeyFor(tls: TlsConfig, treeKey: Buffer): Buffer {
  return tls.sessionTicketKeys === undefined ? treeKey : Buffer.from(tls.sessionTicketKeys.base64, 'base64');
}

/** Sessions by id, oldest first (a Map keeps insertion order), dropped when too many or too old. */
export class SessionCache {
  private readonly sessions = new Map<string, { readonly data: Buffer; readonly until: number }>();

  /** Serves `server`'s session-id resumption from this cache. */
  attach(server: TlsServer): void {
    server.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
      this.store(id.toString('hex'), data, Date.now());
      done();
    });
    server.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => {
      done(null, this.find(id.toString('hex'), Date.now()) ?? null);
    });
  }

  store(id: string, data: Buffer, now: number): void {
    this.sessions.delete(id);
    this.sessions.set(id, { data, until: now + SESSION_CACHE_TTL_MS });
    for (const [oldest, entry] of this.sessions) {
      if (this.sessions.size <= SESSION_CACHE_ENTRIES && entry.until > now) break;
      this.sessions.delete(oldest);
    }
  }

  find(id: string, now: number): Buffer | undefined {
    const entry = this.sessions.get(id);
    if (entry === undefined) return undefined;
    if (entry.until > now) return entry.data;
    this.sessions.delete(id);
    return undefined;
  }

  get size(): number {
    return this.sessions.size;
  }
}
