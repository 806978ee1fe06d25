// A backend pool: its members, their live tunnels, and the immutable ring new connections are picked from.
// (Longer than 400 lines on purpose: every member transition below ends in the one refresh(), on shared private
// state; split, the parts would reach into each other.)
// Health checks, passive ejection, DNS discovery and reloads all end in `refresh()`, which builds a new Ring and
// swaps the reference (slow path); picks only read it (fast path), so an in-flight pick is never affected.
//
// Ring membership. A member is in the ring unless it is unhealthy (active checks) or ejected (passive), and at
// most floor(panicThreshold × members) members are ever out for those reasons: past that the ones that went bad
// last stay in, so a flapping health endpoint cannot empty a pool (Envoy's panic mode). Out-of-ring members keep
// their index with weight 0, so `loads` and the ring always index the same array.
//
// When the ring changes:
// - a member that left because it is unhealthy gets its tunnels closed with 1014 at once (they are likely dead);
// - an ejected member keeps its tunnels (ejection judges new connects, not live connections);
// - with `rebalance.mode: gradual`, tunnels whose key now maps to another member are closed with 1012
//   "reconnect" at most `maxClosesPerSecond` (rebalance.ts), and only those; tunnels a valid affinity cookie
//   pinned (pools.NAME.sticky) are not moved, since their client would come back to the same member.
//
// Operators set a member's admin state and runtime weight at run time (`control()`, admin-state.ts): 'drain' and
// 'disabled' keep it out of the ring (its affinity cookies turn stale, so their clients are re-pointed), 'disabled'
// also closes its tunnels with 1012 at `maxClosesPerSecond`; a runtime weight replaces the configured one. Both
// live on the Member, so a reload that keeps the member keeps them.
//
// `update(config)` is how a reload changes a live pool: Member objects (with their tunnels and loads) are kept
// for backends whose id is unchanged, new ones are added, removed ones are drained (1012, paced so they all
// close within the drain time), options (health, outlier, rebalance, panic threshold, discovery) take effect,
// and the ring is rebuilt, which moves keys as above. Member indexes may be reassigned: a removed member's index
// becomes -1, and `loads` is rebuilt from the members' counts.

import { pino } from 'pino';
import type { BackendConfig, PoolConfig } from '../config/types.js';
import { Endings } from '../errors.js';
import type { StickyResult } from '../observe/hot-counts.js';
import type { Logger } from '../observe/log.js';
import { hashString } from '../routing/hash.js';
import { Ring } from '../routing/ring.js';
import { StickyCookies } from '../routing/sticky.js';
import type { Tunnel } from '../tunnel/tunnel.js';
import { type BackendChange, type BackendOverride, backendAddress } from './admin-state.js';
import { type AddressResolver, DnsDiscovery, systemResolver } from './discovery.js';
import { HealthChecker, recordCheck } from './health.js';
import { Member, type MemberState, type PooledTunnel } from './member.js';
import { recordFailure, recordSuccess } from './outlier.js';
import type { BackendSeries, PoolMetrics } from './pool-metrics.js';
import type { Probe, ProbeResult } from './probe.js';
import { ClosePacer, type MovedTunnel, movedTunnels, type RingView } from './rebalance.js';

export { Member, type PooledTunnel } from './member.js';

/** Retries walk to the next backend on the ring, at most this many attempts per connection. */
export const MAX_ATTEMPTS = 3;

/** Removed members are drained in this share of the drain time, leaving the rest for the closes to finish. */
const DRAIN_PACE_SHARE = 0.8;

export interface PoolOptions {
  readonly log?: Logger;
  /** Undefined: the pool exports no metrics (unit tests, tools). */
  readonly metrics?: PoolMetrics;
  /** Time removed members get to lose their tunnels (timeouts.drain). */
  readonly drainMs?: number;
  /** Test seams: the DNS resolver for discovery and the active-check probe. */
  readonly resolver?: AddressResolver;
  readonly probe?: Probe;
}

const DEFAULT_DRAIN_MS = 30_000;

