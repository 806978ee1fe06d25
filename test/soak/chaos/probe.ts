// Preloaded (NODE_OPTIONS=--import) into the gateway's primary and workers by the chaos soak: on SIGUSR2 the
// process collects garbage and writes what it holds to $WSGATE_PROBE_DIR/PID.json — active handles and requests
// by kind (process.getActiveResourcesInfo(), where a timer left behind by a replaced config shows as one more
// Timeout), heap used and array buffers after GC. fds are read from /proc by the soak itself. Test-only: the
// gateway knows nothing of it.

import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const dir = process.env.WSGATE_PROBE_DIR;
if (dir) {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  process.on('SIGUSR2', () => {
    void (async () => {
      for (let i = 0; i < 4; i++) {
        gc();
        await new Promise((r) => setImmediate(r));
      }
      const resources: Record<string, number> = {};
      for (const kind of process.getActiveResourcesInfo()) resources[kind] = (resources[kind] ?? 0) + 1;
      const memory = process.memoryUsage();
      const file = join(dir, `${process.pid}.json`);
      writeFileSync(
        `${file}.tmp`,
        JSON.stringify({ resources, heapUsed: memory.heapUsed, arrayBuffers: memory.arrayBuffers, rss: memory.rss }),
      );
      renameSync(`${file}.tmp`, file);
    })();
  });
}
