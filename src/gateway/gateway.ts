// The data plane of one process: listeners, the runtime snapshot, metrics, admission and the live tunnels. It
// wires the stages together and owns their lifecycle: start, reload (apply a validated config without touching
// unchanged routes' connections), shutdown (readiness off, stop accepting, drain) and stop. Operations (the admin
// listener, reload triggers, status document) are the control plane's (src/control/), which drives this class.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ConnectionRate } from '../access/connection-rate.js';
import type { Config } from '../config/types.js';
import { type CatalogueEntry, type Ending, Endings } from '../errors.js';
import type { UpgradeRequest } from '../handshake/upgrade-head.js';
import type { ConnectionInfo } from '../listen/client-address.js';
import type { ListenerHandlers } from '../listen/listener.js';
import type { CertificatePair } from '../listen/tls.js';
import { newTicketKey } from '../listen/tls-sessions.js';
import { createLogger, type Logger } from '../observe/log.js';
import { Metrics } from '../observe/metrics.js';
import { describePlatform, platformReport } from '../platform/report.js';
import type { BackendOverride } from '../pool/admin-state.js';
import { Admission } from '../proxy/admission.js';
import type { ProxyContext } from '../proxy/context.js';
import { PlainHttpProxy } from '../proxy/plain-http.js';
import { refuse } from '../proxy/refuse.js';
import { type NameDiff, Runtime } from '../proxy/runtime.js';
import { routeOfTunnel } from '../proxy/tunnel-binding.js';
import { handleUpgrade } from '../proxy/upgrade.js';
import { normaliseIp } from '../routing/hash-key.js';
import { type DrainResult, drainTunnels } from '../tunnel/drain.js';
import { sweepPeriodFor, TunnelSweeper } from '../tunnel/sweeper.js';
import type { Tunnel } from '../tunnel/tunnel.js';
import { runtimeOverrides } from './backend-control.js';
import { type BoundListener, type ListenerDiff, ListenerSet } from './listener-set.js';
import { collectProcessStatus, type ProcessStatus } from './process-status.js';

/** How long a shutdown waits for cut tunnels' sockets to close, so each gets its close line. */
const TUNNEL_SETTLE_MS = 1000;

export interface GatewayOptions {
  readonly log?: Logger;
  readonly metrics?: Metrics;
  /** Generation of the initial config (cluster workers get the primary's). */
  readonly generation?: number;
  /**
   * The certificate for TLS listeners without files, instead of one generated here: cluster workers get the
   * primary's, so every worker serves the same one.
   */
  readonly fallbackCert?: CertificatePair;
  /**
   * The session ticket key for TLS listeners without a `sessionTicketKeys` file (default: made here). Cluster
   * workers get the primary's, so a session resumes whichever worker the client reaches.
   */
  readonly ticketKey?: Buffer;
}

/** What a reload changed; returned by POST /reload and logged. */
export interface ReloadSummary {
  readonly generation: number;
  readonly listeners: ListenerDiff;
  readonly routes: NameDiff;
  readonly pools: NameDiff;
  /** Tunnels told to go away (1001): on removed routes, on removed pools, on routes moved to another pool. */
  readonly draining: number;
  /** Backends whose admin state or runtime weight (admin API) the reload kept: they are still in their pool. */
  readonly runtimeState: readonly BackendOverride[];
}

export interface ShutdownOptions {
  /** Keep accepting this long after readiness turned off (default: the config's shutdown.acceptDelay). */
  readonly acceptDelayMs?: number;
  /** Time given to live tunnels after accepting stopped (default: the config's timeouts.drain). */
  readonly drainMs?: number;
}

export class Gateway implements ProxyContext {
  runtime: Runtime;
  readonly metrics: Metrics;
  readonly admission = new Admission();
  readonly connectionRate = new ConnectionRate();
  readonly log: Logger;
  readonly tunnels = new Set<Tunnel>();
  /** Set once accepting stopped: new upgrades (and plain requests on kept-alive sockets) get 503. */
  draining = false;
  /** Set at the first shutdown signal: /readyz answers 503 from then on. */
  shuttingDown = false;
  generation: number;
  /** Idle timeouts and keepalive pings for every tunnel, on one timer. */
  private readonly sweeper = new TunnelSweeper(this.tunnels);
  private readonly listeners: ListenerSet;
  private readonly plainHttp = new PlainHttpProxy();
  private started = false;
  /** Tunnels already sent 1001, shared by every drain so no tunnel gets two close frames. */
  private readonly toldToGoAway = new WeakSet<Tunnel>();
  private readonly backgroundDrains = new Set<Promise<DrainResult>>();
  private shutdownPromise: Promise<number> | undefined;

