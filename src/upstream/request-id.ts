// The identity of one connection or plain request, the same in wsgate's log lines, the backend's headers and the
// client's answer: its request id (X-Request-Id) and W3C trace context (traceparent).
//
// The id is the client's own only when the peer is one of the listener's trustedProxies (a balancer in front that
// already gave the request an id) and the value is a sane token; anything else could be a client forging ids to
// pollute or confuse logs. A new id is 16 bytes, base64url (22 characters): 6 bytes of milliseconds since the epoch
// (so ids sort roughly by time) and 10 random bytes, which makes a collision between instances negligible without
// any coordination. A traceparent is passed on only when it is well formed (W3C Trace Context §3.2), else dropped.

import { randomFillSync } from 'node:crypto';

/** Request ids longer than this, or with other characters than these, are replaced. */
export const MAX_REQUEST_ID_CHARS = 128;
const SANE_ID = /^[A-Za-z0-9._~:+/=-]{1,128}$/;

/** version-traceid-parentid-flags: lower-case hex; version ff, an all-zero trace id or parent id are invalid. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

export interface RequestIdentity {
  readonly id: string;
  /** The client's traceparent when it is well formed; undefined otherwise or when none came. */
  readonly traceparent: string | undefined;
}

/** The identity of a request with these raw headers from a peer that is (or is not) a trusted proxy. */
export function identify(rawHeaders: readonly string[], trustedPeer: boolean): RequestIdentity {
  let clientId: string | undefined;
  let ids = 0;
  let traceparent: string | undefined;
  let traces = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    // Cheap length check first: most headers are neither.
    if (name.length === 12 && name.toLowerCase() === 'x-request-id') {
      ids++;
      clientId = rawHeaders[i + 1];
    } else if (name.length === 11 && name.toLowerCase() === 'traceparent') {
      traces++;
      traceparent = rawHeaders[i + 1];
    }
  }
  const id = trustedPeer && ids === 1 && clientId !== undefined && SANE_ID.test(clientId) ? clientId : newRequestId();
  return {
    id,
    traceparent: traces === 1 && traceparent !== undefined && isTraceparent(traceparent) ? traceparent : undefined,
  };
}

export function isTraceparent(value: string): boolean {
  const m = TRACEPARENT.exec(value);
  if (!m) return false;
  const [, version, traceId, parentId, , rest] = m;
  if (version === 'ff' || /^0+$/.test(traceId as string) || /^0+$/.test(parentId as string)) return false;
  // Version 00 has exactly four fields; later versions may append more (§3.2.4), which are passed on as they are.
  return version !== '00' || rest === undefined;
}

const ID_BYTES = 16;
const IDS_PER_FILL = 256;
/** Random bytes for the next ids, filled in batches: one getrandom call per IDS_PER_FILL ids. */
const random = Buffer.alloc(ID_BYTES * IDS_PER_FILL);
let next = IDS_PER_FILL;

export function newRequestId(): string {
  if (next === IDS_PER_FILL) {
    randomFillSync(random);
    next = 0;
  }
  const id = random.subarray(next * ID_BYTES, (next + 1) * ID_BYTES);
  next++;
  id.writeUIntBE(Date.now(), 0, 6);
  return id.toString('base64url');
}
