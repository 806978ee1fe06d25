// The hooks every tunnel of one (route, backend) shares: metric children, route stats, pool accounting and the close
// log line. One binding per (route, member), made on first use.

import type { Ending } from '../errors.js';
import type { BackendChildren, Direction } from '../observe/hot-counts.js';
import type { Member, Pool } from '../pool/pool.js';
import type { Tunnel, TunnelEnd, TunnelHooks } from '../tunnel/tunnel.js';
import type { ProxyContext } from './context.js';
import type { RouteRuntime } from './runtime.js';

/** Hooks shared by every tunnel of one (route, backend): metric children, stats, pool accounting. */
class TunnelBinding implements TunnelHooks {
  readonly ctx: ProxyContext;
  readonly route: RouteRuntime;
  readonly pool: Pool;
  readonly member: Member;
  /** Metric children of this (route, backend); see current(). */
  private children: BackendChildren;

  constructor(ctx: ProxyContext, route: RouteRuntime, pool: Pool, member: Member) {
    this.ctx = ctx;
    this.route = route;
    this.pool = pool;
    this.member = member;
    this.children = ctx.metrics.childrenFor(route.name, pool.name, member.backend.id);
  }

  /**
   * The children to count in. A scrape withdraws the series of a backend that left its pool once no tunnel is
   * open (Metrics.trackConfigured); a handshake to it that was already in flight then counts in new ones.
   */
  current(): BackendChildren {
    if (this.children.withdrawn) {
      this.children = this.ctx.metrics.childrenFor(this.route.name, this.pool.name, this.member.backend.id);
    }
    return this.children;
  }

  violation(_tunnel: Tunnel, fromClient: boolean, violation: Ending): void {
    const labels = { route: this.route.name, direction: directionOf(fromClient), kind: violation.label };
    this.ctx.metrics.protocolViolations.inc(labels);
  }

  limitExceeded(_tunnel: Tunnel, limit: Ending, action: 'close' | 'throttle'): void {
    this.ctx.metrics.limitExceeded.inc({ route: this.route.name, limit: limit.label, action });
  }

  keepaliveTimeout(_tunnel: Tunnel, timeout: Ending): void {
    this.ctx.metrics.keepaliveTimeouts.inc({ route: this.route.name, peer: timeout.label });
  }

  deadlineReached(_tunnel: Tunnel, ending: Ending): void {
    this.ctx.metrics.lifetimeCloses.inc({ route: this.route.name, reason: ending.label });
  }

  ended(tunnel: Tunnel, end: TunnelEnd): void {
    this.pool.release(this.member, tunnel);
    this.children.active--;
    this.ctx.tunnels.delete(tunnel);
    this.route.stats.countClose(end.closeCode, end.initiator);
    if (!this.route.log.isLevelEnabled('info')) return;
    this.route.log.info(
      {
        event: 'close',
        backend: this.member.backend.id,
        client: tunnel.clientAddress,
        requestId: tunnel.requestId,
        reason: end.reason,
        initiator: end.initiator,
        closeCode: end.closeCode,
        durationMs: Math.round(end.durationMs),
        bytesIn: end.bytesClientToBackend,
        bytesOut: end.bytesBackendToClient,
        messagesIn: end.messagesClientToBackend,
        messagesOut: end.messagesBackendToClient,
      },
      'connection closed',
    );
  }
}

// Weak both ways: members that left a pool (DNS discovery replaces them freely) and routes of old runtimes go.
const bindings = new WeakMap<RouteRuntime, WeakMap<Member, TunnelBinding>>();

export function bindingFor(ctx: ProxyContext, route: RouteRuntime, pool: Pool, member: Member): TunnelBinding {
  let byMember = bindings.get(route);
  if (!byMember) {
    byMember = new WeakMap();
    bindings.set(route, byMember);
  }
  let b = byMember.get(member);
  if (!b) {
    b = new TunnelBinding(ctx, route, pool, member);
    byMember.set(member, b);
  }
  return b;
}

function directionOf(fromClient: boolean): Direction {
  return fromClient ? 'client_to_backend' : 'backend_to_client';
}

/** Where a live tunnel goes: its route, pool and backend (the admin API's connection list). */
export function placeOfTunnel(tunnel: Tunnel): { route: RouteRuntime; pool: Pool; member: Member } | undefined {
  return tunnel.hooks instanceof TunnelBinding ? tunnel.hooks : undefined;
}

/** The route a live tunnel was opened on: a reload drains the tunnels of removed routes. */
export function routeOfTunnel(tunnel: Tunnel): RouteRuntime | undefined {
  return tunnel.hooks instanceof TunnelBinding ? tunnel.hooks.route : undefined;
}
