/// <reference lib="dom" />
// Socket.IO behind wsgate, end to end: three real `socket.io` servers that share nothing (no adapter), so every
// request of a session must reach the backend that holds it. Clients start with long polling and then upgrade
// (the default transports): Node's `socket.io-client` with its cookie jar, and the real browser bundle from
// node_modules in headless Chromium. The pool hashes on the client IP with balanceFactor 1.05 (bounded loads move
// keys as tunnels pile up, so the hash alone would split sessions); wsgate's sticky cookie keeps each session on
// one backend, through a backend added and one lost mid-test.

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { Server as SocketIoServer } from 'socket.io';
import { type Socket as ClientSocket, io as connectIo } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { CHROMIUM, itBrowser, launchChromium } from '../helpers/chromium.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, metricValue, simpleConfig, startGatewayFor, type TestGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const CLIENT_BUNDLE = join(ROOT, 'node_modules', 'socket.io-client', 'dist', 'socket.io.min.js');
const cleanups = cleanupAfterEach();

/** Messages each session sends and must get back, in order, from its own backend. */
const MESSAGES = 5;

let browser: Browser | undefined;
beforeAll(async () => {
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
});

/** An engine.io error a backend answered (e.g. 400 "Session ID unknown"), for the session id the request named. */
interface EngineError {
  readonly backend: string;
  readonly message: string;
  readonly sid: string | null;
}

/** Every engine.io request a backend saw (polls, posts, upgrades), by session id, and the errors it answered. */
interface Observed {
  /** sid → the backend that made the session. */
  readonly homeOfSid: Map<string, string>;
  /** sid → ids of the backends that received a request for it. */
  readonly backendsOfSid: Map<string, Set<string>>;
  /** sid → the transports its requests used ('polling', 'websocket'). */
  readonly transportsOfSid: Map<string, Set<string>>;
  /** engine.io's connection_error messages ("Session ID unknown", ...), with the backend that answered them. */
  readonly errors: EngineError[];
}

function observer(): Observed {
  return { homeOfSid: new Map(), backendsOfSid: new Map(), transportsOfSid: new Map(), errors: [] };
}

interface SocketIoBackend {
  readonly id: string;
  readonly url: string;
  /** Sessions connected now. */
  connected(): number;
  /** A crash: the listener and every connection gone at once. */
  kill(): Promise<void>;
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>socket.io through wsgate</title>`;

async function socketIoBackend(id: string, observed: Observed): Promise<SocketIoBackend> {
  const http: Server = createServer((_req, res) => {
    // Not a socket.io request: the app page (browsers load it through wsgate, so the socket.io requests that follow
    // are same-origin and carry the page's cookies).
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  const sockets = new Set<NetSocket>();
  http.on('connection', (s: NetSocket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const record = (req: IncomingMessage) => {
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    const sid = query.get('sid');
    if (sid === null) return;
    addTo(observed.backendsOfSid, sid, id);
    addTo(observed.transportsOfSid, sid, query.get('transport') ?? '');
  };
  const io = new SocketIoServer(http, { serveClient: false, pingInterval: 2000, pingTimeout: 5000 });
  // After socket.io attached: engine.io takes the server's 'request' listeners and calls them for other paths only.
  http.prependListener('request', record);
  http.prependListener('upgrade', record);
  io.engine.on('connection_error', (err: { message: string; req: IncomingMessage }) => {
    const sid = new URL(err.req.url ?? '/', 'http://x').searchParams.get('sid');
    observed.errors.push({ backend: id, message: err.message, sid });
  });
  io.engine.on('connection', (socket: { id: string }) => observed.homeOfSid.set(socket.id, id));
  io.on('connection', (socket) => {
    socket.emit('hello', id);
    socket.on('msg', (n: number) => socket.emit('echo', n, id));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
  const port = (http.address() as AddressInfo).port;
  let alive = true;
  const kill = async () => {
    if (!alive) return;
    alive = false;
    for (const s of sockets) s.destroy();
    io.close();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  };
  cleanups.push(kill);
  return { id, url: `ws://127.0.0.1:${port}`, connected: () => io.engine.clientsCount, kill };
}

function addTo(map: Map<string, Set<string>>, key: string, value: string): void {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  set.add(value);
}

/**
 * The pool ejects a backend at its first failed connect (`eager`), so a crashed backend's sessions move at once; a
 * test with nothing to eject asks for `eager: false`, or one slow handshake on a loaded machine would re-point
 * every cookie naming that backend and split sessions the test did not mean to move.
 */
function socketIoConfig(urls: readonly string[], eager = true): ConfigObject {
  return simpleConfig(urls, {
    limits: { maxConnections: 10_000, maxConnectionsPerIp: 10_000 },
    timeouts: { handshake: eager ? '2s' : '10s', idle: '60s', drain: '2s' },
    pools: {
      main: {
        hashKey: 'ip',
        balanceFactor: 1.05,
        backends: urls,
        outlier: eager ? { consecutiveFailures: 1, ejectFor: '1m' } : { consecutiveFailures: 1000 },
        sticky: { cookie: 'WSGATE_AFFINITY' },
      },
    },
  });
}

