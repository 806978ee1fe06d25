// The process's listeners: bound at start, brought in line with each new config on reload (TLS material checked and
// new sockets bound before anything changes, kept sockets updated in place, retired ones closed last), and the TLS
// material they share: the generated fallback certificate and the session ticket key.

import { createSecureContext } from 'node:tls';
import { isDeepStrictEqual } from 'node:util';
import type { Config, ListenerConfig } from '../config/types.js';
import { Listener, type ListenerHandlers, type SharedTls } from '../listen/listener.js';
import { type CertificatePair, generateSelfSigned, tlsServerOptions } from '../listen/tls.js';
import type { Logger } from '../observe/log.js';

export interface BoundListener {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly secure: boolean;
  readonly selfSigned: boolean;
}

export interface ListenerDiff {
  readonly added: string[];
  readonly removed: string[];
  /** Address, port or plain/TLS changed: a new socket was bound (before the old one closed, where possible). */
  readonly rebound: string[];
  /** Certificates or TLS settings changed: new handshakes use them, live sessions keep theirs. */
  readonly tlsUpdated: string[];
  /** Other settings changed in place (clientAddress): new connections and requests use them. */
  readonly updated: string[];
  readonly unchanged: string[];
}

export class ListenerSet {
  private listeners: Listener[] = [];
  private readonly handlers: ListenerHandlers;
  private readonly log: Logger;
  /** The running config's handshake timeout, read when a listener is made. */
  private readonly handshakeMs: () => number;
  /** Generated once, reused by every TLS listener without files, across reloads. */
  private fallbackCert: CertificatePair | undefined;
  /** The process tree's session ticket key; replaced by setTicketKey(). */
  private ticketKey: Buffer;

  constructor(options: {
    handlers: ListenerHandlers;
    log: Logger;
    handshakeMs: () => number;
    fallbackCert: CertificatePair | undefined;
    ticketKey: Buffer;
  }) {
    this.handlers = options.handlers;
    this.log = options.log;
    this.handshakeMs = options.handshakeMs;
    this.fallbackCert = options.fallbackCert;
    this.ticketKey = options.ticketKey;
  }

  get bound(): readonly BoundListener[] {
    return this.listeners.map((l) => ({
      name: l.config.name,
      address: l.config.address,
      port: l.port,
      secure: l.secure,
      selfSigned: l.selfSigned,
    }));
  }

  /** Binds each listener in turn; a failure rejects (the caller stops what was bound). */
  async bindAll(configs: readonly ListenerConfig[]): Promise<void> {
    for (const lc of configs) this.listeners.push(await this.open(lc));
  }

