// The frame-aware tunnel through a running gateway: violations and limits end with the right close code on each
// side, messages are counted exactly, keepalive and idle work on messages, and extensions pass through intact.

import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { Endings } from '../../src/errors.js';
import { echoBackendFor, startRawBackend, type TestBackend } from '../helpers/backends.js';
import { type Cleanup, runCleanups } from '../helpers/cleanups.js';
import { afterHead, closeCodeIn, frame, parseFrames } from '../helpers/frames.js';
import { type ConfigObject, metricValue, routeConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { switchingProtocols } from '../helpers/hostile-backends.js';
import { rawUpgrade, readUntilClose, SAMPLE_ACCEPT, upgradeRequest } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Cleanup[] = [];
afterEach(async () => {
  vi.useRealTimers(); // before the gateway stops: its drain must not run on a faked clock
  await runCleanups(cleanups);
});

const echoBackend = (options: { welcome?: boolean; perMessageDeflate?: boolean } = {}): Promise<TestBackend> =>
  echoBackendFor(cleanups, 'b', { welcome: false, ...options });

async function gateway(backends: string[], route: ConfigObject = {}, extra: ConfigObject = {}): Promise<TestGateway> {
  const gw = await startGateway(routeConfig(backends, route, extra));
  cleanups.push(() => gw.stop());
  return gw;
}

/** Raw client after a successful 101; returns the socket and a collector of everything it receives. */
async function rawClient(port: number) {
  const res = await rawUpgrade(port);
  expect(res.status).toBe(101);
  const received: Buffer[] = [res.rest];
  res.socket.on('data', (c: Buffer) => received.push(c));
  res.socket.resume();
  const closed = new Promise<Buffer>((resolve) => res.socket.once('close', () => resolve(Buffer.concat(received))));
  return { socket: res.socket, received: () => Buffer.concat(received), closed };
}

/** The close code the backend's `ws` socket saw. */
function backendCloseCode(b: TestBackend): Promise<number> {
  return new Promise((resolve) => {
    const check = () => {
      const ws = [...b.sockets][0];
      if (!ws) return setTimeout(check, 10);
      ws.once('close', (code) => resolve(code));
    };
    check();
  });
}

describe('protocol violations (RFC 6455 §5)', () => {
  it('an unmasked client frame: client gets 1002, backend 1011, counted', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url]);
    const c = await rawClient(gw.port);
    const backendCode = backendCloseCode(b);
    c.socket.write(frame(1, 'hello', { masked: false }));
    expect(closeCodeIn(await c.closed)).toBe(1002);
    expect(await backendCode).toBe(1011);
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0);
    const text = await gw.metrics();
    expect(
      metricValue(text, 'wsgate_protocol_violations_total', {
        direction: 'client_to_backend',
        kind: 'unmasked_client_frame',
      }),
    ).toBe(1);
    expect(metricValue(text, 'wsgate_closes_total', { code: '1002', initiator: 'proxy' })).toBe(1);
  });

  it('a reserved opcode and a fragmented ping from the client each give 1002', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url]);
    for (const bad of [frame(3, 'x'), frame(9, 'p', { fin: false })]) {
      const c = await rawClient(gw.port);
      c.socket.write(bad);
      expect(closeCodeIn(await c.closed)).toBe(1002);
    }
  });

  it('a masked frame from the backend: backend gets 1002, client 1014', async () => {
    const evil = await startRawBackend((req, socket) => {
      const key = /sec-websocket-key: (.*)\r\n/i.exec(req)?.[1] ?? '';
      expect(key.length).toBe(24);
      setTimeout(() => socket.write(frame(1, 'masked by server', { masked: true })), 20);
      return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`;
    });
    cleanups.push(() => evil.close());
    const gw = await gateway([evil.url]);
    const c = await rawClient(gw.port);
    expect(closeCodeIn(await c.closed)).toBe(1014);
    await waitFor(() => (evil.received[0]?.length ?? 0) > 1);
    const toBackend = Buffer.concat(evil.received[0] ?? []);
    const afterHead = toBackend.subarray(toBackend.indexOf('\r\n\r\n') + 4);
    const frames = parseFrames(afterHead);
    expect(frames[0]?.opcode).toBe(8);
    expect(frames[0]?.masked).toBe(true);
    expect(frames[0]?.payload.readUInt16BE(0)).toBe(1002);
  });

  it('lenient mode passes a violation through and counts it', async () => {
    const raw = await startRawBackend(
      () =>
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
    );
    cleanups.push(() => raw.close());
    const gw = await gateway([raw.url], { protocol: 'lenient' });
    const c = await rawClient(gw.port);
    c.socket.write(frame(1, 'unmasked', { masked: false }));
    await waitFor(() => Buffer.concat(raw.received[0] ?? []).includes('unmasked'));
    expect(metricValue(await gw.metrics(), 'wsgate_protocol_violations_total', { kind: 'unmasked_client_frame' })).toBe(
      1,
    );
    expect(c.socket.destroyed).toBe(false);
    c.socket.destroy();
  });
});

describe('limits', () => {
  it('messagesPerSecond: a client at 90% of the limit for 10 s stays open; a burst over it gets 1008', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const b = await echoBackend();
    const gw = await gateway([b.url], { limits: { perConnection: { messagesPerSecond: 100, burstMessages: 100 } } });
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`);
    await new Promise((r) => ws.once('open', r));
    let echoed = 0;
    ws.on('message', () => echoed++);
    for (let second = 0; second < 10; second++) {
      for (let i = 0; i < 90; i++) ws.send(`m${second}-${i}`);
      await waitFor(() => echoed === (second + 1) * 90);
      vi.advanceTimersByTime(1000);
    }
    expect(ws.readyState).toBe(WebSocket.OPEN);
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    const backendCode = backendCloseCode(b);
    for (let i = 0; i < 300; i++) ws.send('flood');
    expect(await closed).toBe(1008);
    expect(await backendCode).toBe(1000);
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_limit_exceeded_total', { limit: 'messages_per_second', action: 'close' })).toBe(1);
    expect(metricValue(text, 'wsgate_closes_total', { code: '1008', initiator: 'proxy' })).toBe(1);
  });

  it('throttle mode delivers every message, later, and never closes', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url], {
      limits: { perConnection: { messagesPerSecond: 200, burstMessages: 20, onExceed: 'throttle' } },
    });
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`);
    await new Promise((r) => ws.once('open', r));
    const got: string[] = [];
    ws.on('message', (d) => got.push(d.toString()));
    const started = performance.now();
    for (let i = 0; i < 120; i++) ws.send(`m${i}`);
    await waitFor(() => got.length === 120, 10_000);
    // 100 messages over the burst at 200/s take at least ~0.5 s; generous lower bound.
    expect(performance.now() - started).toBeGreaterThan(250);
    expect(got).toEqual(Array.from({ length: 120 }, (_, i) => `m${i}`));
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(metricValue(await gw.metrics(), 'wsgate_limit_exceeded_total', { action: 'throttle' })).toBeGreaterThan(0);
    ws.close();
  });

  it('maxMessageBytes: a message split into many fragments gets 1009 as soon as its size shows it', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url], { limits: { perConnection: { maxMessageBytes: '4KiB' } } });
    const c = await rawClient(gw.port);
    const backendCode = backendCloseCode(b);
    const part = Buffer.alloc(512, 0x61);
    const frames = [frame(2, part, { fin: false })];
    for (let i = 0; i < 20; i++) frames.push(frame(0, part, { fin: false }));
    c.socket.write(Buffer.concat(frames));
    expect(closeCodeIn(await c.closed)).toBe(1009);
    expect(await backendCode).toBe(1000);
    // Nothing beyond the limit reached the backend: it never saw a complete message.
    expect(b.requests.length).toBe(1);
  });

  it('a declared length over the limit is refused before any payload is forwarded', async () => {
    const raw = await startRawBackend(
      () =>
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
    );
    cleanups.push(() => raw.close());
    const gw = await gateway([raw.url], { limits: { perConnection: { maxMessageBytes: 1000 } } });
    const c = await rawClient(gw.port);
    c.socket.write(frame(2, Buffer.alloc(5000, 0x62)));
    expect(closeCodeIn(await c.closed)).toBe(1009);
    const seen = Buffer.concat(raw.received[0] ?? []);
    expect(seen.includes(Buffer.alloc(16, 0x62))).toBe(false);
  });

  it('controlFramesPerSecond: a ping flood gets 1008', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url], { limits: { perConnection: { controlFramesPerSecond: 10 } } });
    const c = await rawClient(gw.port);
    c.socket.write(Buffer.concat(Array.from({ length: 50 }, () => frame(9, 'ping'))));
    expect(closeCodeIn(await c.closed)).toBe(1008);
    expect(metricValue(await gw.metrics(), 'wsgate_limit_exceeded_total', { limit: 'control_frames_per_second' })).toBe(
      1,
    );
  });

  it('maxFramesPerMessage: a fragment flood gets 1008', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url], { limits: { perConnection: { maxFramesPerMessage: 100 } } });
    const c = await rawClient(gw.port);
    const frames = [frame(1, '', { fin: false })];
    for (let i = 0; i < 200; i++) frames.push(frame(0, '', { fin: false }));
    c.socket.write(Buffer.concat(frames));
    expect(closeCodeIn(await c.closed)).toBe(1008);
  });
});

describe('counting', () => {
  it('counts messages exactly: fragmented messages once, control frames as control', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url]);
    const c = await rawClient(gw.port);
    c.socket.write(frame(1, 'hello'));
    c.socket.write(
      Buffer.concat([frame(2, 'ab', { fin: false }), frame(9, 'p'), frame(0, 'cd', { fin: false }), frame(0, 'ef')]),
    );
    c.socket.write(frame(1, Buffer.alloc(300, 0x61)));
    // Echoes: 'hello', 'abcdef' (one binary message), 300 bytes; plus ws answers the ping with a pong.
    await waitFor(() => parseFrames(c.received()).length >= 4);
    c.socket.write(frame(8, Buffer.from([0x03, 0xe8])));
    await c.closed;
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0);
    const text = await gw.metrics();
    const m = (direction: string, type: string) => metricValue(text, 'wsgate_messages_total', { direction, type });
    expect(m('client_to_backend', 'text')).toBe(2);
    expect(m('client_to_backend', 'binary')).toBe(1);
    expect(m('client_to_backend', 'control')).toBe(2); // ping + close
    expect(m('backend_to_client', 'text')).toBe(2);
    expect(m('backend_to_client', 'binary')).toBe(1);
    expect(m('backend_to_client', 'control')).toBe(2); // pong + close
    expect(metricValue(text, 'wsgate_message_bytes_count', { direction: 'client_to_backend' })).toBe(3);
    expect(metricValue(text, 'wsgate_message_bytes_sum', { direction: 'client_to_backend' })).toBe(5 + 6 + 300);
    expect(metricValue(text, 'wsgate_message_bytes_bucket', { direction: 'client_to_backend', le: '16' })).toBe(2);
    expect(metricValue(text, 'wsgate_closes_total', { code: '1000', initiator: 'client' })).toBe(1);
  });
});

describe('backend loss, keepalive and idle', () => {
  it('a backend that drops its TCP connection mid-stream gives the client 1014', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url]);
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`);
    await new Promise((r) => ws.once('open', r));
    await waitFor(() => b.sockets.size === 1);
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    b.killConnections();
    expect(await closed).toEqual({ code: 1014, reason: 'backend connection lost' });
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0);
    expect(metricValue(await gw.metrics(), 'wsgate_closes_total', { code: '1014' })).toBe(1);
  });

  it('keepalive: pongs to proxy pings are absorbed; a client that never pongs is closed with 1001', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url], { keepalive: { interval: '100ms', timeout: '300ms', peers: 'client' } });
    // A `ws` client answers pings automatically: the connection lives and the backend never sees our pongs.
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`);
    let pings = 0;
    ws.on('ping', () => pings++);
    await new Promise((r) => ws.once('open', r));
    const backendPongs: number[] = [];
    await waitFor(() => b.sockets.size === 1);
    for (const s of b.sockets) s.on('pong', () => backendPongs.push(1));
    await waitFor(() => pings >= 3, 5000);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(backendPongs).toHaveLength(0);
    ws.close();
    // A raw client that ignores pings is closed.
    const c = await rawClient(gw.port);
    expect(closeCodeIn(await c.closed)).toBe(1001);
    const frames = parseFrames(c.received());
    expect(frames.some((f) => f.opcode === 9)).toBe(true);
    expect(metricValue(await gw.metrics(), 'wsgate_keepalive_timeouts_total', { peer: 'client' })).toBe(1);
  });

  it('keepalive: a backend that never pongs is closed, and the client hears 1011', async () => {
    // A raw backend completes the handshake and then ignores everything, pings included.
    const silent = await startRawBackend(
      () =>
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
    );
    cleanups.push(() => silent.close());
    const gw = await gateway([silent.url], { keepalive: { interval: '100ms', timeout: '300ms', peers: 'backend' } });
    const c = await rawClient(gw.port);
    expect(closeCodeIn(await c.closed)).toBe(1011);
    // The backend got a masked ping (client-to-server frames are masked, RFC 6455 §5.3) and then a close.
    const toBackend = Buffer.concat(silent.received[0] ?? []);
    const frames = parseFrames(toBackend.subarray(toBackend.indexOf('\r\n\r\n') + 4));
    expect(frames[0]?.opcode).toBe(9);
    expect(frames[0]?.masked).toBe(true);
    expect(frames.some((f) => f.opcode === 8)).toBe(true);
    expect(metricValue(await gw.metrics(), 'wsgate_keepalive_timeouts_total', { peer: 'backend' })).toBe(1);
  });

  it('idle timeout closes both sides with 1001 after no data messages', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url], {}, { timeouts: { handshake: '2s', idle: '300ms', drain: '1s' } });
    const c = await rawClient(gw.port);
    const backendCode = backendCloseCode(b);
    const started = Date.now();
    expect(closeCodeIn(await c.closed)).toBe(1001);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(await backendCode).toBe(1001);
  });
});

describe('extensions', () => {
  it('permessage-deflate negotiated between a real ws client and backend passes through intact', async () => {
    const b = await echoBackend({ perMessageDeflate: true });
    const gw = await gateway([b.url]);
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`, { perMessageDeflate: true });
    await new Promise((r) => ws.once('open', r));
    expect(ws.extensions).toContain('permessage-deflate');
    const text = 'compress me '.repeat(500);
    const back = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
    ws.send(text);
    expect(await back).toBe(text);
    expect(metricValue(await gw.metrics(), 'wsgate_protocol_violations_total')).toBeUndefined();
    ws.close();
  });

  it('RSV1 without a negotiated extension is a violation', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url]);
    const c = await rawClient(gw.port);
    c.socket.write(frame(1, 'x', { rsv: 4 }));
    expect(closeCodeIn(await c.closed)).toBe(1002);
  });
});

