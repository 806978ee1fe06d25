// The soak's side of probe.ts: asks the gateway's primary and each live worker (pids from /api/status) for their
// handles and heap, and reads their open fds from /proc; then compares the end of a run with its baseline.

import { existsSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { delay } from '../../helpers/wait.js';

export interface ProcessSnapshot {
  readonly pid: number;
  readonly fds: number;
  readonly resources: Record<string, number>;
  /** Pending timers by where they were made. */
  readonly timerSites: Record<string, number>;
  readonly heapUsed: number;
  readonly arrayBuffers: number;
  readonly rss: number;
}

export class ProcessProbe {
  private readonly dir: string;
  private readonly adminPort: number;

  constructor(dir: string, adminPort: number) {
    this.dir = dir;
    this.adminPort = adminPort;
  }

  /**
   * `samples` snapshots `gapMs` apart, keeping each number's minimum: a health check's timeout timer or a scrape's
   * socket that happens to be live at one moment is not a leak; whatever a process holds in every sample is.
   */
  async settled(samples = 5, gapMs = 400): Promise<Record<string, ProcessSnapshot>> {
    let best = await this.snapshot();
    for (let i = 1; i < samples; i++) {
      await delay(gapMs);
      const next = await this.snapshot();
      for (const [name, s] of Object.entries(next)) {
        const b = best[name];
        if (!b || b.pid !== s.pid) {
          best[name] = s;
          continue;
        }
        const resources: Record<string, number> = {};
        for (const kind of new Set([...Object.keys(b.resources), ...Object.keys(s.resources)])) {
          const n = Math.min(b.resources[kind] ?? 0, s.resources[kind] ?? 0);
          if (n > 0) resources[kind] = n;
        }
        best[name] = {
          pid: s.pid,
          fds: Math.min(b.fds, s.fds),
          resources,
          timerSites: s.timerSites,
          heapUsed: Math.min(b.heapUsed, s.heapUsed),
          arrayBuffers: Math.min(b.arrayBuffers, s.arrayBuffers),
          rss: s.rss,
        };
      }
      best = Object.fromEntries(Object.entries(best).filter(([name]) => name in next));
    }
    return best;
  }

  /** "primary" and "worker N" for every ready worker. */
  async snapshot(): Promise<Record<string, ProcessSnapshot>> {
    const status = (await statusWithoutKeepAlive(this.adminPort)) as {
      pid: number;
      workers: { list: { id: number; pid: number; state: string }[] };
    };
    const out: Record<string, ProcessSnapshot> = { primary: await this.one(status.pid) };
    for (const w of status.workers.list) if (w.state === 'ready') out[`worker ${w.id}`] = await this.one(w.pid);
    return out;
  }

  private async one(pid: number): Promise<ProcessSnapshot> {
    const file = join(this.dir, `${pid}.json`);
    if (existsSync(file)) unlinkSync(file);
    process.kill(pid, 'SIGUSR2');
    for (let i = 0; i < 100 && !existsSync(file); i++) await delay(50);
    const data = JSON.parse(readFileSync(file, 'utf8')) as Omit<ProcessSnapshot, 'pid' | 'fds'>;
    return { pid, fds: readdirSync(`/proc/${pid}/fd`).length, ...data };
  }
}

/**
 * GET /api/status on a connection closed after the answer: a kept-alive one would leave the primary a keep-alive
 * timer of the probe's own making in the very snapshot it asked for (probe.ts leaves out the other one a response
 * makes, node:http's Date-header cache).
 */
function statusWithoutKeepAlive(adminPort: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = get(
      { host: '127.0.0.1', port: adminPort, path: '/api/status', agent: false, headers: { connection: 'close' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}
