// Immutable consistent-hash ring with bounded loads: built on the slow path, swapped whole, read on every connection.
import { hashVirtualNode } from './hash.js';

export interface RingMember {
  /** Stable identity, e.g. 'ws://127.0.0.1:3001'; ring points derive from it, so every instance agrees. */
  readonly id: string;
  /** Relative share of keys; 0 keeps the member indexable but out of the ring (drained, unhealthy). */
  readonly weight: number;
}

export const DEFAULT_VNODES_PER_WEIGHT = 160;
/** Owner indexes are stored as Uint16; a pool anywhere near this size is a config mistake. */
export const MAX_RING_MEMBERS = 0xffff;
/** 4 Mi points is 24 MiB of typed arrays; anything larger is a weight typo, not a pool. */
export const MAX_RING_POINTS = 1 << 22;

const EMPTY_EXCLUDE: ArrayLike<number> = [];

/**
 * Point layout and determinism:
 * - Member indexes are positions in the `members` array given to `build` (weight-0 members included), so a
 *   pool can index its own arrays (loads, sockets) by the same number.
 * - The points do not depend on that order: each comes from hash(`${id}#${i}`), and equal points are ordered
 *   by member id (UTF-16 code-unit order, not locale). Two processes given the same members in any order
 *   therefore walk the same sequence of ids.
 */
export class Ring {
  readonly members: readonly RingMember[];
  /** Members with weight > 0. */
  readonly size: number;
  /** Sorted ascending; `owners[i]` is the member index of `points[i]`. */
  private readonly points: Uint32Array;
  private readonly owners: Uint16Array;
  /** Member weights unboxed: the bounded-loads pre-pass reads them on every pick. */
  private readonly weights: Float64Array;
  /** Member indexes in id order. Sums run in this order so fractional weights round the same in every process. */
  private readonly membersById: Uint16Array;

  private constructor(
    members: readonly RingMember[],
    size: number,
    points: Uint32Array,
    owners: Uint16Array,
    membersById: Uint16Array,
  ) {
    this.members = members;
    this.size = size;
    this.points = points;
    this.owners = owners;
    this.membersById = membersById;
    this.weights = Float64Array.from(members, (m) => m.weight);
  }

  static build(members: readonly RingMember[], vnodesPerWeight = DEFAULT_VNODES_PER_WEIGHT): Ring {
    validateMembers(members, vnodesPerWeight);
    const frozen = Object.freeze(members.map((m) => Object.freeze({ id: m.id, weight: m.weight })));
    const rankById = rankMembersById(frozen);
    const memberByRank = new Uint16Array(frozen.length);
    for (let m = 0; m < frozen.length; m++) memberByRank[rankById[m]!] = m;
    const { points, owners } = placePoints(frozen, rankById, memberByRank, vnodesPerWeight);
    const size = frozen.reduce((count, m) => (m.weight > 0 ? count + 1 : count), 0);
    return new Ring(frozen, size, points, owners, memberByRank);
  }

  /** Number of virtual nodes on the ring. */
  get pointCount(): number {
    return this.points.length;
  }

  /** First member clockwise from the key's point, ignoring load; -1 if the ring is empty. */
  owner(keyHash: number): number {
    if (this.points.length === 0) return -1;
    return this.owners[this.firstPointAtOrAfter(keyHash >>> 0)]!;
  }

