// What every connection-handling stage reads: the current runtime snapshot and the process-wide services.

import type { ConnectionRate } from '../access/connection-rate.js';
import type { Logger } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import type { Tunnel } from '../tunnel/tunnel.js';
import type { Admission } from './admission.js';
import type { Runtime } from './runtime.js';

export interface ProxyContext {
  /** The live snapshot; swapped whole on reload, so read it once per connection. */
  readonly runtime: Runtime;
  readonly metrics: Metrics;
  readonly admission: Admission;
  /** limits.connectionRate's buckets: per process, kept across reloads. */
  readonly connectionRate: ConnectionRate;
  readonly log: Logger;
  /** Live tunnels, for draining. */
  readonly tunnels: Set<Tunnel>;
  /** True once shutdown began: new upgrades get 503. */
  readonly draining: boolean;
}
