// The chaos soak's backends: each one a child process (backend-process.ts) on a fixed address, so it can be
// SIGKILLed (its clients must see 1014) and started again on the same host and port, told to stop reading for a
// while, and have its open fds compared with its baseline at the end.

import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_BIN, ROOT } from '../../helpers/paths.js';

const here = dirname(fileURLToPath(import.meta.url));

export class BackendProcess {
  readonly id: string;
  readonly host: string;
  port: number;
  private child: ChildProcess | undefined;
  /** Open fds right after the first start (the baseline the end-of-run check compares with). */
  baselineFds = 0;

  private constructor(id: string, host: string, port: number) {
    this.id = id;
    this.host = host;
    this.port = port;
  }

  /** Starts backend `id` on host:port (port 0: a free one, kept for restarts). */
  static async start(id: string, host: string, port = 0): Promise<BackendProcess> {
    const b = new BackendProcess(id, host, port);
    await b.spawn();
    return b;
  }

  get url(): string {
    return `ws://${this.host}:${this.port}`;
  }

  get alive(): boolean {
    return this.child !== undefined;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  /** (Re)starts the process on the same address; retries while the port is still held by the killed one. */
  async spawn(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const child = spawn(
        NODE_BIN,
        [
          '--import',
          join(ROOT, 'test/helpers/ts-hooks.ts'),
          join(here, 'backend-process.ts'),
          this.id,
          this.host,
          String(this.port),
        ],
        {
          cwd: ROOT,
          stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
          env: { ...process.env, NODE_OPTIONS: '', NODE_NO_WARNINGS: '1' },
        },
      );
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const port = await new Promise<number | undefined>((resolve) => {
        child.once('message', (m: { port: number }) => resolve(m.port));
        child.once('exit', () => resolve(undefined));
      });
      if (port !== undefined) {
        this.port = port;
        this.child = child;
        child.once('exit', () => {
          if (this.child === child) this.child = undefined;
        });
        if (this.baselineFds === 0) this.baselineFds = this.fds();
        return;
      }
      if (attempt >= 20) throw new Error(`backend ${this.id} did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGKILL: every connection ends at the TCP level, nothing listens until spawn(). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  /** Stops reading from every live connection for `ms`. */
  stall(ms: number): void {
    this.child?.send({ type: 'stall', ms });
  }

  /** Health checks this process has answered since it started. */
  healthChecks(): Promise<number> {
    const child = this.child;
    if (!child) return Promise.resolve(0);
    return new Promise((resolve) => {
      const onMessage = (m: { type: string; healthChecks: number }) => {
        if (m.type !== 'count') return;
        child.off('message', onMessage);
        resolve(m.healthChecks);
      };
      child.on('message', onMessage);
      child.send({ type: 'count' });
    });
  }

  fds(): number {
    return this.child?.pid ? readdirSync(`/proc/${this.child.pid}/fd`).length : 0;
  }

  /** Ends the process for good (IPC disconnect makes it exit; SIGKILL if it lingers). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const exited = new Promise((r) => child.once('exit', r));
    child.disconnect();
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}
