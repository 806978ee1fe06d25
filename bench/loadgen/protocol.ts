// Messages between the harness and its load-generator processes (over the child-process IPC channel).

export interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly tls: boolean;
}

export type Job =
  | {
      readonly mode: 'echo';
      readonly endpoint: Endpoint;
      readonly connections: number;
      readonly payloadBytes: number;
      /** Messages in flight per connection (closed loop), or the cap on them when `ratePerConnection` is set. */
      readonly window: number;
      /** Open loop: each connection sends this many messages per second, whatever comes back. 0 = closed loop. */
      readonly ratePerConnection: number;
      readonly connectConcurrency: number;
    }
  | { readonly mode: 'handshake'; readonly endpoint: Endpoint; readonly concurrency: number }
  | {
      readonly mode: 'idle';
      readonly endpoint: Endpoint;
      readonly connections: number;
      readonly connectConcurrency: number;
    };

/** Harness → generator. `measure` starts the measured interval (counters reset); `stop` ends it. */
export type Command =
  | { readonly type: 'job'; readonly job: Job }
  | { readonly type: 'measure' }
  | { readonly type: 'stop' };

/** Generator → harness. */
export type Report =
  | { readonly type: 'ready'; readonly opened: number; readonly failed: number; readonly firstError: string | null }
  | {
      readonly type: 'result';
      /** Echoed messages (echo) or completed upgrades (handshake) in the measured interval. */
      readonly count: number;
      readonly errors: number;
      readonly firstError: string | null;
      /** Latencies in microseconds, hdr-histogram-js compressed base64; null when nothing was recorded. */
      readonly histogram: string | null;
      /** Connections that ended early during the measured interval (echo, idle). */
      readonly dropped: number;
    };