describe('drain', () => {
  it("closeWith sends the ending's code to the client at a frame boundary and 1001 to the backend", async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => new Promise((r) => wss.close(r)));
    const backendClosed = new Promise<number>((resolve) =>
      wss.on('connection', (s) => s.on('close', (code) => resolve(code))),
    );
    await new Promise((r) => wss.once('listening', r));
    const port = (wss.address() as { port: number }).port;
    const gw = await gateway([`ws://127.0.0.1:${port}`]);
    const c = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    for (const t of gw.gateway.tunnels) t.closeWith(Endings.REBALANCE);
    const all = await readUntilClose(c.socket, c.received());
    expect(closeCodeIn(all)).toBe(1012);
    expect(await backendClosed).toBe(1001);
  });
});

describe('throttle memory', () => {
  it('a client pushing far over bytesPerSecond is slowed by TCP backpressure, not buffered', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url], {
      limits: { perConnection: { bytesPerSecond: '4MiB', onExceed: 'throttle' } },
    });
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`);
    await new Promise((r) => ws.once('open', r));
    let echoedBytes = 0;
    ws.on('message', (d: Buffer) => {
      echoedBytes += d.length;
    });
    const total = 10 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    for (let sent = 0; sent < total; sent += chunk.length) ws.send(chunk);
    let maxHeld = 0;
    const sampler = setInterval(() => {
      for (const t of gw.gateway.tunnels) {
        // Held back by the throttle, buffered unread, and queued (copied) for writing, in both directions.
        const held = (t.c2b.held?.length ?? 0) + (t.b2c.held?.length ?? 0);
        const buffered = t.client.readableLength + t.backend.readableLength;
        const queued = t.client.writableLength + t.backend.writableLength;
        maxHeld = Math.max(maxHeld, held + buffered + queued);
      }
    }, 5);
    await waitFor(() => echoedBytes === total, 20_000);
    clearInterval(sampler);
    // The proxy never holds more than a socket read or two of the client's 10 MiB.
    expect(maxHeld).toBeLessThan(1024 * 1024);
    expect(
      metricValue(await gw.metrics(), 'wsgate_limit_exceeded_total', { limit: 'bytes_per_second', action: 'throttle' }),
    ).toBeGreaterThan(0);
    ws.close();
  });
});

describe('the end of a clean close handshake', () => {
  /** A backend that answers a close frame with its own and then keeps its half of TCP open, as the client below does. */
  async function halfOpenBackend(): Promise<{ port: number; sockets: Socket[]; received: () => Buffer }> {
    const sockets: Socket[] = [];
    const bytes: Buffer[] = [];
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      sockets.push(socket);
      socket.on('error', () => {});
      let answered = false;
      socket.on('data', (chunk: Buffer) => {
        bytes.push(chunk);
        const all = Buffer.concat(bytes);
        if (!answered && all.includes('\r\n\r\n')) {
          answered = true;
          socket.write(switchingProtocols(all.toString('latin1')));
        }
        if (closeCodeIn(afterHead(all)) !== undefined)
          socket.write(frame(8, Buffer.from([0x03, 0xe8]), { masked: false }));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { port: (server.address() as AddressInfo).port, sockets, received: () => Buffer.concat(bytes) };
  }

  it('over plain TCP the proxy closes both connections at once, even if neither peer sends its FIN', async () => {
    const backend = await halfOpenBackend();
    const gw = await gateway([`ws://127.0.0.1:${backend.port}`]);
    const client = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
    client.on('error', () => {});
    cleanups.push(() => client.destroy());
    const received: Buffer[] = [];
    client.on('data', (c: Buffer) => received.push(c));
    const clientSawFin = once(client, 'end');
    client.write(upgradeRequest());
    await waitFor(() => Buffer.concat(received).includes('\r\n\r\n'), 5000, '101');
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 1, 5000, 'tunnel open');
    client.write(frame(8, Buffer.from([0x03, 0xe8])));
    await clientSawFin;
    // The backend's close frame reached the client before the FIN: close(2) delivers what the kernel holds.
    expect(closeCodeIn(afterHead(Buffer.concat(received)))).toBe(1000);
    expect(closeCodeIn(afterHead(backend.received()))).toBe(1000);
    // The tunnel ended without waiting for either peer's FIN (or the 5 s teardown linger): its slot and
    // descriptors are free now.
    await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0, 1000, 'tunnel ended');
    await waitFor(() => backend.sockets[0]?.readableEnded === true, 1000, 'backend saw the FIN');
  });
});