export class Pool<T extends PooledTunnel = Tunnel> {
  readonly name: string;
  config: PoolConfig;
  members: readonly Member<T>[] = [];
  ring: Ring = Ring.build([]);
  /** Parallel to members: live counts as the ring's loads array (kept in sync with Member.active). */
  loads: Int32Array = new Int32Array(0);
  /** Live tunnels on all members, removed ones included. */
  totalActive = 0;
  /** The affinity cookies of pools.NAME.sticky; undefined when the pool sets none. */
  sticky: StickyCookies | undefined;

  private readonly log: Logger;
  private readonly metrics: PoolMetrics | undefined;
  private readonly rebalanceCloses: { inc(): void } | undefined;
  private readonly series = new Map<Member<T>, BackendSeries>();
  private drainMs: number;
  private readonly resolver: AddressResolver | undefined;
  private readonly health: HealthChecker<Member<T>>;
  private readonly rebalancer: ClosePacer<MovedTunnel<T>>;
  private readonly drainer: ClosePacer<MovedTunnel<T>>;
  /** Closes the tunnels of members an operator disabled, at `maxClosesPerSecond`. */
  private readonly disabler: ClosePacer<MovedTunnel<T>>;
  private readonly ejectionTimers = new Map<Member<T>, NodeJS.Timeout>();
  /** Members the `ring` indexes: the member array as it was when the ring was built. */
  private ringMembers: readonly Member<T>[] = [];
  /** Affinity cookie value → member, for the members in the ring: whom a valid cookie still pins to. */
  private pinnable = new Map<string, Member<T>>();
  private discovery: DnsDiscovery | undefined;
  private started = false;
  /** Once stopped, the pool publishes no metrics: stop() withdrew its series for good. */
  private stopped = false;

  constructor(config: PoolConfig, options: PoolOptions = {}) {
    this.name = config.name;
    this.config = config;
    this.log = options.log ?? pino({ level: 'silent' });
    this.metrics = options.metrics;
    this.rebalanceCloses = options.metrics?.addPool(config.name);
    this.drainMs = options.drainMs ?? DEFAULT_DRAIN_MS;
    this.resolver = options.resolver;
    this.health = new HealthChecker((member, result) => this.checked(member, result), options.probe);
    this.health.configure(config.healthCheck);
    this.rebalancer = new ClosePacer(config.rebalance.maxClosesPerSecond, (m) => this.closeMoved(m));
    this.drainer = new ClosePacer(config.rebalance.maxClosesPerSecond, (d) => this.closeDrained(d));
    this.disabler = new ClosePacer(config.rebalance.maxClosesPerSecond, (d) => this.closeDrained(d));
    this.sticky = config.sticky && new StickyCookies(config.name, config.sticky);
    this.setBackends(config.backends, false);
  }

  /** Starts health checks and discovery; resolves after the first DNS lookup, so a new pool has members. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    for (const m of this.members) this.health.track(m);
    await this.startDiscovery();
  }

  /**
   * Stops every timer the pool owns and withdraws its metric series (for a pool removed by reload, and at
   * shutdown); live tunnels are left to their owner.
   */
  stop(): void {
    this.started = false;
    this.stopped = true;
    for (const m of this.members) this.metrics?.removeBackend(this.name, m.backend.id);
    this.series.clear();
    this.metrics?.removePool(this.name);
    this.health.stop();
    this.discovery?.stop();
    this.discovery = undefined;
    this.rebalancer.stop();
    this.drainer.stop();
    this.disabler.stop();
    for (const timer of this.ejectionTimers.values()) clearTimeout(timer);
    this.ejectionTimers.clear();
  }

  /** The drain time (timeouts.drain) for members removed from now on: a reload may change it for a kept pool. */
  setDrainTime(ms: number): void {
    this.drainMs = ms;
  }

  /** Applies a reloaded pool config to this live pool (see the header). The name must not change. */
  update(config: PoolConfig): void {
    const previous = this.config;
    this.config = config;
    this.health.configure(config.healthCheck);
    this.rebalancer.setRate(config.rebalance.maxClosesPerSecond);
    this.disabler.setRate(config.rebalance.maxClosesPerSecond);
    if (JSON.stringify(previous.sticky) !== JSON.stringify(config.sticky)) {
      this.sticky = config.sticky && new StickyCookies(config.name, config.sticky);
    }
    if (JSON.stringify(previous.discovery) !== JSON.stringify(config.discovery)) {
      this.discovery?.stop();
      this.discovery = undefined;
      if (this.started) void this.startDiscovery();
    }
    if (config.healthCheck === undefined) {
      // Without checks nothing could ever clear an old unhealthy verdict.
      for (const m of this.members) {
        m.healthy = true;
        m.checkStreak = 0;
        m.noteState(Date.now());
      }
    }
    // A discovery pool keeps its members until its (new) lookup answers.
    if (config.discovery === undefined) this.setBackends(config.backends);
    else this.refresh();
  }

