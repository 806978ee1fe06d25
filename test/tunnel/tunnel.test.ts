// The tunnel after the 101 where its pieces meet (limits with the close handshake, throttling with keepalive, early
// bytes, pong cuts) and what operators see of it (metrics, close codes). Real sockets on port 0, raw peers that
// send exact bytes, byte-exact comparisons.

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Endings } from '../../src/errors.js';
import { echoBackendFor, type RawBackend, type TestBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { afterHead, closeCodeIn, frame, parseFrames } from '../helpers/frames.js';
import { type ConfigObject, expectNoLeaks, metricValue, routeConfig, startGatewayFor } from '../helpers/gateway.js';
import { acceptingBackendFor, receivedAfterHead } from '../helpers/hostile-backends.js';
import { sendRequest, upgradedClient, upgradeRequest } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

const gateway = (backends: string[], route: ConfigObject = {}, extra: ConfigObject = {}) =>
  startGatewayFor(cleanups, routeConfig(backends, route, extra));

/** A raw backend that completes the handshake, records every byte and hands each socket to `after`. */
const acceptingBackend = (after?: (socket: Socket) => void): Promise<RawBackend> =>
  acceptingBackendFor(cleanups, after);

const echoBackend = (): Promise<TestBackend> => echoBackendFor(cleanups, 'b', { welcome: false });

const rawClient = (port: number) => upgradedClient(port, cleanups);

const close1000 = () => frame(8, Buffer.from([0x03, 0xe8]));

describe('keepalive', () => {
  it('a client that answers the keepalive ping with a pong whose header straddles two reads is not closed', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], { keepalive: { interval: '100ms', timeout: '400ms', peers: 'client' } });
    const c = await rawClient(gw.port);
    // Answer every ping like RFC 6455 §5.5.2 says, but write each pong's first header byte on its own.
    let seen = 0;
    let pongs = 0;
    c.socket.on('data', () => {
      const pings = parseFrames(c.received()).filter((f) => f.opcode === 9);
      for (; seen < pings.length; seen++) {
        const pong = frame(10, pings[seen]!.payload);
        c.socket.write(pong.subarray(0, 1));
        setTimeout(() => {
          if (!c.socket.destroyed) c.socket.write(pong.subarray(1));
          pongs++;
        }, 30);
      }
    });
    await delay(1500);
    // §5.5.3: a pong with the ping's payload is the answer. The client answered every ping it got.
    expect(pongs).toBeGreaterThan(0);
    expect(metricValue(await gw.metrics(), 'wsgate_keepalive_timeouts_total', { peer: 'client' }) ?? 0).toBe(0);
    expect(closeCodeIn(c.received())).toBeUndefined();
    expect(c.socket.destroyed).toBe(false);
    expect(pongs).toBeGreaterThan(1);
  });

  it('a throttled client that answers pings in order is not closed for a keepalive timeout', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], {
      keepalive: { interval: '100ms', timeout: '500ms', peers: 'client' },
      limits: { perConnection: { bytesPerSecond: 2000, onExceed: 'throttle' } },
    });
    // A ws client answers every ping at once; the gateway reads its pongs only after the throttled data before them.
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`);
    cleanups.push(() => ws.terminate());
    await new Promise((r) => ws.once('open', r));
    let pings = 0;
    ws.on('ping', () => pings++);
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    // 6 KB at 2 KB/s (burst 2 KB): about 2 s of throttling.
    for (let i = 0; i < 6; i++) ws.send(Buffer.alloc(1000, i));
    const result = await Promise.race([closed, delay(2500).then(() => 'open' as const)]);
    expect(pings).toBeGreaterThan(0);
    expect(metricValue(await gw.metrics(), 'wsgate_keepalive_timeouts_total', { peer: 'client' }) ?? 0).toBe(0);
    expect(result).toBe('open');
    await waitFor(() => receivedAfterHead(backend).length >= 6 * (1000 + 8), 5000, 'all data at the backend');
  });
});

describe('lenient mode with throttling', () => {
  it('a violating frame that is throttled is counted once in wsgate_protocol_violations_total', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], {
      protocol: 'lenient',
      limits: { perConnection: { messagesPerSecond: 5, burstMessages: 1, onExceed: 'throttle' } },
    });
    const c = await rawClient(gw.port);
    // One good message takes the only token; the second is unmasked (§5.1 violation, passed in lenient mode)
    // and must wait ~200 ms for a token.
    c.socket.write(Buffer.concat([frame(1, 'first'), frame(1, 'second', { masked: false })]));
    await waitFor(() => receivedAfterHead(backend).includes('second'), 3000, 'second message forwarded');
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_protocol_violations_total', { kind: 'unmasked_client_frame' })).toBe(1);
  });
});

describe('a proxy close pending while a client frame header is half-read', () => {
  /** Opens a tunnel, sends `first`, starts a proxy close (as drain/idle/rebalance do), then sends `rest`. */
  async function closeMidHeader(route: ConfigObject, first: Buffer, rest: Buffer) {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], route);
    const c = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    c.socket.write(first);
    const [tunnel] = [...gw.gateway.tunnels];
    await waitFor(() => (tunnel!.c2b.scanner?.bytes ?? 0) + 3 >= first.length, 2000, 'first bytes read');
    await delay(50);
    tunnel!.closeWith(Endings.SHUTDOWN);
    // The client hears 1001 at once (its direction is at a boundary); then it finishes what it was sending.
    await waitFor(() => closeCodeIn(c.received()) === 1001, 2000, 'client got 1001');
    c.socket.write(rest);
    await c.closed;
    await waitFor(() => backend.connections === 1 && gw.gateway.tunnels.size === 0, 5000);
    return { gw, backend, toBackend: receivedAfterHead(backend) };
  }

  it('maxMessageBytes still holds: a frame declaring more than the limit is not forwarded', async () => {
    const big = frame(2, Buffer.alloc(5000, 0x62)); // 82 fe 13 88 + mask + 5000 bytes
    const { gw, toBackend } = await closeMidHeader(
      { limits: { perConnection: { maxMessageBytes: 1000 } } },
      big.subarray(0, 2),
      big.subarray(2),
    );
    // docs/configuration.md: maxMessageBytes is enforced "as soon as a header declares more"; nothing past the header may pass.
    expect(toBackend.length).toBeLessThan(100);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_limit_exceeded_total', { limit: 'max_message_bytes' }) ?? 0).toBeLessThanOrEqual(
      1,
    );
  });

  it('messagesPerSecond (close) still holds, is counted once, and the backend still gets a close frame', async () => {
    const second = frame(1, 'second-message');
    const third = frame(1, 'third-message');
    const { gw, toBackend } = await closeMidHeader(
      { limits: { perConnection: { messagesPerSecond: 1, burstMessages: 1 } } },
      Buffer.concat([frame(1, 'first'), second.subarray(0, 3)]),
      Buffer.concat([second.subarray(3), third]),
    );
    const frames = parseFrames(toBackend);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_limit_exceeded_total', { limit: 'messages_per_second' }) ?? 0).toBeLessThanOrEqual(
      1,
    );
    // Nothing after the frame in flight: the third message never reaches the backend...
    expect(toBackend.includes(Buffer.from(third.subarray(0, 2)))).toBe(false);
    // ...and the backend hears the proxy's close frame (§7.1.2: close the WebSocket with a close frame).
    expect(frames.some((f) => f.opcode === 8)).toBe(true);
  });
});

describe('bytes after a peer close frame', () => {
  it('a data frame the client sends after its close frame (same write) is not forwarded or counted', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url]);
    const c = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    c.socket.write(Buffer.concat([close1000(), frame(1, 'after-close')]));
    await waitFor(() => parseFrames(receivedAfterHead(backend)).length >= 1, 2000, 'close at backend');
    await delay(100);
    const frames = parseFrames(receivedAfterHead(backend));
    // §5.5.1: after sending a Close frame an endpoint must not send more data; §1.4: the peer discards it. The
    // tunnel says "nothing more may follow it" (pump.ts push()). The backend must see only the close frame.
    expect(frames.map((f) => f.opcode)).toEqual([8]);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_messages_total', { direction: 'client_to_backend', type: 'text' }) ?? 0).toBe(0);
  });

  it('a violation after the client close frame (same write) does not add a second close frame toward the backend', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url]);
    const c = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    c.socket.write(Buffer.concat([close1000(), frame(3, 'reserved-opcode')]));
    await waitFor(() => parseFrames(receivedAfterHead(backend)).length >= 1, 2000, 'close at backend');
    await delay(200);
    const closes = parseFrames(receivedAfterHead(backend)).filter((f) => f.opcode === 8);
    // §5.5.1: an endpoint sends at most one close frame; the client's own close went through first.
    expect(closes.map((f) => f.payload.readUInt16BE(0))).toEqual([1000]);
  });
});

describe('what operators see', () => {
  it('absorbed keepalive pongs are not reported as tunnelled messages', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], { keepalive: { interval: '100ms', timeout: '1s', peers: 'client' } });
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`);
    cleanups.push(() => ws.terminate());
    await new Promise((r) => ws.once('open', r));
    let pings = 0;
    ws.on('ping', () => pings++);
    await waitFor(() => pings >= 3, 5000, '3 pings');
    await delay(50);
    // Nothing reached the backend (the pongs were the proxy's own and were absorbed)...
    expect(parseFrames(receivedAfterHead(backend))).toHaveLength(0);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_bytes_total', { direction: 'client_to_backend' })).toBe(0);
    // ...so "WebSocket messages tunnelled" (the metric's help) must not count them either.
    expect(metricValue(text, 'wsgate_messages_total', { direction: 'client_to_backend', type: 'control' })).toBe(0);
  });

  it('maxMessageBytes: a fragmented message of exactly the limit passes; one byte more is 1009', async () => {
    const b = await echoBackend();
    const gw = await gateway([b.url], { limits: { perConnection: { maxMessageBytes: 1000 } } });
    const exact = [frame(2, Buffer.alloc(400, 1), { fin: false }), frame(9, 'p'), frame(0, Buffer.alloc(600, 2))];
    const c = await rawClient(gw.port);
    c.socket.write(Buffer.concat(exact));
    await waitFor(() => parseFrames(c.received()).some((f) => f.opcode === 2), 3000, 'echo of exact message');
    const echoed = parseFrames(c.received()).find((f) => f.opcode === 2)!;
    expect(echoed.payload).toEqual(Buffer.concat([Buffer.alloc(400, 1), Buffer.alloc(600, 2)]));
    c.socket.write(Buffer.concat([frame(2, Buffer.alloc(400, 1), { fin: false }), frame(0, Buffer.alloc(601, 2))]));
    expect(closeCodeIn(await c.closed)).toBe(1009);
    await expectNoLeaks(gw);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_closes_total', { code: '1009', initiator: 'proxy' })).toBe(1);
    expect(metricValue(text, 'wsgate_messages_total', { direction: 'client_to_backend', type: 'binary' })).toBe(1);
  });
});

