// The chaos soak's clients, each one connection judged by the ledger: a cycle (open → messages both ways, some
// fragmented, some large, a ping → close 1000), a long-lived connection (a message every few seconds until its
// lifetime is up), clients that break a limit on purpose (a message flood → 1008, a message over maxMessageBytes
// → 1009), a client that vanishes mid-frame, and hostile handshakes with the answer each must get. Echoes and
// pongs must come back in order and byte for byte until the close.

import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { upgradeRequest } from '../../helpers/raw-client.js';
import type { ClientKind, Connection, Ending, Ledger } from './ledger.js';
import type { Random } from './scheduler.js';

/** Random bytes to cut message payloads from (their content need not follow the seed). */
const SOURCE = Buffer.from(Array.from({ length: 300 * 1024 }, (_, i) => (i * 2654435761) >>> 24));

export interface Target {
  readonly port: number;
  readonly ledger: Ledger;
  /** Client source addresses, so the pools' ip hash keys spread. */
  readonly localAddresses: readonly string[];
}

export interface Message {
  readonly data: Buffer;
  readonly binary: boolean;
  /** Sent in this many fragments (1: whole). */
  readonly fragments: number;
}

function randomMessage(random: Random, large: boolean): Message {
  const size = large ? 64 * 1024 + random.int(128 * 1024) : 1 + random.int(200);
  const offset = random.int(SOURCE.length - size);
  const binary = random.chance(0.5);
  // Text must be valid UTF-8: these bytes are mapped into printable ASCII.
  const data = binary
    ? SOURCE.subarray(offset, offset + size)
    : Buffer.from(SOURCE.subarray(offset, offset + size).map((b) => 32 + (b % 90)));
  return { data, binary, fragments: random.chance(0.2) ? 2 + random.int(3) : 1 };
}

export interface CyclePlan {
  readonly kind: ClientKind;
  readonly route: string;
  readonly pool: string;
  readonly localAddress: string;
  readonly messages: readonly Message[];
  readonly ping: boolean;
  /** long: how long it stays open, and the pause between its messages. */
  readonly lifetimeMs: number;
  readonly everyMs: number;
}

const ROUTES: readonly [string, string][] = [
  ['/a', 'a'],
  ['/b', 'b'],
  ['/d', 'd'],
];

export function planCycle(
  random: Random,
  localAddresses: readonly string[],
  extraRoutes: readonly string[],
): CyclePlan {
  const localAddress = localAddresses[random.int(localAddresses.length)] as string;
  const roll = random.next();
  const base = { localAddress, ping: false, lifetimeMs: 0, everyMs: 0 };
  if (roll < 0.015) {
    return {
      ...base,
      kind: 'flood',
      route: '/limited',
      pool: 'a',
      messages: Array.from({ length: 60 }, () => randomMessage(random, false)),
    };
  }
  if (roll < 0.03) {
    const data = SOURCE.subarray(0, 300 * 1024);
    return {
      ...base,
      kind: 'too_big',
      route: '/limited',
      pool: 'a',
      messages: [{ data, binary: true, fragments: 1 + random.int(3) }],
    };
  }
  const [route, pool] =
    roll < 0.1
      ? [extraRoutes[random.int(extraRoutes.length)] as string, 'b']
      : (ROUTES[random.int(ROUTES.length)] as [string, string]);
  const count = 1 + random.int(6);
  return {
    ...base,
    kind: 'cycle',
    route,
    pool,
    messages: Array.from({ length: count }, () => randomMessage(random, random.chance(0.03))),
    ping: random.chance(0.3),
  };
}

export function planLong(random: Random, localAddresses: readonly string[]): CyclePlan {
  const [route, pool] = ROUTES[random.int(ROUTES.length)] as [string, string];
  return {
    kind: 'long',
    route,
    pool,
    localAddress: localAddresses[random.int(localAddresses.length)] as string,
    messages: [randomMessage(random, false)],
    ping: true,
    lifetimeMs: 5_000 + random.int(40_000),
    everyMs: 1_000 + random.int(3_000),
  };
}

const TIMEOUT_MS = 30_000;