  /**
   * Bounded-loads pick (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads"): walk clockwise
   * from the key's point and return the first member that is not in `exclude` and, when `balanceFactor` (c >= 1)
   * is given, whose `loads[member]` is below its capacity:
   *   capacity = ceil(c * (totalLoad + 1) * weight / eligibleWeight)
   * over the eligible members (in the ring, not excluded). With equal weights that is ceil(c * (totalLoad + 1) / n);
   * weighting it keeps a weight-2 member's share at 2x under load. Some member is always under capacity when
   * c >= 1; for c < 1 the first eligible member clockwise is returned rather than failing.
   * `exclude` lists member indexes (e.g. backends that already refused this connection); it is scanned linearly
   * because it is empty or tiny, and omitting it costs nothing. Returns -1 when no member is eligible.
   */
  pick(keyHash: number, loads?: ArrayLike<number>, balanceFactor?: number, exclude?: ArrayLike<number>): number {
    const pointCount = this.points.length;
    if (pointCount === 0) return -1;
    const start = this.firstPointAtOrAfter(keyHash >>> 0);
    const excluded = exclude ?? EMPTY_EXCLUDE;
    const bounded = balanceFactor !== undefined && loads !== undefined;
    if (!bounded && excluded.length === 0) return this.owners[start]!;

    // One pass over the members for the eligible weight and load; order by id keeps float sums process-independent.
    const weights = this.weights;
    const byId = this.membersById;
    let totalLoad = 0;
    let eligibleWeight = 0;
    for (let r = 0; r < byId.length; r++) {
      const m = byId[r]!;
      if (weights[m]! <= 0 || includes(excluded, m)) continue;
      eligibleWeight += weights[m]!;
      if (bounded) totalLoad += loads[m] ?? 0;
    }
    if (eligibleWeight === 0) return -1;
    const capacityScale = bounded ? balanceFactor * (totalLoad + 1) : 0;

    let firstEligible = -1;
    let rejected = -1; // consecutive points often share an owner: don't re-check it
    for (let step = 0, i = start; step < pointCount; step++, i = i + 1 === pointCount ? 0 : i + 1) {
      const m = this.owners[i]!;
      if (m === rejected || includes(excluded, m)) continue;
      if (!bounded) return m;
      if (firstEligible < 0) firstEligible = m;
      const capacity = Math.ceil((capacityScale * weights[m]!) / eligibleWeight);
      if ((loads[m] ?? 0) < capacity) return m;
      rejected = m;
    }
    return firstEligible;
  }

  /** Index of the first point >= hash, wrapping to 0 past the last point. */
  private firstPointAtOrAfter(hash: number): number {
    const points = this.points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }
}

/** Hashes every virtual node and sorts by (point, member id); the slow path, run once per membership change. */
function placePoints(
  members: readonly RingMember[],
  rankById: Uint16Array,
  memberByRank: Uint16Array,
  vnodesPerWeight: number,
): { points: Uint32Array; owners: Uint16Array } {
  const counts = members.map((m) => vnodeCount(m.weight, vnodesPerWeight));
  const total = counts.reduce((sum, n) => sum + n, 0);
  if (total > MAX_RING_POINTS) {
    throw new RangeError(`ring would have ${total} points (max ${MAX_RING_POINTS}): lower weights or vnodesPerWeight`);
  }
  // Each key is point * 2^16 + rank(id), exact in a double: one numeric sort orders by point, then by id.
  const keys = new Float64Array(total);
  let k = 0;
  for (let m = 0; m < members.length; m++) {
    for (let v = 0; v < counts[m]!; v++) keys[k++] = hashVirtualNode(members[m]!.id, v) * 0x10000 + rankById[m]!;
  }
  keys.sort();
  const points = new Uint32Array(total);
  const owners = new Uint16Array(total);
  for (let i = 0; i < total; i++) {
    points[i] = Math.floor(keys[i]! / 0x10000);
    owners[i] = memberByRank[keys[i]! % 0x10000]!;
  }
  return { points, owners };
}

function includes(list: ArrayLike<number>, value: number): boolean {
  for (let i = 0; i < list.length; i++) if (list[i] === value) return true;
  return false;
}

/** round(weight × vnodesPerWeight), but at least one point for any positive weight so the member stays reachable. */
function vnodeCount(weight: number, vnodesPerWeight: number): number {
  if (weight <= 0) return 0;
  return Math.max(1, Math.round(weight * vnodesPerWeight));
}

/** Rank of each member's id in code-unit order: the order-independent tie-break for equal points. */
function rankMembersById(members: readonly RingMember[]): Uint16Array {
  const byId = members.map((_, index) => index).sort((a, b) => compareIds(members[a]!.id, members[b]!.id));
  const rank = new Uint16Array(members.length);
  for (let r = 0; r < byId.length; r++) rank[byId[r]!] = r;
  return rank;
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function validateMembers(members: readonly RingMember[], vnodesPerWeight: number): void {
  if (!Number.isInteger(vnodesPerWeight) || vnodesPerWeight < 1) {
    throw new RangeError(`vnodesPerWeight must be a positive integer, got ${vnodesPerWeight}`);
  }
  if (members.length > MAX_RING_MEMBERS) {
    throw new RangeError(`a ring holds at most ${MAX_RING_MEMBERS} members, got ${members.length}`);
  }
  const seen = new Set<string>();
  for (const member of members) {
    if (!Number.isFinite(member.weight) || member.weight < 0) {
      throw new RangeError(`member ${member.id}: weight must be a finite number >= 0, got ${member.weight}`);
    }
    // Equal ids would give equal points with no order between them: the ring would depend on input order.
    if (seen.has(member.id)) throw new RangeError(`duplicate ring member id ${member.id}`);
    seen.add(member.id);
  }
}
