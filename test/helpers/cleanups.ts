// What a test starts, it stops: a stack of cleanups run after each test (last pushed first, each awaited), so a
// failing test still closes its gateway, backends and sockets and the next test starts from nothing.

import { afterEach } from 'vitest';

export type Cleanup = () => unknown;

/** Runs and empties `stack`, last pushed first, awaiting each; for files that clean up in afterAll. */
export async function runCleanups(stack: Cleanup[]): Promise<void> {
  while (stack.length > 0) await stack.pop()?.();
}

/** A cleanup stack for the calling test file, emptied by an afterEach this registers. Call once, at top level. */
export function cleanupAfterEach(): Cleanup[] {
  const stack: Cleanup[] = [];
  afterEach(() => runCleanups(stack));
  return stack;
}