/** A raw backend that answers the first close frame it gets with a close frame of its own (§5.5.1). */
async function closeEchoingBackend(): Promise<RawBackend> {
  return acceptingBackend((socket) => {
    const chunks: Buffer[] = [];
    let answered = false;
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (answered) return;
      const frames = parseFrames(Buffer.concat(chunks));
      const close = frames.find((f) => f.opcode === 8);
      if (close) {
        answered = true;
        socket.write(frame(8, close.payload, { masked: false }));
      }
    });
  });
}

/** Random frames (masked text/binary, some fragmented with pings between) and the stream cut at random points. */
function randomStream(tag: string, messages: number): { stream: Buffer; writes: Buffer[] } {
  const frames: Buffer[] = [frame(1, tag)];
  for (let i = 0; i < messages; i++) {
    const size = Math.floor(Math.random() * 4000);
    if (i % 7 === 3) {
      frames.push(frame(2, randomBytes(size), { fin: false }), frame(9, 'x'), frame(0, randomBytes(size >> 1)));
    } else {
      frames.push(
        frame(i % 2 ? 1 : 2, randomBytes(size), { lengthBytes: size > 2000 && size < 65536 ? 8 : undefined }),
      );
    }
  }
  frames.push(close1000());
  const stream = Buffer.concat(frames);
  const writes: Buffer[] = [];
  for (let off = 0; off < stream.length; ) {
    const n = 1 + Math.floor(Math.random() * 9000);
    writes.push(stream.subarray(off, off + n));
    off += n;
  }
  return { stream, writes };
}

