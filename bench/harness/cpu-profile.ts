// Reads a V8 .cpuprofile (from `node --cpu-prof`) and sums self time per function and per category, so the
// hot spots of wsgate under load can be read without a flame-graph viewer.

import { readFileSync } from 'node:fs';
import type { ProfileRow, ProfileSummary } from './results.js';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly hitCount?: number;
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

/** Names V8 gives to time that is not in a JavaScript function. */
const IDLE = '(idle)';

function categoryOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (functionName === IDLE) return 'idle';
  if (functionName === '(garbage collector)') return 'garbage collector';
  if (functionName === '(program)') return 'native (program: syscalls, libuv, OpenSSL)';
  if (url.includes('/dist/src/')) return 'wsgate (dist/src)';
  if (url.includes('/node_modules/')) return 'dependencies (node_modules)';
  if (url.startsWith('node:')) return 'node core (JS)';
  if (url === '') return 'native (V8 builtins, bindings)';
  return 'other';
}

function shortLocation(frame: CallFrame, root: string): string {
  let url = frame.url;
  if (url === '') return '(native)';
  url = url.replace(/^file:\/\//, '');
  if (url.startsWith(root)) url = url.slice(root.length + 1);
  return `${url}:${frame.lineNumber + 1}`;
}

export function summariseCpuProfile(file: string, root: string, top = 25): Omit<ProfileSummary, 'messagesPerSecond'> {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  // Self time per node: the time until the next sample is charged to the node sampled (as DevTools does).
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length > 0) {
    for (let i = 0; i < samples.length; i++) {
      const id = samples[i] as number;
      const next = deltas[i + 1] ?? 0;
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, next));
    }
  } else {
    const interval =
      (profile.endTime - profile.startTime) /
      Math.max(
        1,
        profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0),
      );
    for (const n of profile.nodes) selfUs.set(n.id, (n.hitCount ?? 0) * interval);
  }

  const perFunction = new Map<string, { frame: CallFrame; us: number }>();
  const perCategory = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    totalUs += us;
    const cat = categoryOf(node.callFrame);
    if (cat === 'idle') {
      idleUs += us;
      continue;
    }
    perCategory.set(cat, (perCategory.get(cat) ?? 0) + us);
    const f = node.callFrame;
    const key = `${f.functionName}\u0000${f.url}\u0000${f.lineNumber}`;
    const entry = perFunction.get(key) ?? { frame: f, us: 0 };
    entry.us += us;
    perFunction.set(key, entry);
  }
  const busyUs = Math.max(1, totalUs - idleUs);
  const rows: ProfileRow[] = [...perFunction.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({
      functionName: e.frame.functionName || '(anonymous)',
      location: shortLocation(e.frame, root),
      selfMs: e.us / 1000,
      selfShare: e.us / busyUs,
    }));
  const byCategory = [...perCategory.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([category, us]) => ({ category, selfMs: us / 1000, selfShare: us / busyUs }));
  return { file, totalMs: totalUs / 1000, idleMs: idleUs / 1000, top: rows, byCategory };
}

export function formatProfile(summary: Omit<ProfileSummary, 'messagesPerSecond'>): string {
  const busy = summary.totalMs - summary.idleMs;
  const lines = [
    `profile ${summary.file}`,
    `sampled ${summary.totalMs.toFixed(0)} ms, busy ${busy.toFixed(0)} ms (shares below are of busy time)`,
    '',
    'by category:',
    ...summary.byCategory.map(
      (c) => `  ${(c.selfShare * 100).toFixed(1).padStart(5)}%  ${c.selfMs.toFixed(0).padStart(7)} ms  ${c.category}`,
    ),
    '',
    'top functions by self time:',
    ...summary.top.map(
      (r) =>
        `  ${(r.selfShare * 100).toFixed(1).padStart(5)}%  ${r.selfMs.toFixed(0).padStart(7)} ms  ${r.functionName}  ${r.location}`,
    ),
  ];
  return lines.join('\n');
}
