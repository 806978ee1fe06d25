// The gateway owns one running wsgate: listeners, admin server, the runtime snapshot, metrics, admission and
// the live tunnels. It wires the stages together and owns start and stop.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AdminServer } from './admin/server.js';
import type { Config } from './config/types.js';
import { type CatalogueEntry, reasonLabel } from './errors.js';
import { PlainHttpProxy } from './http/plain-http.js';
import { Listener } from './listen/listener.js';
import { type CertificatePair, generateSelfSigned } from './listen/tls.js';
import { createLogger, type Logger } from './observe/log.js';
import { Metrics } from './observe/metrics.js';
import { Admission } from './proxy/admission.js';
import type { ProxyContext } from './proxy/context.js';
import { Runtime } from './proxy/runtime.js';
import { handleUpgrade } from './proxy/upgrade.js';
import { CLOSE_CODES } from './tunnel/close-frame.js';
import { sweepPeriodFor, TunnelSweeper } from './tunnel/sweeper.js';
import type { Tunnel } from './tunnel/tunnel.js';

export interface GatewayOptions {
  readonly log?: Logger;
  readonly metrics?: Metrics;
}

export interface BoundListener {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly secure: boolean;
  readonly selfSigned: boolean;
}

export class Gateway implements ProxyContext {
  runtime: Runtime;
  readonly metrics: Metrics;
  readonly admission = new Admission();
  readonly log: Logger;
  readonly tunnels = new Set<Tunnel>();
  /** Idle timeouts and keepalive pings for every tunnel, on one timer. */
  private readonly sweeper = new TunnelSweeper(this.tunnels);
  draining = false;
  private readonly listeners: Listener[] = [];
  private readonly plainHttp = new PlainHttpProxy();
  private admin: AdminServer | undefined;
  private started = false;

  private constructor(config: Config, options: GatewayOptions) {
    this.log = options.log ?? createLogger(config.log.level);
    this.metrics = options.metrics ?? new Metrics();
    this.runtime = new Runtime(config, this.metrics, this.log);
  }

  /** Binds every listener and the admin server; rejects (and closes what was bound) if any bind fails. */
  static async start(config: Config, options: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(config, options);
    try {
      await gw.runtime.start();
      await gw.bind();
    } catch (err) {
      await gw.stop(0);
      throw err;
    }
    return gw;
  }

  get config(): Config {
    return this.runtime.config;
  }

  get boundListeners(): readonly BoundListener[] {
    return this.listeners.map((l) => ({
      name: l.config.name,
      address: l.config.address,
      port: l.port,
      secure: l.secure,
      selfSigned: l.selfSigned,
    }));
  }

  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  private async bind(): Promise<void> {
    const config = this.runtime.config;
    let fallback: CertificatePair | undefined;
    if (config.listeners.some((l) => l.tls && !l.tls.files)) {
      fallback = await generateSelfSigned();
    }
    const handlers = {
      upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer, secure: boolean) => {
        handleUpgrade(this, req, socket, head, secure).catch((err: Error) => {
          this.log.error({ err }, 'upgrade handler failed');
          socket.destroy();
        });
      },
      request: (req: IncomingMessage, res: ServerResponse) => this.plainHttp.handle(this, req, res),
      clientError: (entry: CatalogueEntry, detail: string) => {
        this.metrics.handshakeRejections.inc({ route: '', status: String(entry.status), reason: reasonLabel(entry) });
        this.log.info({ event: 'rejected', status: entry.status, code: entry.code, detail }, 'malformed request');
      },
    };
    for (const lc of config.listeners) {
      const listener = new Listener(lc, handlers, config.timeouts.handshakeMs, fallback);
      this.listeners.push(listener);
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
    }
    this.admin = new AdminServer({
      ready: () => this.started && !this.draining,
      metricsText: () => this.metrics.text(),
      metricsContentType: this.metrics.registry.contentType,
    });
    const adminAddress = await this.admin.listen(config.admin.port, config.admin.address);
    this.log.info({ address: config.admin.address, port: adminAddress.port }, 'admin listening');
    this.startSweeper();
    this.started = true;
  }

  /** Sweeps often enough for the shortest idle timeout or keepalive setting in the running config. */
  private startSweeper(): void {
    const config = this.runtime.config;
    const durations = [config.timeouts.idleMs];
    for (const r of config.routes) if (r.keepalive) durations.push(r.keepalive.intervalMs, r.keepalive.timeoutMs);
    this.sweeper.start(sweepPeriodFor(durations));
  }

  /**
   * Stops accepting, then closes live tunnels gracefully and waits up to `drainMs` for them to finish; whatever
   * is left is destroyed. Resolves with the number of tunnels that had to be destroyed.
   */
  async stop(drainMs = this.runtime.config.timeouts.drainMs): Promise<number> {
    this.draining = true;
    this.sweeper.stop();
    this.runtime.stop();
    await Promise.all(this.listeners.map((l) => l.stopAccepting()));
    for (const t of this.tunnels) t.closeWithCode(CLOSE_CODES.GOING_AWAY, 'shutting down');
    const deadline = Date.now() + drainMs;
    while (this.tunnels.size > 0 && Date.now() < deadline) await delay(50);
    const destroyed = this.tunnels.size;
    for (const t of this.tunnels) t.abort('shutdown_deadline', 'proxy');
    this.plainHttp.close();
    await this.admin?.close();
    return destroyed;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