describe('payload integrity under throttling (shared read buffer)', () => {
  it('two throttled clients at once: each backend gets exactly the bytes its client sent, then both close cleanly', async () => {
    const backend = await closeEchoingBackend();
    const gw = await gateway([backend.url], {
      protocol: 'lenient', // random non-minimal 64-bit lengths above are fine in lenient mode
      limits: { perConnection: { bytesPerSecond: '256KiB', messagesPerSecond: 400, onExceed: 'throttle' } },
    });
    const streams = [randomStream('client-A', 250), randomStream('client-B', 250)];
    const clients = await Promise.all(streams.map(() => rawClient(gw.port)));
    await waitFor(() => gw.gateway.tunnels.size === 2);
    await Promise.all(
      clients.map(async (c, i) => {
        for (const w of streams[i]!.writes) {
          c.socket.write(w);
          if (Math.random() < 0.3) await delay(1);
        }
      }),
    );
    const closed = await Promise.all(clients.map((c) => c.closed));
    for (let i = 0; i < 2; i++) {
      expect(closeCodeIn(afterHead(Buffer.concat([Buffer.from('\r\n\r\n'), closed[i]!])))).toBe(1000);
    }
    const got = [receivedAfterHead(backend, 0), receivedAfterHead(backend, 1)];
    for (const { stream } of streams) {
      const tag = parseFrames(stream)[0]!.payload.toString();
      const mine = got.find((g) => parseFrames(g)[0]?.payload.toString() === tag);
      expect(mine?.length).toBe(stream.length);
      expect(mine?.equals(stream)).toBe(true);
    }
    await expectNoLeaks(gw);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_limit_exceeded_total', { action: 'throttle' })).toBeGreaterThan(0);
    expect(metricValue(text, 'wsgate_closes_total', { code: '1000', initiator: 'client' })).toBe(2);
    expect(metricValue(text, 'wsgate_bytes_total', { direction: 'client_to_backend' })).toBe(
      streams[0]!.stream.length + streams[1]!.stream.length,
    );
    expect(metricValue(text, 'wsgate_messages_total', { direction: 'client_to_backend', type: 'control' })).toBe(
      streams.reduce((n, s) => n + parseFrames(s.stream).filter((f) => f.opcode >= 8).length, 0),
    );
  }, 20_000);
});