  private constructor(config: Config, options: GatewayOptions) {
    this.log = options.log ?? createLogger(config.log.level);
    this.metrics = options.metrics ?? new Metrics();
    this.runtime = new Runtime(config, this.metrics, this.log);
    this.metrics.trackConfigured(() => this.runtime.configuredBackendKeys());
    this.generation = options.generation ?? 1;
    const handlers: ListenerHandlers = {
      upgrade: (req: UpgradeRequest, socket: Duplex, head: Buffer, connection: ConnectionInfo) => {
        handleUpgrade(this, req, socket, head, connection).catch((err: Error) => {
          this.log.error({ err }, 'upgrade handler failed');
          socket.destroy();
        });
      },
      request: (req: IncomingMessage, res: ServerResponse, connection: ConnectionInfo) =>
        this.plainHttp.handle(this, req, res, connection),
      clientError: (entry: CatalogueEntry, detail: string, client: string, path?: string) =>
        refuse(this, { route: undefined, client, path }, { answered: true }, entry, detail),
      // The per-IP tunnel cap bounds connections waiting for their first head as well.
      waitingPerIp: () => this.runtime.config.limits.maxConnectionsPerIp,
      tlsHandshake: (listener, resumed) =>
        this.metrics.tlsHandshakes.inc({ listener, resumed: resumed ? 'true' : 'false' }),
      clientAddressRejected: (listener, reason, detail, peer) => {
        this.metrics.clientAddressRejections.inc({ listener, reason });
        // A balancer's TCP health check opens and closes without a header every few seconds: not worth a line.
        if (reason === 'closed') return;
        this.log.info(
          { event: 'rejected', listener, reason, peer: normaliseIp(peer), detail },
          'PROXY protocol header refused',
        );
      },
      acceptError: (err: NodeJS.ErrnoException, logCount: number | undefined) => {
        this.metrics.acceptErrors.inc();
        if (logCount !== undefined) {
          this.log.warn(
            { err: err.code ?? err.message, count: logCount },
            'accept failed (out of file descriptors?): backing off',
          );
        }
      },
    };
    this.listeners = new ListenerSet({
      handlers,
      log: this.log,
      handshakeMs: () => this.runtime.config.timeouts.handshakeMs,
      fallbackCert: options.fallbackCert,
      ticketKey: options.ticketKey ?? newTicketKey(),
    });
  }

