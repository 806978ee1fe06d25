// Active health checking for one pool: each member is probed on its own jittered schedule, a member's next check
// is scheduled only when its previous one settled (so checks of one backend never overlap, even against a hung
// backend), and the first checks spread over one interval so a start or reload causes no storm.

import type { BackendConfig, HealthCheckConfig } from '../config/types.js';
import type { Member, PooledTunnel } from './member.js';
import { type Probe, type ProbeResult, probeBackend } from './probe.js';

/** Spread of the interval between two checks of one member: ±10 %. */
const INTERVAL_JITTER = 0.1;

/** Applies one check result to the thresholds; true when the member's verdict flipped. */
export function recordCheck<T extends PooledTunnel>(
  member: Member<T>,
  passed: boolean,
  config: HealthCheckConfig,
): boolean {
  if (passed === member.healthy) {
    member.checkStreak = 0;
    return false;
  }
  member.checkStreak++;
  const needed = member.healthy ? config.unhealthyThreshold : config.healthyThreshold;
  if (member.checkStreak < needed) return false;
  member.healthy = passed;
  member.checkStreak = 0;
  return true;
}

interface Schedule {
  timer: NodeJS.Timeout | undefined;
  inFlight: boolean;
}

export class HealthChecker<M extends { readonly backend: BackendConfig }> {
  private config: HealthCheckConfig | undefined;
  private readonly schedules = new Map<M, Schedule>();
  private readonly onResult: (member: M, result: ProbeResult) => void;
  private readonly probe: Probe;

  constructor(onResult: (member: M, result: ProbeResult) => void, probe: Probe = probeBackend) {
    this.onResult = onResult;
    this.probe = probe;
  }

  /** New settings apply from each member's next check; undefined turns checking off. */
  configure(config: HealthCheckConfig | undefined): void {
    const wasOn = this.config !== undefined;
    this.config = config;
    if (config === undefined) {
      for (const s of this.schedules.values()) clearTimeout(s.timer);
    } else if (!wasOn) {
      for (const [member, s] of this.schedules) if (!s.inFlight) this.arm(member, s, Math.random());
    }
  }

  /** Starts checking a member; its first check comes at a random point within one interval. */
  track(member: M): void {
    if (this.schedules.has(member)) return;
    const s: Schedule = { timer: undefined, inFlight: false };
    this.schedules.set(member, s);
    this.arm(member, s, Math.random());
  }

  untrack(member: M): void {
    const s = this.schedules.get(member);
    if (!s) return;
    clearTimeout(s.timer);
    this.schedules.delete(member);
  }

  /** Probes currently running (at most one per member). */
  get inFlight(): number {
    let n = 0;
    for (const s of this.schedules.values()) if (s.inFlight) n++;
    return n;
  }

  stop(): void {
    for (const s of this.schedules.values()) clearTimeout(s.timer);
    this.schedules.clear();
  }

  private arm(member: M, s: Schedule, fraction: number): void {
    if (this.config === undefined) return;
    s.timer = setTimeout(() => this.run(member, s), this.config.intervalMs * fraction);
    s.timer.unref();
  }

  private run(member: M, s: Schedule): void {
    const config = this.config;
    if (config === undefined) return;
    s.timer = undefined;
    s.inFlight = true;
    // A probe that throws (e.g. an unusable address) is a failed check, not a stopped schedule.
    const probed = this.probe(member.backend, config).catch((): ProbeResult => 'failure');
    void probed.then((result) => {
      s.inFlight = false;
      // Untracked or stopped meanwhile: the result is stale and nothing is rescheduled.
      if (this.schedules.get(member) !== s) return;
      this.onResult(member, result);
      this.arm(member, s, 1 - INTERVAL_JITTER + 2 * INTERVAL_JITTER * Math.random());
    });
  }
}
