// A backend's runtime state as operators set it through the admin API (HAProxy's `set server … state` and
// `set weight`): the admin state, a runtime weight, and the parsing of a requested change. The pool applies a change
// (pool.ts, control()); this module only says what a change is and whether one is well formed.

/** active: in the ring (health permitting); drain: out of the ring, tunnels left alone; disabled: out, tunnels moved. */
export type AdminState = 'active' | 'drain' | 'disabled';

export const ADMIN_STATES: readonly AdminState[] = ['active', 'drain', 'disabled'];

/** Runtime weights lie in (0, MAX_RUNTIME_WEIGHT]. */
export const MAX_RUNTIME_WEIGHT = 100;

/** What POST /api/pools/{pool}/backends/{backend} asks for: either or both. */
export interface BackendChange {
  readonly state?: AdminState;
  readonly weight?: number;
}

/** A backend's runtime state differing from its YAML: what a reload keeps and logs, and what new workers get. */
export interface BackendOverride {
  readonly pool: string;
  readonly backend: string;
  readonly state: AdminState;
  /** Present when a runtime weight is set. */
  readonly weight?: number;
}

/** The change a request body asks for, or every problem with it. */
export function parseBackendChange(
  body: unknown,
): { ok: true; change: BackendChange } | { ok: false; errors: string[] } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, errors: ['the body must be a JSON object such as {"state": "drain"} or {"weight": 0.5}'] };
  }
  const errors: string[] = [];
  const change: { state?: AdminState; weight?: number } = {};
  for (const [key, value] of Object.entries(body)) {
    if (key === 'state') {
      if (ADMIN_STATES.includes(value as AdminState)) change.state = value as AdminState;
      else errors.push(`state: expected one of ${ADMIN_STATES.join(', ')}, got ${JSON.stringify(value)}`);
    } else if (key === 'weight') {
      if (typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= MAX_RUNTIME_WEIGHT) {
        change.weight = value;
      } else {
        errors.push(
          `weight: expected a number above 0 and at most ${MAX_RUNTIME_WEIGHT}, got ${JSON.stringify(value)}`,
        );
      }
    } else errors.push(`${key}: unknown key (expected state or weight)`);
  }
  if (errors.length === 0 && change.state === undefined && change.weight === undefined) {
    errors.push('nothing to change: give state and/or weight');
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, change };
}

/** `ws://host:port` → `host:port`: how operators name a backend in the API and on the command line. */
export function backendAddress(id: string): string {
  return id.replace(/^wss?:\/\//, '');
}
