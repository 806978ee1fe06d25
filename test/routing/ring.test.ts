import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashString } from '../../src/routing/hash.js';
import { Ring, type RingMember } from '../../src/routing/ring.js';

const KEY_COUNT = 10_000;
const KEYS = Array.from({ length: KEY_COUNT }, (_, i) => hashString(`client-${i}`));

const backends = (count: number, weight = 1): RingMember[] =>
  Array.from({ length: count }, (_, i) => ({ id: `ws://10.0.0.${i + 1}:3001`, weight }));

/** Owner id of every key, so rings built from differently ordered members compare by identity. */
const ownerIds = (ring: Ring): string[] => KEYS.map((key) => ring.members[ring.owner(key)]!.id);

const countBy = (ids: readonly string[]): Map<string, number> => {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
};

describe('Ring.build', () => {
  it('places round(weight × vnodesPerWeight) points per member and counts weighted members only', () => {
    const ring = Ring.build(
      [
        { id: 'a', weight: 1 },
        { id: 'b', weight: 2.5 },
        { id: 'c', weight: 0 },
        { id: 'd', weight: 0.001 },
      ],
      10,
    );
    expect(ring.pointCount).toBe(10 + 25 + 0 + 1); // a positive weight keeps at least one point
    expect(ring.size).toBe(3);
    expect(ring.members.map((m) => m.id)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('keeps member indexes in input order and freezes the members', () => {
    const members = backends(3);
    const ring = Ring.build(members);
    expect(ring.members).toEqual(members);
    expect(Object.isFrozen(ring.members)).toBe(true);
    expect(Object.isFrozen(ring.members[0])).toBe(true);
  });

  it('rejects duplicate ids, bad weights and bad vnode counts', () => {
    expect(() => Ring.build([...backends(2), backends(1)[0]!])).toThrow(/duplicate/);
    expect(() => Ring.build([{ id: 'a', weight: -1 }])).toThrow(/weight/);
    expect(() => Ring.build([{ id: 'a', weight: Number.NaN }])).toThrow(/weight/);
    expect(() => Ring.build(backends(2), 0)).toThrow(/vnodesPerWeight/);
    expect(() => Ring.build(backends(2), 1.5)).toThrow(/vnodesPerWeight/);
    expect(() => Ring.build([{ id: 'a', weight: 1e6 }])).toThrow(/points/);
  });

  it('is the same ring whatever the order of members and across builds', () => {
    const members = backends(7);
    const reference = ownerIds(Ring.build(members));
    expect(ownerIds(Ring.build(members))).toEqual(reference);
    expect(ownerIds(Ring.build([...members].reverse()))).toEqual(reference);
    const shuffled = [members[3]!, members[0]!, members[6]!, members[1]!, members[5]!, members[2]!, members[4]!];
    expect(ownerIds(Ring.build(shuffled))).toEqual(reference);
  });

  it('breaks point ties by member id (code-unit order), not input order', () => {
    // Found by search: hash('m8961#0') === hash('m70373#0'), so with one vnode each the two points are equal.
    const point = 2764143811;
    const tied = [
      { id: 'm8961', weight: 1 },
      { id: 'm70373', weight: 1 },
    ];
    for (const members of [tied, [...tied].reverse()]) {
      const ring = Ring.build(members, 1);
      expect(ring.pointCount).toBe(2);
      expect(ring.members[ring.owner(point)]!.id).toBe('m70373');
      expect(ring.members[ring.owner(point + 1)]!.id).toBe('m70373'); // wraps to the same tied pair
      const next = ring.pick(point, undefined, undefined, [ring.owner(point)]);
      expect(ring.members[next]!.id).toBe('m8961');
    }
  });
});

describe('Ring.owner', () => {
  it('returns -1 on an empty ring or one with only weight-0 members', () => {
    expect(Ring.build([]).owner(123)).toBe(-1);
    expect(Ring.build([{ id: 'a', weight: 0 }]).owner(123)).toBe(-1);
    expect(Ring.build([]).pick(123, [], 1.25, [])).toBe(-1);
  });

  it('gives the same member for the same key, 100 times', () => {
    const ring = Ring.build(backends(5));
    const key = hashString('user-42');
    const first = ring.owner(key);
    for (let i = 0; i < 100; i++) expect(ring.owner(key)).toBe(first);
    expect(ring.pick(key)).toBe(first);
  });

  it('wraps past the highest point and accepts any 32-bit hash (signed or unsigned)', () => {
    const ring = Ring.build(backends(3));
    expect(ring.owner(0xffffffff)).toBe(ring.owner(0));
    expect(ring.owner(-1)).toBe(ring.owner(0xffffffff));
  });

  it('never picks a weight-0 member', () => {
    const ring = Ring.build([...backends(3), { id: 'drained', weight: 0 }]);
    for (const key of KEYS) expect(ring.owner(key)).not.toBe(3);
  });

  it('moves about 1/n of keys when a member joins, and only onto the new member', () => {
    for (const n of [4, 10]) {
      const before = ownerIds(Ring.build(backends(n)));
      const after = ownerIds(Ring.build(backends(n + 1)));
      const newId = backends(n + 1)[n]!.id;
      let moved = 0;
      for (let i = 0; i < KEY_COUNT; i++) {
        if (before[i] === after[i]) continue;
        moved++;
        expect(after[i]).toBe(newId);
      }
      const expected = KEY_COUNT / (n + 1);
      expect(moved).toBeGreaterThan(0.5 * expected);
      expect(moved).toBeLessThan(1.6 * expected);
    }
  });

  it('moves only the removed member’s keys when a member leaves', () => {
    const members = backends(8);
    const before = ownerIds(Ring.build(members));
    const removed = members[5]!.id;
    const after = ownerIds(Ring.build(members.filter((m) => m.id !== removed)));
    for (let i = 0; i < KEY_COUNT; i++) {
      if (before[i] !== removed) expect(after[i]).toBe(before[i]);
      else expect(after[i]).not.toBe(removed);
    }
  });

  it('setting weight 0 moves exactly the keys that removing the member would', () => {
    const members = backends(6);
    const zeroed = members.map((m, i) => (i === 2 ? { ...m, weight: 0 } : m));
    expect(ownerIds(Ring.build(zeroed))).toEqual(ownerIds(Ring.build(members.filter((_, i) => i !== 2))));
  });

  it('gives a weight-2 member about twice the keys of a weight-1 member', () => {
    const ring = Ring.build([...backends(4), { id: 'ws://10.0.0.99:3001', weight: 2 }]);
    const counts = countBy(ownerIds(ring));
    const heavy = counts.get('ws://10.0.0.99:3001')!;
    const lightAverage = (KEY_COUNT - heavy) / 4;
    expect(heavy / lightAverage).toBeGreaterThan(1.5);
    expect(heavy / lightAverage).toBeLessThan(2.6);
  });

  it('spreads keys evenly enough with 160 vnodes per member', () => {
    const counts = countBy(ownerIds(Ring.build(backends(10))));
    for (const count of counts.values()) {
      expect(count).toBeGreaterThan(0.7 * (KEY_COUNT / 10));
      expect(count).toBeLessThan(1.3 * (KEY_COUNT / 10));
    }
  });
});

describe('Ring.pick with bounded loads', () => {
  /** Assigns every key in turn with live loads, as the pool would for long-lived connections. */
  const assignAll = (ring: Ring, balanceFactor: number): number[] => {
    const loads = new Array<number>(ring.members.length).fill(0);
    for (const key of KEYS) {
      const m = ring.pick(key, loads, balanceFactor);
      expect(m).toBeGreaterThanOrEqual(0);
      loads[m]!++;
    }
    return loads;
  };

  it('keeps every member at or below ceil(1.25 × average) over 10,000 sequential assignments', () => {
    for (const n of [3, 7, 10]) {
      const loads = assignAll(Ring.build(backends(n)), 1.25);
      const bound = Math.ceil((1.25 * KEY_COUNT) / n);
      expect(Math.max(...loads)).toBeLessThanOrEqual(bound);
      expect(loads.reduce((a, b) => a + b, 0)).toBe(KEY_COUNT);
    }
  });

  it('scales capacity with weight, so a weight-2 member may hold twice the share', () => {
    const ring = Ring.build([...backends(3), { id: 'heavy', weight: 2 }]);
    const loads = assignAll(ring, 1.25);
    expect(loads[3]!).toBeLessThanOrEqual(Math.ceil((1.25 * KEY_COUNT * 2) / 5));
    for (let m = 0; m < 3; m++) expect(loads[m]!).toBeLessThanOrEqual(Math.ceil((1.25 * KEY_COUNT) / 5));
    expect(loads[3]! / loads[0]!).toBeGreaterThan(1.5);
  });

  it('returns the plain owner while the owner is under capacity', () => {
    const ring = Ring.build(backends(5));
    for (const key of KEYS.slice(0, 500)) expect(ring.pick(key, [0, 0, 0, 0, 0], 1.25)).toBe(ring.owner(key));
  });

  it('skips an overloaded owner to the next member clockwise', () => {
    const ring = Ring.build(backends(4));
    const key = KEYS[0]!;
    const owner = ring.owner(key);
    const loads = [10, 10, 10, 10];
    loads[owner] = 100; // total 130 → capacity ceil(1.25 × 131 / 4) = 41
    const picked = ring.pick(key, loads, 1.25);
    expect(picked).not.toBe(owner);
    expect(picked).toBe(ring.pick(key, undefined, undefined, [owner]));
  });

  it('returns the first eligible member when a factor below 1 leaves nobody under capacity', () => {
    const ring = Ring.build(backends(3));
    const key = KEYS[1]!;
    expect(ring.pick(key, [5, 5, 5], 0.1)).toBe(ring.owner(key));
  });

  it('treats missing load entries as 0', () => {
    const ring = Ring.build(backends(3));
    expect(ring.pick(KEYS[2]!, [], 1.25)).toBe(ring.owner(KEYS[2]!));
  });
});

describe('Ring.pick with exclusions', () => {
  it('retries on the next member clockwise, never an excluded one', () => {
    const ring = Ring.build(backends(5));
    for (const key of KEYS.slice(0, 1000)) {
      const first = ring.pick(key);
      const second = ring.pick(key, undefined, undefined, [first]);
      const third = ring.pick(key, undefined, undefined, [first, second]);
      expect(new Set([first, second, third]).size).toBe(3);
    }
  });

  it('agrees with a ring that lacks the excluded member', () => {
    const members = backends(6);
    const ring = Ring.build(members);
    const without = Ring.build(members.filter((_, i) => i !== 4));
    for (const key of KEYS.slice(0, 2000)) {
      expect(ring.members[ring.pick(key, undefined, undefined, [4])]!.id).toBe(without.members[without.owner(key)]!.id);
    }
  });

  it('returns -1 when every member is excluded', () => {
    const ring = Ring.build(backends(3));
    expect(ring.pick(KEYS[0]!, undefined, undefined, [0, 1, 2])).toBe(-1);
    expect(ring.pick(KEYS[0]!, [0, 0, 0], 1.25, [2, 1, 0])).toBe(-1);
  });

  it('accepts typed arrays for loads and exclusions', () => {
    const ring = Ring.build(backends(3));
    const owner = ring.owner(KEYS[3]!);
    const picked = ring.pick(KEYS[3]!, new Uint32Array(3), 1.25, Int32Array.of(owner));
    expect(picked).not.toBe(owner);
    expect(picked).toBeGreaterThanOrEqual(0);
  });
});

describe('Ring properties', () => {
  const memberSet = fc.uniqueArray(
    fc.record({ id: fc.string({ minLength: 1, maxLength: 12 }), weight: fc.constantFrom(0, 0.5, 1, 2, 3) }),
    { minLength: 1, maxLength: 12, selector: (m) => m.id },
  );

  it('picks deterministically, always an eligible member under capacity when one exists', () => {
    fc.assert(
      fc.property(
        memberSet,
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.array(fc.nat(50), { maxLength: 12 }),
        fc.constantFrom(undefined, 1, 1.25, 2),
        fc.array(fc.nat(11), { maxLength: 4 }),
        (members, key, loads, factor, exclude) => {
          const ring = Ring.build(members, 8);
          const picked = ring.pick(key, loads, factor, exclude);
          const rebuilt = Ring.build([...members].reverse(), 8);
          const again = rebuilt.pick(
            key,
            [...members].reverse().map((m) => loads[members.indexOf(m)] ?? 0),
            factor,
            exclude.map((i) => (i < members.length ? members.length - 1 - i : i)),
          );
          const eligible = members.map((m, i) => m.weight > 0 && !exclude.includes(i));
          if (!eligible.includes(true)) {
            expect(picked).toBe(-1);
            return;
          }
          expect(eligible[picked]).toBe(true);
          expect(ring.pick(key, loads, factor, exclude)).toBe(picked);
          expect(rebuilt.members[again]!.id).toBe(members[picked]!.id);
          if (factor !== undefined) {
            let total = 0;
            let weight = 0;
            members.forEach((m, i) => {
              if (eligible[i]) {
                total += loads[i] ?? 0;
                weight += m.weight;
              }
            });
            const capacity = Math.ceil((factor * (total + 1) * members[picked]!.weight) / weight);
            expect(loads[picked] ?? 0).toBeLessThan(capacity);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