  /** Picks the member for a key, skipping `exclude` (already tried); undefined when none is eligible. */
  pick(key: string, exclude: readonly number[] = []): Member<T> | undefined {
    return this.pickHash(hashString(key), exclude);
  }

  pickHash(keyHash: number, exclude: readonly number[] = []): Member<T> | undefined {
    const index = this.ring.pick(keyHash, this.loads, this.config.balanceFactor, exclude);
    return index < 0 ? undefined : this.members[index];
  }

  /**
   * The member a request's affinity cookie values (pools.NAME.sticky) name, when it is in the ring; otherwise why
   * none: 'set' (no value), 'stale' (a value of this pool's key for a backend gone or out of the ring), 'forged'.
   */
  pinnedBy(values: readonly string[]): Member<T> | Exclude<StickyResult, 'hit'> {
    const sticky = this.sticky;
    if (sticky === undefined || values.length === 0) return 'set';
    let stale = false;
    for (const value of values) {
      const member = this.pinnable.get(value);
      if (member) return member;
      stale ||= sticky.isAuthentic(value);
    }
    return stale ? 'stale' : 'forged';
  }

  /** Counts a tunnel on `member`; `pinned`: its client's affinity cookie chose the member (rebalancing skips it). */
  acquire(member: Member<T>, tunnel: T, pinned = false): void {
    member.tunnels.add(tunnel);
    if (pinned) member.pinned.add(tunnel);
    member.active++;
    if (member.index >= 0) this.loads[member.index] = member.active;
    this.totalActive++;
    // Removed (or disabled) while its handshake ran: the connection is established but may not stay there.
    if (member.index < 0) this.drain([{ tunnel, member }]);
    else if (member.adminState === 'disabled') this.disabler.enqueue([{ tunnel, member }]);
  }

  /** The member an operator names: by `host:port` or by id (`ws://host:port`). */
  memberNamed(name: string): Member<T> | undefined {
    return this.members.find((m) => m.backend.id === name || backendAddress(m.backend.id) === name);
  }

  /**
   * Applies an operator's change to a member (see the header): the ring is rebuilt as for a health change, and a
   * newly disabled member's tunnels are queued for paced 1012s.
   */
  control(member: Member<T>, change: BackendChange): void {
    const from = { state: member.adminState, weight: member.weight };
    if (change.weight !== undefined) member.runtimeWeight = change.weight;
    if (change.state !== undefined) member.adminState = change.state;
    this.log.info(
      {
        event: 'backend_admin',
        backend: member.backend.id,
        from,
        to: { state: member.adminState, weight: member.weight },
      },
      'backend admin state changed',
    );
    this.refresh();
    if (change.state === 'disabled' && from.state !== 'disabled') {
      this.disabler.enqueue([...member.tunnels].map((tunnel) => ({ tunnel, member })));
    }
  }

  /** Members whose runtime state differs from the YAML's: what a reload keeps and says it kept. */
  overrides(): BackendOverride[] {
    return this.members
      .filter((m) => m.adminState !== 'active' || m.runtimeWeight !== undefined)
      .map((m) => ({
        pool: this.name,
        backend: m.backend.id,
        state: m.adminState,
        ...(m.runtimeWeight === undefined ? {} : { weight: m.runtimeWeight }),
      }));
  }

  release(member: Member<T>, tunnel: T): void {
    if (!member.tunnels.delete(tunnel)) return;
    member.pinned.delete(tunnel);
    member.active--;
    if (member.index >= 0) this.loads[member.index] = member.active;
    this.totalActive--;
  }

  /** A handshake with the member completed (whatever the answer): it is reachable. */
  reportSuccess(member: Member<T>): void {
    recordSuccess(member);
  }

