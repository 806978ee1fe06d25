// Shared by the ops tests: a gateway run from a real config file with reload wired in, WebSocket clients that
// remember how they closed, admin HTTP calls, and promtool's verdict on an exposition. The built CLI in a child
// process is in helpers/child-gateway.ts.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { ControlPlane } from '../../src/control/control-plane.js';
import { InProcessFleet } from '../../src/control/in-process.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { Metrics } from '../../src/observe/metrics.js';
import type { ConfigObject } from '../helpers/gateway.js';

export interface FileGateway {
  readonly gateway: Gateway;
  readonly control: ControlPlane;
  readonly file: string;
  readonly dir: string;
  readonly adminPort: number;
  /** Port of the listener named `name` (default: the first). */
  port(name?: string): number;
  /** What GET /metrics serves: the gateway's metrics and the control plane's. */
  metrics(): Promise<string>;
  /** Rewrites the config file. */
  write(config: ConfigObject | string): void;
  stop(): Promise<void>;
}

export async function startFileGateway(
  config: ConfigObject,
  options: { watch?: boolean; files?: Record<string, string>; metrics?: Metrics } = {},
): Promise<FileGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-ops-'));
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), content);
  const file = join(dir, 'config.yaml');
  const write = (c: ConfigObject | string) => writeFileSync(file, typeof c === 'string' ? c : stringify(c));
  write(config);
  const loaded = loadConfig(file);
  const log = pino({ level: process.env.WSGATE_TEST_LOG ?? 'silent' });
  const gateway = await Gateway.start(loaded, {
    log,
    metrics: options.metrics ?? new Metrics({ defaultMetrics: false }),
  });
  const control = await ControlPlane.start({
    fleet: new InProcessFleet(gateway),
    config: loaded,
    log,
    file,
    watch: options.watch ?? false,
    watchIntervalMs: 50,
    watchDebounceMs: 50,
  });
  return {
    gateway,
    control,
    file,
    dir,
    adminPort: control.adminPort,
    port: (name) => {
      const l = name === undefined ? gateway.boundListeners[0] : gateway.boundListeners.find((b) => b.name === name);
      if (!l) throw new Error(`no listener ${name}`);
      return l.port;
    },
    metrics: async () => (await control.metrics()).text,
    write,
    stop: async () => {
      await gateway.stop(500);
      await control.close();
    },
  };
}

/** A WebSocket client that records the backend's welcome, its messages and how it closed. */
export interface Client {
  readonly ws: WebSocket;
  readonly backend: string;
  closeCode: number | undefined;
  closedAtMs: number | undefined;
  readonly messages: string[];
  /** Sends `text` and resolves with the echo. */
  echo(text: string): Promise<string>;
  closed(): Promise<number>;
}

export function connectClient(
  url: string,
  headers: Record<string, string> = {},
  options: WebSocket.ClientOptions = {},
): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, ...options });
    const messages: string[] = [];
    let closeResolve: ((code: number) => void) | undefined;
    const closedPromise = new Promise<number>((r) => {
      closeResolve = r;
    });
    const client: Client = {
      ws,
      backend: '',
      closeCode: undefined,
      closedAtMs: undefined,
      messages,
      echo: (text) =>
        new Promise((res, rej) => {
          const onMessage = (data: WebSocket.RawData) => {
            if (data.toString() !== text) return;
            ws.off('message', onMessage);
            res(text);
          };
          ws.on('message', onMessage);
          ws.send(text, (err) => err && rej(err));
        }),
      closed: () => closedPromise,
    };
    ws.once('message', (data) => {
      (client as { backend: string }).backend = (JSON.parse(data.toString()) as { backend: string }).backend;
      ws.on('message', (d) => messages.push(d.toString()));
      resolve(client);
    });
    ws.once('error', reject);
    ws.once('close', (code) => {
      client.closeCode = code;
      client.closedAtMs = performance.now();
      closeResolve?.(code);
    });
  });
}

/** A WebSocket upgrade with `headers`: the backend that answered (its welcome) and the 101's headers. */
export function upgrade(
  url: string,
  headers: Record<string, string>,
): Promise<{ backend: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    let answer: Record<string, string | string[] | undefined> = {};
    ws.once('upgrade', (res) => {
      answer = res.headers;
    });
    ws.once('message', (data) => {
      resolve({ backend: (JSON.parse(data.toString()) as { backend: string }).backend, headers: answer });
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** Opens `n` clients, `batch` at a time (a thousand SYNs at once would overflow a listen backlog). */
export async function connectMany(url: string, n: number, batch = 100): Promise<Client[]> {
  const clients: Client[] = [];
  for (let i = 0; i < n; i += batch) {
    const size = Math.min(batch, n - i);
    clients.push(
      ...(await Promise.all(Array.from({ length: size }, (_, j) => connectClient(url, { 'x-user-id': `u${i + j}` })))),
    );
  }
  return clients;
}

/** `config` plus a route 'fresh' (/fresh → a new pool 'other' on `backend`), listed first so it wins for /fresh. */
export function withFreshRoute(config: ConfigObject, backend: string): ConfigObject {
  return {
    ...config,
    routes: [{ name: 'fresh', match: { path: '/fresh' }, pool: 'other' }, ...(config.routes as ConfigObject[])],
    pools: { ...(config.pools as ConfigObject), other: { backends: [backend] } },
  };
}

export interface AdminAnswer {
  readonly status: number;
  readonly text: string;
  readonly headers: Headers;
  json<T>(): T;
}

export async function admin(
  port: number,
  path: string,
  init: { method?: string; token?: string; accept?: string } = {},
): Promise<AdminAnswer> {
  const headers: Record<string, string> = {};
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  if (init.accept) headers.accept = init.accept;
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: init.method ?? 'GET', headers });
  const text = await res.text();
  return { status: res.status, text, headers: res.headers, json: <T>() => JSON.parse(text) as T };
}

export const PROMTOOL = '/usr/bin/promtool';

/** Problems `promtool check metrics` reports for `text` (every line it prints; none means it passed). */
export function promtoolMetricProblems(text: string): string[] {
  const result = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (result.error) throw result.error;
  const problems = `${result.stdout}${result.stderr}`.split('\n').filter((l) => l.trim() !== '');
  if (result.status !== 0 && problems.length === 0) return [`promtool exited ${result.status} without output`];
  return problems;
}
