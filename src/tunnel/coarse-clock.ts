// A coarse monotonic clock (ms), advanced by the sweeper: reading it on the hot path costs a property load.

export const coarseClock = { nowMs: performance.now() };
