// `wsgate ctl`: the admin API from the command line, for operators and scripts (HAProxy's `socat … set server`,
// but over the admin listener's HTTP). Human-readable tables by default, the API's JSON with --json. Runs on Node 20
// as well: it only needs fetch.

import { parseArgs } from 'node:util';

export const CTL_HELP = `Usage: wsgate ctl COMMAND [options]

  pools                          every pool and its backends: admin state, health, weight, connections
  drain   POOL BACKEND           no new connections to BACKEND; its live ones stay
  disable POOL BACKEND           as drain, and its connections are closed (1012) at the pool's rebalance pace
  enable  POOL BACKEND           back in the ring (health permitting)
  weight  POOL BACKEND W         runtime weight (0 < W <= 100) until the next restart
  conns   [--backend B] [--limit N]   live connections: id, route, backend, client, age, messages

BACKEND is host:port (or the backend's URL). Options:
      --admin URL      the admin listener (default http://127.0.0.1:8077, or WSGATE_ADMIN_URL)
      --token TOKEN    admin.token (default: WSGATE_ADMIN_TOKEN)
      --json           print the API's JSON answer
  -h, --help           show this help

Exit status: 0 done; 1 the gateway refused or could not be reached; 2 bad arguments.`;

const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8077';

interface Output {
  out(text: string): void;
  err(text: string): void;
}

const stdio: Output = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

interface BackendRow {
  readonly address: string;
  readonly adminState: string;
  readonly state: string;
  readonly weight: number;
  readonly configuredWeight: number;
  readonly active: number;
}

interface PoolRow {
  readonly name: string;
  readonly hashKey: string;
  readonly active: number;
  readonly backends: readonly BackendRow[];
}

interface ConnectionRow {
  readonly id: string;
  readonly route: string;
  readonly backend: string;
  readonly client: string;
  readonly ageSeconds: number;
  readonly messages: { readonly clientToBackend: number; readonly backendToClient: number };
}

/** What each state command posts. */
const STATE_OF: Readonly<Record<string, string>> = { drain: 'drain', disable: 'disabled', enable: 'active' };

export async function ctlCommand(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  io: Output = stdio,
): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`wsgate ctl: ${(err as Error).message}\n\n${CTL_HELP}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(`${CTL_HELP}\n`);
    return 0;
  }
  const [command, ...args] = positionals;
  const base = (values.admin ?? env.WSGATE_ADMIN_URL ?? DEFAULT_ADMIN_URL).replace(/\/+$/, '');
  const token = values.token ?? env.WSGATE_ADMIN_TOKEN;
  const call = (path: string, body?: unknown) => callApi(base, path, token, body);
  const usage = (problem: string) => {
    io.err(`wsgate ctl: ${problem}\n\n${CTL_HELP}\n`);
    return 2;
  };

  let answer: ApiAnswer;
  let render: (value: unknown) => string;
  switch (command) {
    case 'pools':
      if (args.length > 0) return usage('pools takes no arguments');
      answer = await call('/api/pools');
      render = (v) => formatPools((v as { pools: PoolRow[] }).pools);
      break;
    case 'drain':
    case 'disable':
    case 'enable':
    case 'weight': {
      const wanted = command === 'weight' ? 3 : 2;
      if (args.length !== wanted)
        return usage(`${command} takes ${command === 'weight' ? 'POOL BACKEND W' : 'POOL BACKEND'}`);
      const [pool, backend, w] = args as [string, string, string | undefined];
      let body: Record<string, unknown>;
      if (command === 'weight') {
        const weight = Number(w);
        if (w === undefined || w.trim() === '' || !Number.isFinite(weight)) return usage(`weight: not a number: ${w}`);
        body = { weight };
      } else body = { state: STATE_OF[command] };
      answer = await call(`/api/pools/${encodeURIComponent(pool)}/backends/${encodeURIComponent(backend)}`, body);
      render = (v) => formatChange(v as BackendRow & { pool: string });
      break;
    }
    case 'conns': {
      if (args.length > 0) return usage('conns takes options only: --backend B --limit N');
      const query = new URLSearchParams();
      if (values.backend !== undefined) query.set('backend', values.backend);
      if (values.limit !== undefined) query.set('limit', values.limit);
      const q = query.toString();
      answer = await call(`/api/connections${q === '' ? '' : `?${q}`}`);
      render = (v) => formatConnections(v as { matched: number; connections: ConnectionRow[] });
      break;
    }
    case undefined:
      return usage('which command?');
    default:
      return usage(`unknown command ${command}`);
  }
  if (answer.kind === 'unreachable') {
    io.err(`wsgate ctl: cannot reach the admin listener at ${base}: ${answer.error}\n`);
    return 1;
  }
  if (answer.status !== 200) {
    if (values.json && answer.json !== undefined) io.out(`${JSON.stringify(answer.json, null, 2)}\n`);
    io.err(`wsgate ctl: ${answer.status}: ${problemText(answer)}\n`);
    return 1;
  }
  io.out(values.json ? `${JSON.stringify(answer.json, null, 2)}\n` : render(answer.json));
  return 0;
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      admin: { type: 'string' },
      token: { type: 'string' },
      json: { type: 'boolean' },
      backend: { type: 'string' },
      limit: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

type ApiAnswer =
  | { readonly kind: 'answer'; readonly status: number; readonly json: unknown; readonly text: string }
  | { readonly kind: 'unreachable'; readonly error: string };

async function callApi(base: string, path: string, token: string | undefined, body?: unknown): Promise<ApiAnswer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return { kind: 'unreachable', error: cause?.code ?? cause?.message ?? (err as Error).message };
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined; // the admin listener answers some errors (401, 405) in plain text
  }
  return { kind: 'answer', status: res.status, json, text };
}

function problemText(answer: Extract<ApiAnswer, { kind: 'answer' }>): string {
  const json = answer.json as { error?: string; errors?: string[] } | undefined;
  if (json?.error !== undefined) return json.error;
  if (json?.errors !== undefined) return json.errors.join('; ');
  return answer.text.trim();
}

/** Left-aligned columns, two spaces apart. */
function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows
    .map(
      (row) =>
        `${row
          .map((cell, i) => cell.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

function weightText(b: BackendRow): string {
  return b.weight === b.configuredWeight ? String(b.weight) : `${b.weight} (config ${b.configuredWeight})`;
}

export function formatPools(pools: readonly PoolRow[]): string {
  return pools
    .map((p) => {
      const rows = [
        ['BACKEND', 'ADMIN', 'HEALTH', 'WEIGHT', 'CONNECTIONS'],
        ...p.backends.map((b) => [b.address, b.adminState, b.state, weightText(b), String(b.active)]),
      ];
      return `pool ${p.name} (hash ${p.hashKey}, ${p.active} connections)\n${table(rows)}`;
    })
    .join('\n');
}

function formatChange(b: BackendRow & { pool: string }): string {
  return `${b.pool} ${b.address}: ${b.adminState} (health ${b.state}, weight ${weightText(b)}, ${b.active} connections)\n`;
}

function formatConnections(list: { matched: number; connections: readonly ConnectionRow[] }): string {
  const rows = [
    ['ID', 'ROUTE', 'BACKEND', 'CLIENT', 'AGE', 'MESSAGES IN/OUT'],
    ...list.connections.map((c) => [
      c.id,
      c.route,
      c.backend.replace(/^wss?:\/\//, ''),
      c.client,
      `${c.ageSeconds}s`,
      `${c.messages.clientToBackend}/${c.messages.backendToClient}`,
    ]),
  ];
  return `${table(rows)}${list.connections.length} of ${list.matched} connections shown\n`;
}
