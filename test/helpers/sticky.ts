// Shared by the sticky-cookie tests: backends that name themselves (plain answers and a first WebSocket message)
// and record the Cookie lines they got, a config with pools.main.sticky, and raw clients that read Set-Cookie.

import { createServer, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { listenTracked } from './backends.js';
import type { Cleanup } from './cleanups.js';
import { type ConfigObject, metricValue, simpleConfig, type TestGateway } from './gateway.js';
import { openSocket, rawUpgrade, readUntilClose } from './raw-client.js';

export const COOKIE = 'WSGATE_AFFINITY';

export interface NamedBackend {
  readonly id: string;
  readonly url: string;
  /** The Cookie header of every request and upgrade, in order (undefined: none). */
  readonly cookies: (string | undefined)[];
  /** Stops accepting: new connects are refused (live connections stay). */
  stop(): Promise<void>;
}

export async function namedBackend(id: string, cleanups: Cleanup[]): Promise<NamedBackend> {
  const cookies: (string | undefined)[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    cookies.push(req.headers.cookie);
    req.resume();
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': id.length, 'Set-Cookie': 'app=1; Path=/' });
    res.end(id);
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    cookies.push(req.headers.cookie);
    ws.on('error', () => {});
    ws.send(id);
  });
  const listening = await listenTracked(server, cleanups);
  const stop = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return { id, url: listening.url, cookies, stop };
}

export function namedBackends(ids: readonly string[], cleanups: Cleanup[]): Promise<NamedBackend[]> {
  return Promise.all(ids.map((id) => namedBackend(id, cleanups)));
}

/** Pool 'main' hashing on X-User-Id, with a sticky cookie named COOKIE (plus `sticky`'s keys). */
export function stickyConfig(
  urls: readonly string[],
  sticky: ConfigObject = {},
  extra: ConfigObject = {},
): ConfigObject {
  return simpleConfig(urls, {
    limits: { maxConnections: 1000, maxConnectionsPerIp: 1000 },
    pools: { main: { hashKey: 'header:x-user-id', backends: urls, sticky: { cookie: COOKIE, ...sticky } } },
    ...extra,
  });
}

export interface PlainAnswer {
  readonly status: number;
  readonly setCookie: string[];
  readonly body: string;
}

/** One long-poll-like GET on its own connection with `headers`; the body must come with a Content-Length. */
export async function plainGet(
  port: number,
  cleanups: Cleanup[],
  headers: Record<string, string> = {},
  tls = false,
): Promise<PlainAnswer> {
  const socket = await openSocket(port, tls);
  cleanups.push(() => socket.destroy());
  let head = 'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n';
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  socket.write(`${head}\r\n`);
  const all = (await readUntilClose(socket)).toString('latin1');
  const end = all.indexOf('\r\n\r\n');
  return {
    status: Number(all.slice(0, end).split(' ')[1]),
    setCookie: setCookies(all.slice(0, end)),
    body: all.slice(end + 4),
  };
}

export interface UpgradeAnswer {
  readonly status: number;
  readonly setCookie: string[];
  /** The backend's first message (its id). */
  readonly firstMessage: string;
  readonly socket: Socket;
}

/** A raw WebSocket upgrade with `headers`; resolves with the 101 and the backend's first (short, text) message. */
export async function namedUpgrade(
  port: number,
  cleanups: Cleanup[],
  headers: Record<string, string> = {},
): Promise<UpgradeAnswer> {
  const res = await rawUpgrade(port, { path: '/socket.io/?EIO=4&transport=websocket', headers });
  cleanups.push(() => res.socket.destroy());
  const firstMessage = await new Promise<string>((resolve) => {
    let buf = res.rest;
    // An unmasked text frame from the backend: 0x81, a 7-bit length, the payload.
    const parse = () => {
      const length = buf[1];
      if (length !== undefined && buf.length >= 2 + length) resolve(buf.subarray(2, 2 + length).toString());
    };
    res.socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      parse();
    });
    parse();
  });
  return { status: res.status, setCookie: setCookies(res.head), firstMessage, socket: res.socket };
}

/** The proxy's cookie pair (`NAME=value`) among Set-Cookie values; undefined when it set none. */
export function affinityPair(setCookie: readonly string[]): string | undefined {
  return setCookie.find((c) => c.startsWith(`${COOKIE}=`))?.split(';')[0];
}

export async function stickyCount(gw: TestGateway, result: string): Promise<number> {
  return metricValue(await gw.metrics(), 'wsgate_sticky_total', { pool: 'main', result }) ?? 0;
}

function setCookies(head: string): string[] {
  return head
    .split('\r\n')
    .filter((l) => /^set-cookie:/i.test(l))
    .map((l) => l.slice(l.indexOf(':') + 1).trim());
}