/** Runs one connection to its end and has the ledger judge it. `stopping()` ends a long one early (own close). */
export function runConnection(target: Target, plan: CyclePlan, stopping: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const ledger = target.ledger;
    const c: Connection = {
      kind: plan.kind,
      route: plan.route,
      pool: plan.pool,
      started: performance.now(),
      closedByClient: false,
    };
    let settled = false;
    let ws: WebSocket;
    const expected: { data: Buffer; binary: boolean }[] = [];
    const pings: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    let lastProgress = performance.now();
    const finish = (ending: Ending) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      clearTimeout(timer);
      ledger.judge(c, ending, performance.now());
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
      resolve();
    };
    const watchdog = setInterval(() => {
      const idleFor = performance.now() - lastProgress;
      if (idleFor > TIMEOUT_MS) {
        finish({
          type: 'timeout',
          stage:
            c.upgradedAt === undefined
              ? 'handshake'
              : c.backend === undefined
                ? 'greeting'
                : expected.length > 0
                  ? `echo (${expected.length} missing)`
                  : 'close',
        });
      }
    }, 1000);
    ws = new WebSocket(`ws://127.0.0.1:${target.port}${plan.route}`, {
      perMessageDeflate: false,
      maxPayload: 64 * 1024 * 1024,
      createConnection: () => {
        const socket: Socket = connect({ port: target.port, host: '127.0.0.1', localAddress: plan.localAddress });
        socket.once('connect', () => {
          c.localPort = socket.localPort;
        });
        return socket;
      },
    });
    const send = (m: Message) => {
      expected.push({ data: m.data, binary: m.binary });
      if (m.fragments === 1) return ws.send(m.data, { binary: m.binary });
      const step = Math.ceil(m.data.length / m.fragments);
      for (let off = 0; off < m.data.length; off += step) {
        ws.send(m.data.subarray(off, off + step), { binary: m.binary, fin: off + step >= m.data.length });
      }
    };
    const closeOwn = () => {
      if (settled || ws.readyState !== WebSocket.OPEN) return;
      c.closedByClient = true;
      ws.close(1000);
    };
    const maybeDone = () => {
      if (plan.kind !== 'cycle' || expected.length > 0 || pings.length > 0) return;
      closeOwn();
    };
    const longTick = () => {
      if (settled) return;
      if (stopping() || performance.now() - c.started > plan.lifetimeMs) return closeOwn();
      if (expected.length === 0) {
        send(plan.messages[0] as Message);
        if (pings.length === 0) {
          const payload = Buffer.from(`p${Math.round(performance.now())}`);
          pings.push(payload);
          ws.ping(payload);
        }
      }
      timer = setTimeout(longTick, plan.everyMs);
    };
    ws.on('upgrade', () => {
      ledger.upgraded(c, performance.now());
      lastProgress = performance.now();
    });
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      finish({ type: 'status', status: res.statusCode ?? 0 });
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      lastProgress = performance.now();
      if (c.backend === undefined) {
        try {
          c.backend = (JSON.parse(data.toString()) as { backend: string }).backend;
        } catch {
          return finish({ type: 'corrupt', detail: `greeting ${data.subarray(0, 40).toString('latin1')}` });
        }
        if (plan.kind === 'long') return longTick();
        for (const m of plan.messages) send(m);
        if (plan.ping) {
          const payload = Buffer.from(`ping-${c.started.toFixed(3)}`);
          pings.push(payload);
          ws.ping(payload);
        }
        return;
      }
      const want = expected.shift();
      if (!want) return finish({ type: 'corrupt', detail: `unexpected message of ${data.length} bytes` });
      if (want.binary !== isBinary || !want.data.equals(data)) {
        return finish({ type: 'corrupt', detail: `echo differs: sent ${want.data.length} bytes, got ${data.length}` });
      }
      maybeDone();
    });
    ws.on('pong', (data: Buffer) => {
      lastProgress = performance.now();
      const want = pings.shift();
      if (!want?.equals(data))
        return finish({ type: 'corrupt', detail: `pong ${data.toString('latin1')} for ${want?.toString('latin1')}` });
      maybeDone();
    });
    let socketError: NodeJS.ErrnoException | undefined;
    ws.on('error', (err: NodeJS.ErrnoException) => {
      socketError = err;
    });
    ws.on('close', (code: number) => {
      if (c.upgradedAt === undefined) {
        return finish({ type: 'error', message: socketError?.code ?? socketError?.message ?? 'closed' });
      }
      if (socketError && !['ECONNRESET', 'EPIPE'].includes(socketError.code ?? '')) {
        return finish({ type: 'corrupt', detail: `client error ${socketError.message}` });
      }
      finish(code === 1006 ? { type: 'tcp' } : { type: 'close', code });
    });
  });
}

/** Opens a connection on `route`, waits for its greeting, sends half a frame and vanishes. */
export function vanishMidFrame(target: Target, localAddress: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${target.port}/a`, { perMessageDeflate: false, localAddress });
    const done = (ok: boolean) => {
      ws.terminate();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 10_000);
    ws.on('error', () => {});
    ws.on('close', () => {
      clearTimeout(timer);
      resolve(false);
    });
    ws.once('message', () => {
      clearTimeout(timer);
      const socket = (ws as unknown as { _socket: Socket })._socket;
      // A masked binary frame declaring 1000 bytes, of which 10 arrive.
      socket.write(Buffer.concat([Buffer.from([0x82, 0xfe, 0x03, 0xe8, 1, 2, 3, 4]), Buffer.alloc(10, 7)]), () => {
        socket.destroy();
        ws.removeAllListeners('close');
        resolve(true);
      });
    });
  });
}

/**
 * A hostile handshake and the status it must get (0: none, the client vanishes mid-head; the gateway still counts
 * that one as a 400 refusal, node's parser having reported the early end as a bad request).
 */
const HOSTILE: readonly { name: string; request: string; status: number }[] = [
  {
    name: 'version 8',
    request: upgradeRequest({ path: '/a', headers: { 'Sec-WebSocket-Version': '8' } }),
    status: 426,
  },
  { name: 'no key', request: upgradeRequest({ path: '/a', headers: { 'Sec-WebSocket-Key': '' } }), status: 400 },
  { name: 'no route', request: upgradeRequest({ path: '/nowhere' }), status: 404 },
  { name: 'half a head', request: 'GET /a HTTP/1.1\r\nHost: localhost\r\nUpgrade: webs', status: 0 },
];

/** Runs one hostile handshake; resolves with the refusal /metrics must count and '' when it got its answer, else what happened. */
export function hostileHandshake(target: Target, random: Random): Promise<{ status: number; problem: string }> {
  const h = HOSTILE[random.int(HOSTILE.length)] as (typeof HOSTILE)[number];
  return new Promise((resolve) => {
    const socket = connect({ port: target.port, host: '127.0.0.1' });
    let text = '';
    const done = (problem: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: h.status === 0 ? 400 : h.status, problem });
    };
    const timer = setTimeout(() => done(h.status === 0 ? '' : `${h.name}: no answer`), h.status === 0 ? 50 : 10_000);
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (!text.includes('\r\n')) return;
      const status = Number(text.slice(9, 12));
      done(status === h.status ? '' : `${h.name}: status ${status}`);
    });
    socket.on('close', () => done(h.status === 0 ? '' : `${h.name}: closed without an answer`));
    socket.write(h.request);
  });
}
