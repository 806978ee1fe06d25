// The V8 flags wsgate runs with: `npm start`, the `wsgate` bin (its shebang) and the Docker image pass them, and
// the benchmark harness starts wsgate the same way (test/docs/node-flags.test.ts keeps the four in step).
//
// A 2 MiB semi-space (young generation) instead of V8's default of up to 16 MiB: a proxy's garbage is short-lived
// per-chunk and per-handshake objects, so a small young generation costs little CPU and keeps resident memory per
// idle connection low (BENCHMARKS.md: memory per idle connection). Override by starting node with another
// --max-semi-space-size.
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