describe('early bytes (frames in the same read as the upgrade request)', () => {
  it('early frames that hit a throttle keep the client paused: the proxy does not buffer what the client floods', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], {
      limits: { perConnection: { messagesPerSecond: 2, burstMessages: 1, onExceed: 'throttle' } },
    });
    // Upgrade + two messages in one write: the first takes the only token, the second is throttled (held).
    const res = await sendRequest(
      gw.port,
      Buffer.concat([Buffer.from(upgradeRequest()), frame(1, 'one'), frame(1, 'two')]),
    );
    expect(res.status).toBe(101);
    cleanups.push(() => res.socket.destroy());
    res.socket.on('error', () => {});
    await waitFor(() => gw.gateway.tunnels.size === 1);
    const [tunnel] = [...gw.gateway.tunnels];
    // Now flood 8 MiB of small messages; a throttled client must be held back by TCP, not by proxy memory.
    const msg = frame(2, Buffer.alloc(1000, 7));
    const burst = Buffer.concat(Array.from({ length: 1024 }, () => msg));
    let maxHeld = 0;
    const sampler = setInterval(() => {
      const t = tunnel!;
      // The throttle's held rest (a copy made by Buffer.concat for every read while throttled).
      maxHeld = Math.max(maxHeld, t.c2b.held?.length ?? 0);
    }, 5);
    for (let i = 0; i < 8; i++) {
      if (!res.socket.write(burst)) await Promise.race([new Promise((r) => res.socket.once('drain', r)), delay(300)]);
    }
    await delay(400);
    clearInterval(sampler);
    // docs/configuration.md: "throttle: stop reading until tokens refill (TCP backpressure reaches the client)".
    expect(maxHeld).toBeLessThan(1024 * 1024);
  });
});

