// Child processes for the harness: start pinned to CPUs (taskset), stop for certain, and read what /proc says
// about a process tree (CPU seconds from utime+stime, resident memory from VmRSS).

import { type ChildProcess, execFileSync, type StdioOptions, spawn } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';

let tasksetPresent: boolean | undefined;

/** The descriptor limit (`ulimit -n`) the harness and its children run under. */
export function fdLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)\s+/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[1] === undefined || m[1] === 'unlimited' ? 1_048_576 : Number(m[1]);
}

export function hasTaskset(): boolean {
  tasksetPresent ??= commandExists('taskset');
  return tasksetPresent;
}

export function commandExists(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore', env: withSbinPath() });
    return true;
  } catch {
    return false;
  }
}

/** nginx and haproxy live in /usr/sbin, which is not on every user's PATH. */
export function withSbinPath(): NodeJS.ProcessEnv {
  const path = process.env.PATH ?? '';
  return { ...process.env, PATH: `${path}:/usr/sbin:/sbin` };
}

export interface StartOptions {
  /** CPU list for taskset ("1", "0,1"); undefined = not pinned. */
  readonly cpus: string | undefined;
  /** stdout and stderr go here (append). */
  readonly logFile: string;
  readonly ipc?: boolean;
  readonly cwd?: string;
}

/** Starts `command args` (through `taskset -c cpus` when asked and available); the pid is the command's own. */
export function startProcess(command: string, args: readonly string[], options: StartOptions): ChildProcess {
  const log = openSync(options.logFile, 'a');
  const stdio: StdioOptions = options.ipc ? ['ignore', log, log, 'ipc'] : ['ignore', log, log];
  const pinned = options.cpus !== undefined && hasTaskset();
  // taskset execs the command, so the child's pid is the command's pid and affinity is inherited by its
  // threads and children (nginx's worker) from the first instruction on.
  const child = pinned
    ? spawn('taskset', ['-c', options.cpus as string, command, ...args], {
        stdio,
        env: withSbinPath(),
        cwd: options.cwd,
      })
    : spawn(command, [...args], { stdio, env: withSbinPath(), cwd: options.cwd });
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** Fields of /proc/PID/stat after the "(comm)" field, which may itself contain spaces. */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** `pid` and all its descendants (nginx's master and worker, for instance). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    const ppid = Number(fields?.[1]);
    if (!Number.isFinite(ppid)) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const tree: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    tree.push(p);
    for (const c of children.get(p) ?? []) stack.push(c);
  }
  return tree;
}

/** User + system CPU seconds of these processes (all their threads) so far. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    // utime and stime are fields 14 and 15 of stat; here indexes 11 and 12 (fields start at "state").
    if (f) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / clockTicks();
}

/** Sum of VmRSS of these processes, in bytes. */
export function rssBytes(pids: readonly number[]): number {
  let kib = 0;
  for (const pid of pids) {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kib += Number(m[1]);
    } catch {
      // the process went away: it holds no memory
    }
  }
  return kib * 1024;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
