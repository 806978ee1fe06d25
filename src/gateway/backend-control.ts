// Runtime control of one backend, as the admin API asks it of each serving process (through the Fleet): find the
// pool and the member in the running runtime, apply the change, answer with the backend's new state.

import type { BackendChange, BackendOverride } from '../pool/admin-state.js';
import type { Runtime } from '../proxy/runtime.js';
import { type BackendStatus, backendStatusOf } from './process-status.js';

/** A backend as POST /api/pools/{pool}/backends/{backend} answers it. */
export interface BackendView extends BackendStatus {
  readonly pool: string;
}

export type BackendControlResult =
  | { readonly ok: true; readonly backend: BackendView }
  /** No such pool or backend (the API's 404). */
  | { readonly ok: false; readonly error: string };

export function controlBackend(
  runtime: Runtime,
  poolName: string,
  backendName: string,
  change: BackendChange,
): BackendControlResult {
  const pool = runtime.pools.get(poolName);
  if (!pool) return { ok: false, error: `no pool named ${poolName}` };
  const member = pool.memberNamed(backendName);
  if (!member) return { ok: false, error: `pool ${poolName} has no backend ${backendName}` };
  pool.control(member, change);
  return { ok: true, backend: { pool: poolName, ...backendStatusOf(member, Date.now()) } };
}

/** Every backend whose runtime state differs from the YAML, over all pools. */
export function runtimeOverrides(runtime: Runtime): BackendOverride[] {
  return [...runtime.pools.values()].flatMap((p) => p.overrides());
}