  async stopAccepting(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.stopAccepting()));
  }

  /** A new session ticket key for the TLS listeners without a key file (rotation); earlier tickets no longer resume. */
  setTicketKey(key: Buffer): void {
    this.ticketKey = key;
    for (const l of this.listeners) l.setTreeTicketKey(key);
  }

  /** Brings the listeners in line with `config`; on a bind failure closes what it bound and rethrows. */
  async reconcile(config: Config): Promise<ListenerDiff> {
    const diff: ListenerDiff = { added: [], removed: [], rebound: [], tlsUpdated: [], updated: [], unchanged: [] };
    const oldByName = new Map(this.listeners.map((l) => [l.config.name, l]));
    const keep = new Map<string, Listener>();
    const toBind: ListenerConfig[] = [];
    for (const lc of config.listeners) {
      const old = oldByName.get(lc.name);
      if (old && sameSocket(old.config, lc)) keep.set(lc.name, old);
      else toBind.push(lc);
    }
    // Every TLS setting that will be used is checked before anything is bound: a key that does not match its
    // certificate fails the reload here, with nothing changed.
    for (const lc of config.listeners) {
      if (!lc.tls || isDeepStrictEqual(keep.get(lc.name)?.config, lc)) continue;
      if (!lc.tls.files && !this.fallbackCert) this.fallbackCert = await generateSelfSigned();
      const {
        SNICallback: _sni,
        ALPNProtocols: _alpn,
        ...options
      } = tlsServerOptions(lc.tls, this.fallbackCert).options;
      try {
        createSecureContext(options);
      } catch (err) {
        throw new Error(`listener ${lc.name}: TLS certificate or key unusable: ${(err as Error).message}`);
      }
    }
    const retiring = this.listeners.filter((l) => keep.get(l.config.name) !== l);
    // A new socket on an endpoint a retiring listener holds cannot be bound first: that one closes, then binds.
    const heldBy = (lc: ListenerConfig) =>
      lc.port === 0
        ? undefined
        : retiring.find((l) => l.server.listening && l.config.address === lc.address && l.port === lc.port);
    const fresh: Listener[] = [];
    const closedEarly: Listener[] = [];
    try {
      for (const lc of toBind.filter((c) => !heldBy(c))) fresh.push(await this.open(lc));
      for (const lc of toBind) {
        const holder = heldBy(lc);
        if (!holder) continue;
        this.log.warn(
          { listener: lc.name, address: lc.address, port: lc.port },
          'endpoint taken over by another listener definition: closing the old socket first (brief refusal window)',
        );
        await holder.stopAccepting();
        closedEarly.push(holder);
        fresh.push(await this.open(lc));
      }
      // Certificates: a changed TLS block (or changed file contents) on a kept socket swaps its secure context.
      for (const lc of config.listeners) {
        const listener = keep.get(lc.name);
        if (!listener) continue;
        if (isDeepStrictEqual(listener.config, lc)) {
          diff.unchanged.push(lc.name);
          continue;
        }
        const tlsChanged = !isDeepStrictEqual(listener.config.tls, lc.tls);
        listener.update(lc, this.shared());
        if (tlsChanged) {
          diff.tlsUpdated.push(lc.name);
          this.log.info({ listener: lc.name }, 'TLS settings updated for new handshakes');
        } else {
          diff.updated.push(lc.name);
          this.log.info({ listener: lc.name }, 'client address settings updated for new connections');
        }
      }
    } catch (err) {
      for (const l of fresh) await l.stopAccepting();
      for (const l of closedEarly) {
        await l.listen().catch((e: Error) => this.log.error({ err: e, listener: l.config.name }, 'could not rebind'));
      }
      throw err;
    }
    for (const l of retiring) {
      await l.stopAccepting();
      if (config.listeners.some((lc) => lc.name === l.config.name)) diff.rebound.push(l.config.name);
      else diff.removed.push(l.config.name);
      this.log.info({ listener: l.config.name, port: l.port }, 'listener closed (live tunnels continue)');
    }
    for (const l of fresh) if (!diff.rebound.includes(l.config.name)) diff.added.push(l.config.name);
    // Keep the configured order for boundListeners.
    const byName = new Map([...keep, ...fresh.map((l) => [l.config.name, l] as const)]);
    this.listeners = config.listeners.map((lc) => byName.get(lc.name) as Listener);
    return diff;
  }

  private async open(lc: ListenerConfig): Promise<Listener> {
    if (lc.tls && !lc.tls.files && !this.fallbackCert) this.fallbackCert = await generateSelfSigned();
    const listener = new Listener(lc, this.handlers, this.handshakeMs(), this.shared());
    await listener.listen();
    this.log.info(
      {
        listener: lc.name,
        address: lc.address,
        port: listener.port,
        tls: listener.secure,
        selfSigned: listener.selfSigned,
      },
      listener.selfSigned ? 'listening (TLS with a generated self-signed certificate)' : 'listening',
    );
    return listener;
  }

  private shared(): SharedTls {
    return { fallbackCert: this.fallbackCert, ticketKey: this.ticketKey };
  }
}

/**
 * Same socket: same address, port, plain/TLS, PROXY protocol on/off and client certificates asked for or not (node
 * fixes that when a TLS server is made); the rest can change in place.
 */
function sameSocket(a: ListenerConfig, b: ListenerConfig): boolean {
  return (
    a.address === b.address &&
    a.port === b.port &&
    (a.tls === undefined) === (b.tls === undefined) &&
    (a.tls?.clientCert === 'none') === (b.tls?.clientCert === 'none') &&
    // With a PROXY header expected, the server bound to the port is a plain TCP one even for TLS.
    (a.clientAddress.proxyProtocol === 'off') === (b.clientAddress.proxyProtocol === 'off')
  );
}