async function reloadTo(gw: TestGateway, backends: readonly SocketIoBackend[]): Promise<void> {
  await gw.gateway.reload(parseConfig(stringify(socketIoConfig(backends.map((b) => b.url))), '/virtual/socketio.yaml'));
}

/** Sessions whose requests reached a backend other than the one that made them (but those of `lost`). */
function splitSessions(observed: Observed, lost: string | undefined): string[] {
  const split: string[] = [];
  for (const [sid, seen] of observed.backendsOfSid) {
    const home = observed.homeOfSid.get(sid);
    if (home === lost) continue;
    if (seen.size !== 1 || !seen.has(home ?? '')) split.push(`${sid}: made by ${home}, seen by ${[...seen]}`);
  }
  return split;
}

/** One Node client session: which backend said hello (each connect), and the echoes it got back. */
interface NodeSession {
  readonly socket: ClientSocket;
  readonly hellos: string[];
  readonly echoes: { n: number; backend: string }[];
  readonly connectErrors: string[];
}

function nodeSession(port: number, transports?: string[]): NodeSession {
  const socket = connectIo(`http://127.0.0.1:${port}`, {
    forceNew: true,
    // The cookie jar: the proxy's affinity cookie goes back on every poll and on the upgrade.
    withCredentials: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
    ...(transports === undefined ? {} : { transports }),
  });
  const session: NodeSession = { socket, hellos: [], echoes: [], connectErrors: [] };
  socket.on('hello', (id: string) => session.hellos.push(id));
  socket.on('echo', (n: number, backend: string) => session.echoes.push({ n, backend }));
  socket.on('connect_error', (err: Error) => session.connectErrors.push(err.message));
  cleanups.push(() => socket.disconnect());
  return session;
}

/** Sends MESSAGES numbered messages and waits for their echoes; returns the echoes of this round. */
async function roundTrip(session: NodeSession, from: number): Promise<{ n: number; backend: string }[]> {
  for (let n = from; n < from + MESSAGES; n++) session.socket.emit('msg', n);
  await waitFor(() => session.echoes.filter((e) => e.n >= from).length >= MESSAGES, 20_000, 'echoes');
  return session.echoes.filter((e) => e.n >= from);
}

const upgraded = (s: NodeSession) => (s.socket.io.engine as unknown as { transport: { name: string } }).transport.name;