  /** A connect or handshake with the member failed: counts toward its ejection. */
  reportFailure(member: Member<T>): void {
    const now = Date.now();
    if (member.index < 0 || !recordFailure(member, this.config.outlier, now)) return;
    member.noteState(now);
    this.series.get(member)?.ejections.inc();
    const ejectForMs = member.ejectedUntil - now;
    this.log.warn(
      { event: 'backend_ejected', backend: member.backend.id, ejectForMs, ejections: member.ejections },
      'backend ejected after consecutive failures',
    );
    clearTimeout(this.ejectionTimers.get(member));
    const timer = setTimeout(() => this.ejectionOver(member), ejectForMs);
    timer.unref();
    this.ejectionTimers.set(member, timer);
    this.refresh();
  }

  /** Members by state, as `wsgate_pool_backends` reports them. */
  states(now = Date.now()): Record<MemberState, number> {
    const counts = { healthy: 0, unhealthy: 0, ejected: 0 };
    for (const m of this.members) counts[m.state(now)]++;
    return counts;
  }

  private async startDiscovery(): Promise<void> {
    const config = this.config.discovery;
    if (config === undefined) return;
    const resolver = this.resolver ?? systemResolver(config.nameservers);
    const discovery = new DnsDiscovery(config, resolver, (backends) => this.setBackends(backends), this.log);
    this.discovery = discovery;
    await discovery.start();
  }

  private ejectionOver(member: Member<T>): void {
    this.ejectionTimers.delete(member);
    if (member.index < 0) return;
    member.noteState(Date.now());
    this.log.info({ event: 'backend_returned', backend: member.backend.id }, 'backend ejection ended');
    this.refresh();
  }

  private checked(member: Member<T>, result: ProbeResult): void {
    const check = this.config.healthCheck;
    if (member.index < 0 || check === undefined) return;
    this.series.get(member)?.checks[result].inc();
    if (!recordCheck(member, result === 'success', check)) return;
    member.noteState(Date.now());
    if (member.healthy) {
      this.log.info({ event: 'backend_healthy', backend: member.backend.id }, 'backend passed health checks');
    } else {
      this.log.warn({ event: 'backend_unhealthy', backend: member.backend.id, result }, 'backend failed health checks');
    }
    this.refresh();
  }

  /** Sets the member list: keeps members by id, adds new ones, drains removed ones, then refreshes. */
  private setBackends(backends: readonly BackendConfig[], logChanges = true): void {
    const previous = new Map(this.members.map((m) => [m.backend.id, m]));
    const next: Member<T>[] = [];
    for (const backend of backends) {
      let member = previous.get(backend.id);
      if (member) {
        previous.delete(backend.id);
        if (member.backend.weight !== backend.weight) {
          this.log.info(
            { event: 'backend_weight', backend: backend.id, from: member.backend.weight, to: backend.weight },
            'backend weight changed',
          );
        }
        member.backend = backend;
        member.index = next.length;
      } else {
        member = new Member<T>(backend, next.length);
        if (this.metrics) this.series.set(member, this.metrics.addBackend(this.name, backend.id));
        if (this.started) this.health.track(member);
        if (logChanges) this.log.info({ event: 'backend_added', backend: backend.id }, 'backend added');
      }
      next.push(member);
    }
    for (const removed of previous.values()) this.remove(removed);
    this.members = next;
    this.loads = Int32Array.from(next, (m) => m.active);
    this.refresh();
  }

  private remove(member: Member<T>): void {
    member.index = -1;
    member.inRing = false;
    this.health.untrack(member);
    clearTimeout(this.ejectionTimers.get(member));
    this.ejectionTimers.delete(member);
    this.series.delete(member);
    this.metrics?.removeBackend(this.name, member.backend.id);
    this.log.info(
      { event: 'backend_removed', backend: member.backend.id, connections: member.active },
      'backend removed',
    );
    this.drain([...member.tunnels].map((tunnel) => ({ tunnel, member })));
  }

  /** Queues tunnels of removed members, at a rate that closes everything queued within the drain time. */
  private drain(entries: readonly MovedTunnel<T>[]): void {
    if (entries.length === 0) return;
    const pending = this.drainer.pending + entries.length;
    const needed = pending / ((this.drainMs * DRAIN_PACE_SHARE) / 1000);
    this.drainer.setRate(Math.max(this.config.rebalance.maxClosesPerSecond, needed));
    this.drainer.enqueue(entries);
  }

