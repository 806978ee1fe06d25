// Messages between the cluster primary and its workers: JSON over node:cluster's IPC channel.

import type { ConnectionFilter } from '../../gateway/connections.js';
import type { CertificatePair } from '../../listen/tls.js';
import type { BackendChange } from '../../pool/admin-state.js';

export type ToWorker =
  | {
      readonly type: 'wsgate:start';
      readonly file: string;
      readonly text: string;
      readonly generation: number;
      /** One generated certificate for every worker's TLS listeners without files (see GatewayOptions). */
      readonly fallbackCert: CertificatePair;
      /** The process tree's session ticket key, base64 (see GatewayOptions.ticketKey). */
      readonly ticketKey: string;
    }
  /** The process tree's ticket key was rotated (no reply). */
  | { readonly type: 'wsgate:ticketKey'; readonly key: string }
  | { readonly type: 'wsgate:reload'; readonly id: number; readonly text: string; readonly generation: number }
  | { readonly type: 'wsgate:metrics'; readonly id: number }
  | { readonly type: 'wsgate:status'; readonly id: number }
  | { readonly type: 'wsgate:connections'; readonly id: number; readonly filter: ConnectionFilter }
  /** An operator's change to a backend (admin API); the reply is a BackendControlResult. */
  | {
      readonly type: 'wsgate:backend';
      readonly id: number;
      readonly pool: string;
      readonly backend: string;
      readonly change: BackendChange;
    }
  | { readonly type: 'wsgate:shutdown'; readonly acceptDelayMs: number; readonly drainMs: number };

/** The requests a worker answers with a reply carrying the same id. */
export type WorkerRequest = Extract<ToWorker, { readonly id: number }>;

export type FromWorker =
  | { readonly type: 'wsgate:ready'; readonly generation: number }
  | { readonly type: 'wsgate:failed'; readonly error: string }
  | { readonly type: 'wsgate:reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'wsgate:reply'; readonly id: number; readonly ok: false; readonly error: string };

export function isFromWorker(message: unknown): message is FromWorker {
  return (
    typeof message === 'object' &&
    message !== null &&
    String((message as { type?: unknown }).type).startsWith('wsgate:')
  );
}
