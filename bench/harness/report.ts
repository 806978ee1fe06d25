// Turns one run's results into a table (stdout and Markdown), the goal checks with ratios against
// nginx and HAProxy, and a hand-written SVG bar chart.

import type { BenchResults, EchoLoad, EchoResult, HandshakeResult, IdleResult, TargetCheck } from './results.js';

/** The wsgate figures the goals are about: one process, limits configured (scanning as built). */
export const WSGATE = 'wsgate';

const num = (v: number, digits = 0): string =>
  Number.isFinite(v)
    ? v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : '–';
const us = (v: number): string =>
  Number.isFinite(v) && v > 0 ? (v >= 10_000 ? `${num(v / 1000, 1)} ms` : `${num(v)} µs`) : '–';
const kib = (bytes: number): string => (Number.isFinite(bytes) ? `${num(bytes / 1024, 1)} KiB` : '–');

interface Table {
  readonly head: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

function renderText(t: Table): string {
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(t.head), widths.map((w) => '-'.repeat(w)).join('  '), ...t.rows.map(line)].join('\n');
}

function renderMarkdown(t: Table): string {
  const esc = (c: string) => c.replace(/\|/g, '\\|');
  return [
    `| ${t.head.map(esc).join(' | ')} |`,
    `|${t.head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

function targetsIn(r: BenchResults): string[] {
  const names = new Set<string>();
  for (const e of [...r.echo, ...r.handshake, ...r.idle, ...(r.http ?? [])]) names.add(e.target);
  return r.targets.map((t) => t.name).filter((n) => names.has(n));
}

function echoTable(r: BenchResults, load: EchoLoad): Table {
  const find = (t: string, tr: string) => r.echo.find((e) => e.target === t && e.transport === tr && e.load === load);
  const cells = (e: EchoResult | undefined) =>
    e
      ? [
          num(e.messagesPerSecond),
          `${us(e.p50Us)} / ${us(e.p99Us)}`,
          num(e.cpuSecondsPer1kMessages * 1000, 1),
          `${num(e.cpuCoreShare * 100)}%`,
        ]
      : ['–', '–', '–', '–'];
  return {
    head: [
      'target',
      'ws msg/s',
      'ws p50 / p99',
      'ws CPU ms/1k msg',
      'ws CPU',
      'wss msg/s',
      'wss p50 / p99',
      'wss CPU ms/1k msg',
      'wss CPU',
    ],
    rows: targetsIn(r)
      .filter((t) => r.echo.some((e) => e.target === t && e.load === load))
      .map((t) => [t, ...cells(find(t, 'ws')), ...cells(find(t, 'wss'))]),
  };
}

function handshakeTable(r: BenchResults): Table {
  const find = (t: string, k: string) => r.handshake.find((h) => h.target === t && h.kind === k);
  const cells = (h: HandshakeResult | undefined) =>
    h
      ? [
          num(h.handshakesPerSecond),
          `${us(h.p50Us)} / ${us(h.p99Us)}`,
          `${num(h.cpuSecondsPer1kHandshakes * 1000)} (${num(h.cpuCoreShare * 100)}%)`,
        ]
      : ['–', '–', '–'];
  return {
    head: [
      'target',
      'ws hs/s',
      'ws p50 / p99',
      'ws CPU ms/1k (core)',
      'wss RSA hs/s',
      'RSA p50 / p99',
      'RSA CPU ms/1k (core)',
      'wss ECDSA hs/s',
      'ECDSA p50 / p99',
      'ECDSA CPU ms/1k (core)',
    ],
    rows: targetsIn(r)
      .filter((t) => r.handshake.some((h) => h.target === t))
      .map((t) => [t, ...cells(find(t, 'ws')), ...cells(find(t, 'wss-rsa2048')), ...cells(find(t, 'wss-ecdsa-p256'))]),
  };
}

function idleTable(r: BenchResults): Table {
  const columns = [...new Set(r.idle.map((i) => `${i.transport} ${i.requested}`))];
  const find = (t: string, col: string) =>
    r.idle.find((i) => i.target === t && `${i.transport} ${i.requested}` === col);
  const cell = (i: IdleResult | undefined) =>
    i ? `${kib(i.bytesPerConnection)}${i.opened < i.requested ? ` (${num(i.opened)} opened)` : ''}` : '–';
  return {
    head: ['target', ...columns.map((c) => `${c.replace(/ (\d+)/, (_, n: string) => ` ${num(Number(n))}`)} conns`)],
    rows: targetsIn(r)
      .filter((t) => r.idle.some((i) => i.target === t))
      .map((t) => [t, ...columns.map((c) => cell(find(t, c)))]),
  };
}

function httpTable(r: BenchResults): Table {
  return {
    head: ['target', 'requests/s', 'p50', 'p99', 'CPU ms/1k req', 'CPU', 'errors'],
    rows: targetsIn(r).flatMap((t) => {
      const h = r.http?.find((x) => x.target === t);
      return h
        ? [
            [
              t,
              num(h.requestsPerSecond),
              us(h.p50Us),
              us(h.p99Us),
              num(h.cpuSecondsPer1kRequests * 1000, 1),
              `${num(h.cpuCoreShare * 100)}%`,
              num(h.errors),
            ],
          ]
        : [];
    }),
  };
}

function ratioTable(r: BenchResults): Table {
  const rows: string[][] = [];
  const ratio = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${num(a / b, 2)}×` : '–';
  const echo = (t: string, tr: string, load: EchoLoad = 'max') =>
    r.echo.find((e) => e.target === t && e.transport === tr && e.load === load);
  const hs = (t: string, k: string) => r.handshake.find((h) => h.target === t && h.kind === k)?.handshakesPerSecond;
  const idle = (t: string, tr: string, n: number) =>
    r.idle.find((i) => i.target === t && i.transport === tr && i.requested === n)?.bytesPerConnection;
  const add = (what: string, w: (t: string) => number | undefined) =>
    rows.push([what, ratio(w(WSGATE), w('nginx')), ratio(w(WSGATE), w('haproxy'))]);
  add('echo ws CPU per message, fixed rate', (t) => echo(t, 'ws', 'rate')?.cpuSecondsPer1kMessages);
  add('echo wss CPU per message, fixed rate', (t) => echo(t, 'wss', 'rate')?.cpuSecondsPer1kMessages);
  add('echo ws p99 latency, fixed rate', (t) => echo(t, 'ws', 'rate')?.p99Us);
  add('echo ws messages/s, saturated', (t) => echo(t, 'ws')?.messagesPerSecond);
  add('echo ws CPU per message, saturated', (t) => echo(t, 'ws')?.cpuSecondsPer1kMessages);
  add('echo wss messages/s, saturated', (t) => echo(t, 'wss')?.messagesPerSecond);
  add('echo wss CPU per message, saturated', (t) => echo(t, 'wss')?.cpuSecondsPer1kMessages);
  const hsCpu = (t: string, k: string) =>
    r.handshake.find((h) => h.target === t && h.kind === k)?.cpuSecondsPer1kHandshakes;
  add('handshakes/s ws', (t) => hs(t, 'ws'));
  add('CPU per handshake ws', (t) => hsCpu(t, 'ws'));
  add('CPU per handshake wss RSA-2048', (t) => hsCpu(t, 'wss-rsa2048'));
  add('CPU per handshake wss ECDSA P-256', (t) => hsCpu(t, 'wss-ecdsa-p256'));
  add('handshakes/s wss RSA-2048', (t) => hs(t, 'wss-rsa2048'));
  add('handshakes/s wss ECDSA P-256', (t) => hs(t, 'wss-ecdsa-p256'));
  const http = (t: string) => r.http?.find((h) => h.target === t);
  add('plain HTTP requests/s', (t) => http(t)?.requestsPerSecond);
  add('plain HTTP CPU per request', (t) => http(t)?.cpuSecondsPer1kRequests);
  for (const n of [...new Set(r.idle.filter((i) => i.transport === 'ws').map((i) => i.requested))]) {
    add(`memory per idle ws connection (${num(n)})`, (t) => idle(t, 'ws', n));
  }
  return {
    head: ['wsgate ÷ peer', 'vs nginx', 'vs HAProxy'],
    rows: rows.filter((row) => row[1] !== '–' || row[2] !== '–'),
  };
}

function checksTable(r: BenchResults): Table {
  const fmt = (v: number | null, d = 0) => (v === null ? '–' : num(v, d));
  return {
    head: ['goal', 'wsgate', 'peer', 'ratio', 'bound', 'met'],
    rows: r.checks.map((c) => [
      c.goal,
      fmt(c.wsgate, 2),
      fmt(c.peer, 2),
      c.ratio === null ? '–' : `${num(c.ratio, 2)}×`,
      c.bound,
      c.met === null ? 'not measured' : c.met ? 'yes' : 'no',
    ]),
  };
}

/** The goals (BENCHMARKS.md, "Goals"), evaluated on this run (null where a figure is missing). */
export function evaluateChecks(r: Pick<BenchResults, 'echo' | 'handshake' | 'idle'>): TargetCheck[] {
  const echo = (t: string, load: EchoLoad = 'max') =>
    r.echo.find((e) => e.target === t && e.transport === 'ws' && e.load === load);
  const hs = (t: string, k: string) =>
    r.handshake.find((h) => h.target === t && h.kind === k)?.handshakesPerSecond ?? null;
  const ratioCheck = (
    goal: string,
    w: number | null,
    p: number | null,
    bound: number,
    atMost: boolean,
  ): TargetCheck => {
    const ratio = w !== null && p !== null && p > 0 ? w / p : null;
    return {
      goal,
      wsgate: w,
      peer: p,
      ratio,
      bound: `${atMost ? '≤' : '≥'} ${bound}×`,
      met: ratio === null ? null : atMost ? ratio <= bound : ratio >= bound,
    };
  };
  const cpu = (t: string) => {
    const e = echo(t, 'rate');
    return e ? e.cpuSecondsPer1kMessages * 1000 : null;
  };
  // Per-connection memory is read at the most connections held: at 1,000 the process's own start-up growth (a few
  // MiB, seen even for the bare backend) is still a large share of (after − before) / N. Every size is in the table.
  const idleAtMost = (() => {
    const ws = r.idle.filter((i) => i.target === WSGATE && i.transport === 'ws' && i.opened > 0);
    if (ws.length === 0) return null;
    return ws.reduce((a, b) => (b.opened > a.opened ? b : a)).bytesPerConnection;
  })();
  return [
    ratioCheck('echo CPU per message vs HAProxy (ws, fixed rate; µs)', cpu(WSGATE), cpu('haproxy'), 1.0, true),
    ratioCheck(
      'echo messages/s vs nginx (ws, saturated; generator-bound)',
      echo(WSGATE)?.messagesPerSecond ?? null,
      echo('nginx')?.messagesPerSecond ?? null,
      1.0,
      false,
    ),
    ratioCheck(
      'WebSocket handshakes/s vs nginx (client-bound: see CPU per handshake)',
      hs(WSGATE, 'ws'),
      hs('nginx', 'ws'),
      1.0,
      false,
    ),
    ratioCheck(
      'TLS handshakes/s vs nginx, RSA-2048 (client-bound)',
      hs(WSGATE, 'wss-rsa2048'),
      hs('nginx', 'wss-rsa2048'),
      0.95,
      false,
    ),
    ratioCheck(
      'TLS handshakes/s vs nginx, ECDSA P-256 (client-bound)',
      hs(WSGATE, 'wss-ecdsa-p256'),
      hs('nginx', 'wss-ecdsa-p256'),
      0.95,
      false,
    ),
    {
      goal: 'idle memory per ws connection (KiB, at the most connections held)',
      wsgate: idleAtMost === null ? null : idleAtMost / 1024,
      peer: null,
      ratio: null,
      bound: '≤ 8 KiB',
      met: idleAtMost === null ? null : idleAtMost <= 8 * 1024,
    },
  ];
}

export function textReport(r: BenchResults): string {
  const parts: string[] = [];
  const rate = r.echo.find((e) => e.load === 'rate');
  if (rate) {
    parts.push(
      `echo at a fixed rate: ${num(rate.offeredPerSecond ?? 0)} messages/s offered over ${num(rate.connections)} connections, ${num(rate.payloadBytes)}-byte messages, ${num(rate.seconds, 1)} s measured`,
      renderText(echoTable(r, 'rate')),
    );
  }
  const max = r.echo.find((e) => e.load === 'max');
  if (max) {
    parts.push(
      `echo saturated: ${num(max.connections)} connections, ${num(max.payloadBytes)}-byte messages, window ${max.window}, ${num(max.seconds, 1)} s measured`,
      renderText(echoTable(r, 'max')),
    );
  }
  if (r.handshake.length > 0) {
    parts.push(
      `handshake: open → 101 → close loops, ${r.handshake[0]?.concurrency} concurrent`,
      renderText(handshakeTable(r)),
    );
  }
  const http = r.http?.[0];
  if (http) {
    parts.push(
      `plain HTTP: GET through each target, ${http.connections} kept-alive connections (autocannon), ${num(http.seconds, 1)} s measured`,
      renderText(httpTable(r)),
    );
  }
  if (r.idle.length > 0)
    parts.push(
      'idle: resident memory per held connection (target process RSS after − before) / N',
      renderText(idleTable(r)),
    );
  const ratios = ratioTable(r);
  if (ratios.rows.length > 0) parts.push('ratios (one run, same machine)', renderText(ratios));
  if (r.checks.some((c) => c.met !== null)) parts.push('goals', renderText(checksTable(r)));
  if (r.skipped.length > 0) parts.push(`skipped:\n${r.skipped.map((s) => `  ${s.target}: ${s.reason}`).join('\n')}`);
  return parts.join('\n\n');
}

export function markdownReport(r: BenchResults, profileText: string | null): string {
  const m = r.machine;
  const rate = r.echo.find((e) => e.load === 'rate');
  const max = r.echo.find((e) => e.load === 'max');
  const lines = [
    `Run of ${r.startedAt}. Machine: ${m.cpus} × ${m.cpuModel}, ${num(m.memoryGiB)} GiB, Linux ${m.kernel}, Node ${m.node}, ${m.nginx ?? 'nginx: not installed'}, ${m.haproxy ?? 'HAProxy: not installed'}, ${m.openssl ?? ''}; \`ulimit -n\` = ${num(m.fdLimit)}; perf instructions: ${m.perfInstructions}; CPU pinning: ${m.pinned ? `proxy on CPU 1, backend and load generators on CPU 0` : 'off'}.`,
    '',
    `wsgate as built: frame scanning in the tunnel: ${r.wsgate.frameScanningInTunnel ? 'yes' : 'no'}; per-connection limits applied in the tunnel: ${r.wsgate.limitsInTunnel ? 'yes' : 'no'}; \`workers\`: ${r.wsgate.workers ? 'yes' : 'not supported yet'}.`,
    '',
  ];
  if (rate || max) {
    lines.push(
      'CPU ms/1k msg is the measured process\'s user+system CPU seconds (from /proc/PID/stat) per 1,000 echoed messages, ×1000 (so also µs per message; each message crosses the proxy both ways); "CPU" is its share of one core (100% = it was the bottleneck). For `direct` the measured process is the echo backend itself. wss uses the ECDSA certificate.',
      '',
    );
  }
  if (rate) {
    lines.push(
      `### Echo at a fixed rate (${num(rate.offeredPerSecond ?? 0)} messages/s offered over ${num(rate.connections)} connections, ${num(rate.payloadBytes)}-byte binary messages, ${num(rate.seconds, 1)} s measured after warm-up): the same work for every target`,
      '',
      renderMarkdown(echoTable(r, 'rate')),
      '',
    );
  }
  if (max) {
    lines.push(
      `### Echo saturated (${num(max.connections)} connections, ${max.window} messages in flight per connection, ${num(max.payloadBytes)}-byte messages, ${num(max.seconds, 1)} s measured)`,
      '',
      renderMarkdown(echoTable(r, 'max')),
      '',
    );
  }
  if (r.handshake.length > 0) {
    lines.push(
      `### Handshakes (open → upgrade → 101 → close frame → close, ${r.handshake[0]?.concurrency} loops in parallel, full TLS handshakes without resumption)`,
      '',
      renderMarkdown(handshakeTable(r)),
      '',
    );
  }
  if (r.idle.length > 0) {
    lines.push(
      '### Memory per idle connection (target RSS after opening N and holding them, minus before, ÷ N)',
      '',
      renderMarkdown(idleTable(r)),
      '',
    );
  }
  const http = r.http?.[0];
  if (http) {
    lines.push(
      `### Plain HTTP (GET with a 64-byte answer through each target, ${http.connections} kept-alive connections driven by autocannon, ${num(http.seconds, 1)} s measured): the long-poll path`,
      '',
      renderMarkdown(httpTable(r)),
      '',
    );
  }
  const ratios = ratioTable(r);
  if (ratios.rows.length > 0) lines.push('### wsgate ÷ nginx and ÷ HAProxy (same run)', '', renderMarkdown(ratios), '');
  lines.push('### Goals checked on this run', '', renderMarkdown(checksTable(r)), '');
  if (r.skipped.length > 0)
    lines.push(`Skipped: ${r.skipped.map((s) => `\`${s.target}\` (${s.reason})`).join('; ')}.`, '');
  if (profileText)
    lines.push('### Profile of wsgate under the echo load (`node --cpu-prof`)', '', '```', profileText, '```', '');
  return lines.join('\n');
}

// ---- SVG -------------------------------------------------------------------------------------------------------

interface Bar {
  readonly label: string;
  readonly value: number;
  readonly text: string;
}

const COLORS: Readonly<Record<string, string>> = {
  direct: '#9e9e9e',
  wsgate: '#1f77b4',
  'wsgate-nolimits': '#6baed6',
  'wsgate-off': '#9ecae1',
  'wsgate-2w': '#08519c',
  nginx: '#2ca02c',
  haproxy: '#d62728',
};

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function panel(
  x: number,
  y: number,
  width: number,
  title: string,
  bars: readonly Bar[],
): { svg: string; height: number } {
  const rowH = 26;
  const labelW = 130;
  const valueW = 110;
  const barMax = width - labelW - valueW;
  const max = Math.max(1e-9, ...bars.map((b) => b.value));
  const out = [`<text x="${x}" y="${y + 16}" font-size="14" font-weight="bold">${escapeXml(title)}</text>`];
  bars.forEach((b, i) => {
    const by = y + 28 + i * rowH;
    const w = Number.isFinite(b.value) && b.value > 0 ? Math.max(1, (b.value / max) * barMax) : 0;
    out.push(
      `<text x="${x + labelW - 8}" y="${by + 15}" font-size="12" text-anchor="end">${escapeXml(b.label)}</text>`,
      `<rect x="${x + labelW}" y="${by + 2}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${COLORS[b.label] ?? '#777'}"/>`,
      `<text x="${(x + labelW + w + 6).toFixed(1)}" y="${by + 15}" font-size="12">${escapeXml(b.text)}</text>`,
    );
  });
  return { svg: out.join('\n'), height: 28 + bars.length * rowH + 10 };
}

/** Bars by target: echo messages/s, CPU per message, memory per idle connection (largest common N). */
export function svgChart(r: BenchResults): string {
  const width = 820; // wide enough for the longest panel title at 14 px
  const panels: { title: string; bars: Bar[] }[] = [];
  const targets = targetsIn(r);
  const echo = targets.flatMap((t) => r.echo.filter((e) => e.target === t && e.transport === 'ws' && e.load === 'max'));
  const echoRate = targets.flatMap((t) =>
    r.echo.filter((e) => e.target === t && e.transport === 'ws' && e.load === 'rate'),
  );
  if (echo.length > 0) {
    const e0 = echo[0] as EchoResult;
    panels.push({
      title: `Echo messages/s, saturated (ws, ${e0.connections} conns, ${e0.payloadBytes} B, window ${e0.window}) — higher is better`,
      bars: echo.map((e) => ({ label: e.target, value: e.messagesPerSecond, text: num(e.messagesPerSecond) })),
    });
  }
  if (echoRate.length > 0) {
    panels.push({
      title: `CPU µs per echoed message at ${num(echoRate[0]?.offeredPerSecond ?? 0)} msg/s (ws) — lower is better`,
      bars: echoRate.map((e) => ({
        label: e.target,
        value: e.cpuSecondsPer1kMessages * 1000,
        text: `${num(e.cpuSecondsPer1kMessages * 1000, 1)} µs`,
      })),
    });
  }
  const wsIdle = r.idle.filter((i) => i.transport === 'ws');
  const sizes = [...new Set(wsIdle.map((i) => i.requested))].filter((n) =>
    targets.every(
      (t) => !wsIdle.some((i) => i.target === t) || wsIdle.some((i) => i.target === t && i.requested === n),
    ),
  );
  const n = Math.max(0, ...sizes);
  if (n > 0) {
    const idle = targets.flatMap((t) => wsIdle.filter((i) => i.target === t && i.requested === n));
    panels.push({
      title: `Memory per idle ws connection at ${num(n)} (KiB RSS) — lower is better`,
      bars: idle.map((i) => ({ label: i.target, value: i.bytesPerConnection / 1024, text: kib(i.bytesPerConnection) })),
    });
  }
  let y = 40;
  const body: string[] = [];
  for (const p of panels) {
    const rendered = panel(20, y, width - 40, p.title, p.bars);
    body.push(rendered.svg);
    y += rendered.height + 14;
  }
  const m = r.machine;
  const footer = `${r.startedAt.slice(0, 10)} · ${m.cpus} × ${m.cpuModel} · Node ${m.node} · ${m.nginx ?? ''} · ${m.haproxy?.replace(/ - https.*$/, '') ?? ''}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 30}" viewBox="0 0 ${width} ${y + 30}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="20" y="26" font-size="16" font-weight="bold">wsgate vs nginx vs HAProxy — one run, single core each (bench/run.ts)</text>`,
    ...body,
    `<text x="20" y="${y + 14}" font-size="10" fill="#555">${escapeXml(footer)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