  /** Binds every listener; rejects (and closes what was bound) if any bind fails. */
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
    return this.listeners.bound;
  }

  /** Ready for traffic: listeners bound and no shutdown begun (what /readyz reports). */
  get ready(): boolean {
    return this.started && !this.shuttingDown;
  }

  private async bind(): Promise<void> {
    const config = this.runtime.config;
    await this.listeners.bindAll(config.listeners);
    const platform = platformReport();
    this.log.info(platform, describePlatform(platform));
    this.startSweeper();
    this.started = true;
  }

  /** A new session ticket key for the TLS listeners without a key file (rotation); earlier tickets no longer resume. */
  setTicketKey(key: Buffer): void {
    this.listeners.setTicketKey(key);
  }

  /** Sweeps often enough for the shortest idle timeout or keepalive setting in the running config. */
  private startSweeper(): void {
    const config = this.runtime.config;
    const durations = [config.timeouts.idleMs, config.timeouts.maxLifetimeMs];
    for (const r of config.routes) if (r.keepalive) durations.push(r.keepalive.intervalMs, r.keepalive.timeoutMs);
    this.sweeper.start(sweepPeriodFor(durations));
  }

  /**
   * Applies a validated config: binds new listeners first (a bind failure rejects and changes nothing), swaps in
   * a runtime that keeps unchanged routes and pools (and so their tunnels), then closes listeners that went away
   * and drains tunnels whose route or pool went away with 1001 within timeouts.drain.
   */
  async reload(config: Config, generation = this.generation + 1): Promise<ReloadSummary> {
    if (this.shuttingDown) throw new Error('shutting down: reload refused');
    const previous = this.runtime;
    const listeners = await this.listeners.reconcile(config);

    const runtime = new Runtime(config, this.metrics, this.log, previous);
    // New pools check health and run their first DNS lookup before any connection can pick them.
    await runtime.start();
    this.runtime = runtime;
    this.generation = generation;
    if (config.log.level !== previous.config.log.level) this.log.level = config.log.level;
    this.startSweeper();

    // Tunnels to drain: on removed routes, on removed pools, or on a route that now sends to another pool.
    const goAway: Tunnel[] = [];
    for (const t of this.tunnels) {
      const route = routeOfTunnel(t);
      if (route && !runtime.keepsConnectionsOf(route)) goAway.push(t);
    }
    for (const name of runtime.diff.pools.removed) previous.pools.get(name)?.stop();
    if (goAway.length > 0) this.drainInBackground(goAway, Endings.ROUTE_REMOVED, config.timeouts.drainMs);

    const summary: ReloadSummary = {
      generation,
      listeners,
      routes: runtime.diff.routes,
      pools: runtime.diff.pools,
      draining: goAway.length,
      runtimeState: runtimeOverrides(runtime),
    };
    this.log.info({ event: 'reload', ...summary }, 'configuration applied');
    return summary;
  }

  private drainInBackground(tunnels: Tunnel[], ending: Ending, deadlineMs: number): void {
    const drain = drainTunnels(tunnels, {
      deadlineMs,
      ending,
      isOpen: (t) => this.tunnels.has(t),
      told: this.toldToGoAway,
    });
    this.backgroundDrains.add(drain);
    void drain.then((result) => {
      this.backgroundDrains.delete(drain);
      this.log.info({ event: 'drained', reason: ending.reason, ...result }, 'drain finished');
    });
  }

  /** Turns /readyz to 503 at once; the listeners keep accepting until shutdown() stops them. */
  beginShutdown(): void {
    this.shuttingDown = true;
  }

  /**
   * Graceful shutdown: readiness off now, accept for `acceptDelayMs` more, stop accepting, send 1001 to every
   * tunnel spread over the first half of `drainMs`, destroy what is left at the deadline. Resolves with the
   * number destroyed. Idempotent: a second call returns the first one's promise.
   */
  shutdown(options: ShutdownOptions = {}): Promise<number> {
    this.shutdownPromise ??= this.runShutdown(
      options.acceptDelayMs ?? this.runtime.config.shutdown.acceptDelayMs,
      options.drainMs ?? this.runtime.config.timeouts.drainMs,
    );
    return this.shutdownPromise;
  }

  private async runShutdown(acceptDelayMs: number, drainMs: number): Promise<number> {
    this.beginShutdown();
    if (acceptDelayMs > 0) {
      this.log.info({ acceptDelayMs }, 'readiness off; still accepting until the load balancer notices');
      await delay(acceptDelayMs);
    }
    this.draining = true;
    await this.listeners.stopAccepting();
    this.log.info({ live: this.tunnels.size, drainMs }, 'stopped accepting; draining');
    const result = await drainTunnels([...this.tunnels], {
      deadlineMs: drainMs,
      ending: Endings.SHUTDOWN,
      isOpen: (t) => this.tunnels.has(t),
      told: this.toldToGoAway,
      late: () => this.tunnels,
      // Admission slots without a tunnel are work in flight: upgrades waiting for a backend, plain HTTP requests being
      // proxied, backend refusals being relayed.
      inFlight: () => Math.max(0, this.admission.active - this.tunnels.size),
    });
    // Background drains (removed routes) share the tunnel set: whatever they still hold is gone too. Tunnels the
    // drain cut are still in the set until their sockets' close events: not cut or counted twice.
    let destroyed = result.destroyed;
    for (const t of this.tunnels) {
      if (t.client.destroyed && t.backend.destroyed) continue;
      t.abort(Endings.DRAIN_DEADLINE);
      destroyed++;
    }
    // Each cut tunnel is accounted for (metrics, its close log line) when its sockets have closed, a moment later;
    // the process exits right after this, so wait for that, briefly.
    const settleBy = performance.now() + TUNNEL_SETTLE_MS;
    while (this.tunnels.size > 0 && performance.now() < settleBy) await delay(10);
    this.sweeper.stop();
    this.runtime.stop();
    this.plainHttp.close();
    this.log.info({ closed: result.closed, destroyed }, 'drain finished');
    return destroyed;
  }

  /**
   * Stops now-ish: no accept delay, drain within `drainMs` (tests and embedding). Resolves with the number of
   * tunnels destroyed at the deadline.
   */
  stop(drainMs = this.runtime.config.timeouts.drainMs): Promise<number> {
    return this.shutdown({ acceptDelayMs: 0, drainMs });
  }

  /** This process's view: listeners, routes, pools with backend states, live counts and traffic totals. */
  processStatus(): Promise<ProcessStatus> {
    return collectProcessStatus({
      registry: this.metrics.registry,
      runtime: this.runtime,
      generation: this.generation,
      draining: this.shuttingDown,
      listeners: this.boundListeners,
      liveTunnels: this.tunnels.size,
      routeStats: this.metrics.allRouteStats(),
    });
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
