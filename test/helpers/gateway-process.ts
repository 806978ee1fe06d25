// Child-process entry that runs one Gateway from a YAML file (argv[2]) and answers the parent over IPC: its ports
// when ready, and on request its own resource use (fds, handles, heap after GC, tunnels). Used where the test
// must own the process: fd limits (EMFILE), soak leak checks, crash detection. Logs go to stdout as pino JSON.

import { readdirSync, readFileSync } from 'node:fs';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { InProcessFleet } from '../../src/control/in-process.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { Metrics } from '../../src/observe/metrics.js';

export interface ChildReady {
  readonly type: 'ready';
  readonly port: number;
  readonly tlsPort: number;
  readonly adminPort: number;
}

export interface ChildStats {
  readonly type: 'stats';
  readonly fds: number;
  /** process.getActiveResourcesInfo() grouped by kind. */
  readonly resources: Record<string, number>;
  readonly heapUsed: number;
  /** Memory of Buffers and other ArrayBuffers (outside the JS heap): where a leaked socket buffer would show. */
  readonly arrayBuffers: number;
  readonly rss: number;
  readonly tunnels: number;
  readonly admitted: number;
  readonly metrics: string;
}

export type ParentMessage = { readonly type: 'stats' } | { readonly type: 'stop' };

/** The child could not report (the parent's stats() rejects with this message). */
export interface StatsError {
  readonly type: 'stats-error';
  readonly message: string;
}

const gc = (globalThis as { gc?: () => void }).gc;

async function main(): Promise<void> {
  const file = process.argv[2];
  if (file === undefined) throw new Error('usage: gateway-process.ts CONFIG.yaml');
  const config = parseConfig(readFileSync(file, 'utf8'), file);
  const log = pino({ level: process.env.WSGATE_CHILD_LOG ?? 'info' });
  const gateway = await Gateway.start(config, { log, metrics: new Metrics({ defaultMetrics: false }) });
  const control = await ControlPlane.start({ fleet: new InProcessFleet(gateway), config, log });
  const plain = gateway.boundListeners.find((l) => !l.secure);
  const tls = gateway.boundListeners.find((l) => l.secure);
  const ready: ChildReady = {
    type: 'ready',
    port: plain?.port ?? 0,
    tlsPort: tls?.port ?? 0,
    adminPort: control.adminPort,
  };
  process.send?.(ready);
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'stop') {
      void gateway
        .stop(500)
        .then(() => control.close())
        .then(() => process.exit(0));
      return;
    }
    retryOnEmfile(() => statsOf(gateway, control)).then(
      (stats) => process.send?.(stats),
      (err: Error) => process.send?.({ type: 'stats-error', message: err.message } satisfies StatsError),
    );
  });
  process.on('disconnect', () => process.exit(0));
}

/**
 * Reading /proc (descriptor count, resident memory) needs a descriptor itself: a child at its fd limit (the EMFILE
 * test) gets EMFILE until its sockets finish closing, so the report is retried for a while instead of failing.
 */
async function retryOnEmfile<T>(read: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EMFILE' || attempt >= 50) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function statsOf(gateway: Gateway, control: ControlPlane): Promise<ChildStats> {
  if (gc) {
    // Several passes with turns of the loop between them, so finalizers and weak maps settle.
    for (let i = 0; i < 4; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  const resources: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) resources[kind] = (resources[kind] ?? 0) + 1;
  const memory = process.memoryUsage();
  return {
    type: 'stats',
    fds: readdirSync('/proc/self/fd').length,
    resources,
    heapUsed: memory.heapUsed,
    arrayBuffers: memory.arrayBuffers,
    rss: memory.rss,
    tunnels: gateway.tunnels.size,
    admitted: gateway.admission.active,
    metrics: (await control.metrics()).text,
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway-process: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
