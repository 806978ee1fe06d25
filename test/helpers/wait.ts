// Polling and timing helpers for tests on real sockets: wait for a condition instead of sleeping a guess.

/** Resolves once `check` is true (polled every `everyMs`), rejects after `ms` with `what` in the message. */
export function waitFor(
  check: () => boolean | Promise<boolean>,
  ms = 5000,
  what = 'condition',
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = async () => {
      try {
        if (await check()) return resolve();
      } catch (err) {
        return reject(err);
      }
      if (Date.now() > deadline) return reject(new Error(`${what} not met within ${ms} ms`));
      setTimeout(tick, everyMs);
    };
    void tick();
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Milliseconds `fn` takes, and its result. */
export function timed<T>(fn: () => T): { ms: number; result: T } {
  const started = performance.now();
  const result = fn();
  return { ms: performance.now() - started, result };
}
