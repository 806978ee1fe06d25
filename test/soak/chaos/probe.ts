// Preloaded (NODE_OPTIONS=--import) into the gateway's primary and workers by the chaos soak: on SIGUSR2 the
// process collects garbage and writes what it holds to $WSGATE_PROBE_DIR/PID.json — active handles and requests
// by kind (process.getActiveResourcesInfo()), every pending timer, ref'd or not (getActiveResourcesInfo lists only
// ref'd ones, and health checks, discovery and pacers unref theirs: an async hook counts them all, so a timer
// left behind by a replaced config shows as one more), heap used and array buffers after GC. fds are read from
// /proc by the soak itself. Test-only: the gateway knows nothing of it.

import { createHook } from 'node:async_hooks';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const dir = process.env.WSGATE_PROBE_DIR;
if (dir) {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // Where each pending timer was made (a few frames of wsgate's code), so a leaked one can be named.
  const timers = new Map<number, string>();
  createHook({
    init(id, type) {
      if (type !== 'Timeout') return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 40;
      const lines = (new Error().stack ?? '').split('\n').slice(2);
      Error.stackTraceLimit = limit;
      // node:http's cache of the Date header: one unref'd timer of a second, made again by any response (the probe's
      // own /api/status call included). Not a timer wsgate holds.
      if (lines.some((l) => l.includes('at utcDate (node:internal/http'))) return;
      const ours = lines.filter((l) => l.includes('/src/') || l.includes('/dist/'));
      // A timer Node made for itself (a socket's timeout, a server's check) is named by its own frames instead.
      const frames = (ours.length > 0 ? ours : lines.map((l) => `node: ${l.trim()}`)).slice(0, 3);
      const site = frames.map((l) =>
        l
          .trim()
          .replace(/^at /, '')
          .replace(/\(?file:\/\/\S*\/(src|dist)\//, '$1/'),
      );
      timers.set(id, site.join(' < ') || 'unknown');
    },
    destroy(id) {
      timers.delete(id);
    },
  }).enable();
  process.on('SIGUSR2', () => {
    void (async () => {
      for (let i = 0; i < 4; i++) {
        gc();
        await new Promise((r) => setImmediate(r));
      }
      const resources: Record<string, number> = {};
      for (const kind of process.getActiveResourcesInfo()) resources[kind] = (resources[kind] ?? 0) + 1;
      resources['timers (ref or not)'] = timers.size;
      const timerSites: Record<string, number> = {};
      for (const site of timers.values()) timerSites[site] = (timerSites[site] ?? 0) + 1;
      const memory = process.memoryUsage();
      const file = join(dir, `${process.pid}.json`);
      writeFileSync(
        `${file}.tmp`,
        JSON.stringify({
          resources,
          timerSites,
          heapUsed: memory.heapUsed,
          arrayBuffers: memory.arrayBuffers,
          rss: memory.rss,
        }),
      );
      renameSync(`${file}.tmp`, file);
    })();
  });
}