  /** Builds the ring for the members' current state and swaps it in, then deals with the tunnels it moved. */
  private refresh(): void {
    const now = Date.now();
    const out = membersOutOfRing(this.members, this.config.panicThreshold, now);
    const before: RingView<T> = { ring: this.ring, members: this.ringMembers };
    const left: Member<T>[] = [];
    for (const m of this.members) {
      const inRing = !out.has(m) && m.adminState === 'active';
      if (m.inRing && !inRing) left.push(m);
      m.inRing = inRing;
    }
    this.ring = Ring.build(this.members.map((m) => ({ id: m.backend.id, weight: m.inRing ? m.weight : 0 })));
    this.ringMembers = this.members;
    this.pinnable = pinnableMembers(this.members, this.sticky);
    this.publishStates(now);

    for (const m of left) {
      if (m.healthy || m.tunnels.size === 0) continue;
      this.log.warn(
        { event: 'backend_connections_closed', backend: m.backend.id, connections: m.tunnels.size },
        'closing connections of an unhealthy backend',
      );
      for (const tunnel of [...m.tunnels]) tunnel.closeWith(Endings.BACKEND_UNHEALTHY);
    }
    if (this.config.rebalance.mode === 'gradual') {
      const moved = movedTunnels(before, { ring: this.ring, members: this.members }).filter(
        (m) => !m.member.pinned.has(m.tunnel),
      );
      if (moved.length > 0) {
        this.log.info(
          { event: 'rebalance', connections: moved.length, perSecond: this.config.rebalance.maxClosesPerSecond },
          'ring changed; moving connections to their keys’ new owners',
        );
        this.rebalancer.enqueue(moved);
      }
    }
  }

  private publishStates(now: number): void {
    if (this.stopped) return;
    for (const [m, s] of this.series) {
      s.up.set(m.state(now) === 'healthy' ? 1 : 0);
      s.adminState(m.adminState);
    }
    this.metrics?.setStates(this.name, this.states(now));
  }

  /** Closes a moved tunnel if it is still live, still in the ring and still not on its key's current owner. */
  private closeMoved(entry: MovedTunnel<T>): boolean {
    const { tunnel, member } = entry;
    if (!member.tunnels.has(tunnel) || !member.inRing || this.config.rebalance.mode !== 'gradual') return false;
    const owner = this.ring.owner(tunnel.keyHash);
    if (owner < 0 || this.members[owner] === member) return false;
    tunnel.closeWith(Endings.REBALANCE);
    this.rebalanceCloses?.inc();
    return true;
  }

  /** Closes the tunnel of a removed member, or of a disabled one while it stays disabled. */
  private closeDrained(entry: MovedTunnel<T>): boolean {
    const { tunnel, member } = entry;
    if (!member.tunnels.has(tunnel)) return false;
    if (member.index >= 0 && member.adminState !== 'disabled') return false;
    tunnel.closeWith(member.index < 0 ? Endings.REBALANCE : Endings.BACKEND_DISABLED);
    this.rebalanceCloses?.inc();
    return true;
  }
}

/** Cookie value → member for the members in the ring; empty without sticky cookies. */
function pinnableMembers<T extends PooledTunnel>(
  members: readonly Member<T>[],
  sticky: StickyCookies | undefined,
): Map<string, Member<T>> {
  const byValue = new Map<string, Member<T>>();
  if (sticky === undefined) return byValue;
  for (const m of members) if (m.inRing) byValue.set(sticky.valueOf(m.backend.id), m);
  return byValue;
}

/**
 * The members kept out of the ring: unhealthy or ejected ones, but at most floor(panicThreshold × members);
 * past that the ones bad the longest stay out and the rest stay in (ties by id, so the choice is stable).
 */
export function membersOutOfRing<T extends PooledTunnel>(
  members: readonly Member<T>[],
  panicThreshold: number,
  now: number,
): Set<Member<T>> {
  const bad = members.filter((m) => m.state(now) !== 'healthy');
  const maxOut = Math.floor(panicThreshold * members.length + 1e-9);
  if (bad.length <= maxOut) return new Set(bad);
  bad.sort((a, b) => a.badSince - b.badSince || (a.backend.id < b.backend.id ? -1 : 1));
  return new Set(bad.slice(0, maxOut));
}