describe('Socket.IO behind wsgate with a sticky cookie', () => {
  it('hundreds of Node sessions, polling then upgrading, through a backend added and one lost: one backend per session, no "Session ID unknown"', async () => {
    const observed = observer();
    const backends = await Promise.all(['b1', 'b2', 'b3'].map((id) => socketIoBackend(id, observed)));
    const gw = await startGatewayFor(cleanups, socketIoConfig(backends.map((b) => b.url)));

    // Phase 1: 150 sessions with the default transports and 30 that only long-poll, ten at a time, so that bounded
    // loads see the tunnels of the earlier ones (the hash alone sends every first poll from this IP to one backend).
    const sessions: NodeSession[] = [];
    for (let batch = 0; batch < 18; batch++) {
      const fresh = Array.from({ length: 10 }, () => nodeSession(gw.port, batch >= 15 ? ['polling'] : undefined));
      sessions.push(...fresh);
      await waitFor(() => fresh.every((s) => s.hellos.length === 1), 30_000, 'the batch connected');
      if (batch < 15)
        await waitFor(() => fresh.every((s) => upgraded(s) === 'websocket'), 30_000, 'the batch upgraded');
    }
    for (const s of sessions) expect((await roundTrip(s, 0)).map((e) => e.n)).toEqual([0, 1, 2, 3, 4]);
    // Bounded loads spread the sessions: several backends hold some.
    expect(new Set(sessions.map((s) => s.hellos[0])).size).toBeGreaterThan(1);

    // Phase 2: a fourth backend joins; more sessions come.
    const b4 = await socketIoBackend('b4', observed);
    await reloadTo(gw, [...backends, b4]);
    const later: NodeSession[] = [];
    for (let batch = 0; batch < 6; batch++) {
      const fresh = Array.from({ length: 10 }, () => nodeSession(gw.port));
      later.push(...fresh);
      await waitFor(() => fresh.every((s) => s.hellos.length === 1 && upgraded(s) === 'websocket'), 30_000, 'batch');
    }
    // The new backend takes sessions too.
    expect(later.some((s) => s.hellos[0] === b4.id)).toBe(true);
    const all = [...sessions, ...later];
    for (const s of all) {
      const echoes = await roundTrip(s, MESSAGES);
      expect(echoes.map((e) => e.n)).toEqual([5, 6, 7, 8, 9]);
      expect(new Set(echoes.map((e) => e.backend))).toEqual(new Set([s.hellos.at(-1)]));
    }

    // No backend was lost yet: not one request was answered "Session ID unknown", none reached another backend.
    expect(observed.errors).toEqual([]);
    expect(splitSessions(observed, undefined)).toEqual([]);

    // Phase 3: backend b2 crashes and is taken out of the config; its sessions reconnect to a live backend. Requests
    // already on their way for its sessions are answered by the backend the hash now picks, with "Session ID
    // unknown": that is how a polling client learns its session is gone. Every other session is untouched.
    const lost = backends[1] as SocketIoBackend;
    const onLost = all.filter((s) => s.hellos.at(-1) === lost.id);
    expect(onLost.length).toBeGreaterThan(0);
    await lost.kill();
    await waitFor(() => onLost.every((s) => s.hellos.length >= 2 && s.socket.connected), 30_000, 'lost sessions back');
    await reloadTo(gw, [backends[0] as SocketIoBackend, backends[2] as SocketIoBackend, b4]);
    for (const s of onLost) {
      expect(s.hellos.at(-1)).not.toBe(lost.id);
      const echoes = await roundTrip(s, 2 * MESSAGES);
      expect(echoes.map((e) => e.n)).toEqual([10, 11, 12, 13, 14]);
      expect(echoes.every((e) => e.backend === s.hellos.at(-1))).toBe(true);
    }

    expect(observed.errors.filter((e) => e.sid === null || observed.homeOfSid.get(e.sid) !== lost.id)).toEqual([]);
    expect(splitSessions(observed, lost.id)).toEqual([]);
    expect(observed.backendsOfSid.size).toBeGreaterThanOrEqual(all.length);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_sticky_total', { result: 'hit' })).toBeGreaterThan(all.length);
  }, 180_000);

  itBrowser(
    'Chromium with the real socket.io-client bundle: polling then WebSocket on one backend, messages in order',
    async () => {
      if (!browser) throw new Error(`${CHROMIUM} is missing`);
      const observed = observer();
      const backends = await Promise.all(['b1', 'b2', 'b3'].map((id) => socketIoBackend(id, observed)));
      const gw = await startGatewayFor(
        cleanups,
        socketIoConfig(
          backends.map((b) => b.url),
          false,
        ),
      );
      // Each browser context is one visitor with its own cookies; each opens several Socket.IO connections.
      const results = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const context = await (browser as Browser).newContext();
          cleanups.push(() => context.close());
          const page = await context.newPage();
          await page.goto(`http://127.0.0.1:${gw.port}/app`);
          await page.addScriptTag({ path: CLIENT_BUNDLE });
          return page.evaluate(async (messages: number) => {
            interface PageSocket {
              on(event: string, cb: (...args: unknown[]) => void): void;
              emit(event: string, ...args: unknown[]): void;
              io: { engine: { id: string; transport: { name: string } } };
              disconnect(): void;
            }
            const io = (window as unknown as { io: (url?: string, opts?: object) => PageSocket }).io;
            const one = () =>
              new Promise<{ hello: string; sid: string; transport: string; echoes: unknown[][]; errors: string[] }>(
                (resolve) => {
                  const socket = io(undefined, { forceNew: true });
                  const out = { hello: '', sid: '', transport: '', echoes: [] as unknown[][], errors: [] as string[] };
                  socket.on('connect_error', (e) => out.errors.push(String((e as Error).message)));
                  socket.on('hello', (id) => {
                    out.hello = String(id);
                    out.sid = socket.io.engine.id;
                  });
                  socket.on('echo', (...args) => {
                    out.echoes.push(args);
                    if (out.echoes.length === messages) {
                      out.transport = socket.io.engine.transport.name;
                      socket.disconnect();
                      resolve(out);
                    }
                  });
                  // Messages go out once the upgrade to WebSocket is done, so they cross the tunnel.
                  const send = () => {
                    if (socket.io.engine.transport.name !== 'websocket') {
                      setTimeout(send, 20);
                      return;
                    }
                    for (let n = 0; n < messages; n++) socket.emit('msg', n);
                  };
                  socket.on('connect', send);
                },
              );
            return Promise.all(Array.from({ length: 5 }, one));
          }, MESSAGES);
        }),
      );
      const sessions = results.flat();
      expect(sessions).toHaveLength(20);
      for (const s of sessions) {
        expect(s.errors).toEqual([]);
        expect(s.transport).toBe('websocket');
        // The backend saw the session's polls and its upgrade, and no other backend saw any of them.
        expect(observed.transportsOfSid.get(s.sid)).toEqual(new Set(['polling', 'websocket']));
        expect(observed.backendsOfSid.get(s.sid)).toEqual(new Set([s.hello]));
        expect(s.echoes).toEqual([0, 1, 2, 3, 4].map((n) => [n, s.hello]));
      }
      expect(observed.errors).toEqual([]);
      expect([...observed.backendsOfSid].filter(([, seen]) => seen.size > 1)).toEqual([]);
      expect(observed.backendsOfSid.size).toBeGreaterThanOrEqual(20);
    },
    120_000,
  );
});
