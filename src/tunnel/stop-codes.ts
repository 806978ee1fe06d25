// Why a pump's scan stopped: the codes its FrameObserver returns (≥ OBSERVER_STOP_MIN; lower ones are the scanner's
// violations). Each part of the observer returns its own; the pump acts on them.

/** A limit closes the peer (limits.ts; Limiter.hit says which). */
export const STOP_LIMIT = 100;
/** A limit holds the peer back for Limiter.throttleMs; the frame is presented again afterwards. */
export const STOP_THROTTLE = 101;
/** A pong that may answer our keepalive ping: cut it out of the stream until its payload is seen (keepalive.ts). */
export const STOP_ABSORB = 102;
/** The pong being cut out has been read whole: forward again from here. */
export const STOP_ABSORBED = 103;
/** The source's close frame has been seen: it goes through, and nothing after it (RFC 6455 §5.5.1). */
export const STOP_CLOSE = 104;