describe('endings', () => {
  it('a close handshake the backend never answers does not keep the tunnel forever (idle timeout still applies)', async () => {
    const backend = await acceptingBackend(); // completes the handshake, then ignores everything, close frames too
    const gw = await gateway([backend.url], {}, { timeouts: { handshake: '2s', idle: '300ms', drain: '1s' } });
    const c = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    c.socket.write(close1000());
    await waitFor(() => closeCodeIn(receivedAfterHead(backend)) === 1000, 2000, 'close at backend');
    // Neither peer closes TCP. timeouts.idle is 300 ms; the teardown linger is 5 s. Give it 3 s.
    const ended = await Promise.race([c.closed.then(() => true), delay(3000).then(() => false)]);
    expect(ended).toBe(true);
    await expectNoLeaks(gw);
  });

  it('a backend close frame split into single bytes, then FIN: client gets it byte-exact, metric has its code', async () => {
    const closeFrame = frame(8, Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('bye now')]), { masked: false });
    const backend = await acceptingBackend(async (socket) => {
      socket.write(frame(1, 'last words', { masked: false }));
      for (const byte of closeFrame) {
        socket.write(Buffer.from([byte]));
        await delay(5);
      }
      socket.end();
    });
    const gw = await gateway([backend.url]);
    const c = await rawClient(gw.port);
    const all = await c.closed;
    expect(all.equals(Buffer.concat([frame(1, 'last words', { masked: false }), closeFrame]))).toBe(true);
    await expectNoLeaks(gw);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_closes_total', { code: '4000', initiator: 'backend' })).toBe(1);
    expect(metricValue(text, 'wsgate_messages_total', { direction: 'backend_to_client', type: 'text' })).toBe(1);
    expect(metricValue(text, 'wsgate_bytes_total', { direction: 'backend_to_client' })).toBe(all.length);
  });
});

describe('limits and the close handshake', () => {
  it('controlFramesPerSecond: a client closing after pings within the limit gets its close through', async () => {
    const backend = await closeEchoingBackend();
    const gw = await gateway([backend.url], { limits: { perConnection: { controlFramesPerSecond: 5 } } });
    const c = await rawClient(gw.port);
    // 5 pings = the whole burst, then the normal close (a control frame too, but not a "ping flood").
    c.socket.write(Buffer.concat([...Array.from({ length: 5 }, () => frame(9, 'p')), close1000()]));
    const all = await c.closed;
    // The backend got the client's own 1000, and the client got the backend's answer, not a 1008 from the proxy.
    const toBackend = parseFrames(receivedAfterHead(backend)).find((f) => f.opcode === 8);
    expect(closeCodeIn(all)).toBe(1000);
    expect(toBackend?.payload).toEqual(Buffer.from([0x03, 0xe8]));
  });

  it('throttle with messagesPerSecond and bytesPerSecond: a message that already has its message token waits only for bytes', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], {
      limits: { perConnection: { messagesPerSecond: 1, burstMessages: 2, bytesPerSecond: 1000, onExceed: 'throttle' } },
    });
    const c = await rawClient(gw.port);
    await waitFor(() => gw.gateway.tunnels.size === 1);
    // Message 1 takes 1 of 2 message tokens and the whole 1000-byte burst; message 2 (300 bytes) has a message
    // token left and needs 300 byte tokens: ~300 ms. Charging its message token again on the retry would make it
    // wait for a second message token too (~1 s).
    const started = performance.now();
    c.socket.write(Buffer.concat([frame(2, Buffer.alloc(1000, 1)), frame(2, Buffer.alloc(300, 2))]));
    await waitFor(() => parseFrames(receivedAfterHead(backend)).length === 2, 3000, 'both messages through', 5);
    const took = performance.now() - started;
    expect(took).toBeGreaterThan(250);
    expect(took).toBeLessThan(700);
  });
});

describe('pong absorption and reinjection', () => {
  it('a foreign 16-byte pong sent while a keepalive pong is due reaches the backend in place; ours is absorbed', async () => {
    const backend = await acceptingBackend();
    const gw = await gateway([backend.url], { keepalive: { interval: '100ms', timeout: '2s', peers: 'client' } });
    const c = await rawClient(gw.port);
    await waitFor(() => parseFrames(c.received()).some((f) => f.opcode === 9), 3000, 'a ping');
    const ping = parseFrames(c.received()).find((f) => f.opcode === 9)!;
    const foreign = Buffer.from('abcdefghijklmnop');
    expect(foreign.length).toBe(ping.payload.length);
    c.socket.write(
      Buffer.concat([frame(1, 'A'), frame(10, foreign), frame(1, 'B'), frame(10, ping.payload), frame(1, 'C')]),
    );
    await waitFor(() => parseFrames(receivedAfterHead(backend)).length >= 4, 3000, 'frames at backend');
    await delay(100);
    const got = parseFrames(receivedAfterHead(backend)).map((f) => [f.opcode, f.payload.toString(), f.masked]);
    expect(got).toEqual([
      [1, 'A', true],
      [10, 'abcdefghijklmnop', true],
      [1, 'B', true],
      [1, 'C', true],
    ]);
    expect(c.socket.destroyed).toBe(false);
  });
});
