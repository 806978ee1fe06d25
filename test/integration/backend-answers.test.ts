// The WebSocket handshake end to end between client, wsgate and backend (RFC 6455 §4, RFC 7692, RFC 9110): what the client receives of a backend's answer (101, 1xx, non-101 with a body), byte for byte, and
// what the tunnel allows after a 101 whose extensions were negotiated. Real sockets on port 0, no mocks.

import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { acceptFor } from '../../src/handshake/accept.js';
import { type RawBackend, startRawBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { frame, parseFrames } from '../helpers/frames.js';
import { metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { keyOf, switchingProtocols } from '../helpers/hostile-backends.js';
import {
  closesWithin,
  headWithRequestId,
  openSocket,
  rawUpgrade,
  readUntilClose,
  upgradeRequest,
} from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

const TIMEOUTS = { handshake: '1s', idle: '2s', drain: '1s' };

async function setup(
  respond: (request: string, socket: Socket) => string | Buffer | undefined,
): Promise<{ raw: RawBackend; gw: TestGateway }> {
  const raw = await startRawBackend(respond);
  cleanups.push(() => raw.close());
  const gw = await startGateway(simpleConfig([raw.url], { timeouts: TIMEOUTS }));
  cleanups.push(() => gw.stop());
  return { raw, gw };
}

/** Collects every byte a socket receives from now on. */
function collector(socket: Socket, initial: Buffer = Buffer.alloc(0)): { bytes: () => Buffer } {
  const chunks: Buffer[] = [initial];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  socket.resume();
  return { bytes: () => Buffer.concat(chunks) };
}

describe('interim 1xx answers before the 101 (RFC 9110 §15.2, §7.8)', () => {
  it('a backend that answers 100 Continue (client sent Expect: 100-continue) and then 101: the client gets the 101 and a tunnel', async () => {
    // RFC 9110 §7.8: a server that receives Upgrade and Expect: 100-continue MUST send 100 before 101.
    // §15.2: a client MUST be able to parse 1xx before the final response; a proxy MUST forward 1xx.
    const { gw } = await setup((request, socket) => {
      socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      setTimeout(() => {
        socket.write(switchingProtocols(request));
        socket.write(frame(1, 'after-101', { masked: false }));
      }, 100);
      return undefined;
    });
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    const got = collector(socket);
    socket.write(upgradeRequest({ headers: { Expect: '100-continue' } }));
    await Promise.race([
      waitFor(() => got.bytes().includes('after-101'), 3000).catch(() => {}),
      closesWithin(socket, 3000),
    ]);
    const text = got.bytes().toString('latin1');
    // What happens: the 100 is treated as the backend's final refusal, relayed, and both connections closed;
    // counted as wsgate_handshake_rejections_total{status="100",reason="backend_refused"}.
    expect(text).toContain('HTTP/1.1 101 Switching Protocols');
    expect(text).toContain('after-101');
    const m = await gw.metrics();
    expect(metricValue(m, 'wsgate_handshake_rejections_total', { status: '100' }) ?? 0).toBe(0);
  });

  it('an unsolicited 103 Early Hints before the 101 does not end the handshake', async () => {
    const { gw } = await setup((request, socket) => {
      socket.write('HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n');
      setTimeout(() => socket.write(switchingProtocols(request)), 100);
      return undefined;
    });
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    const got = collector(socket);
    socket.write(upgradeRequest());
    await Promise.race([
      waitFor(() => got.bytes().includes('101 Switching'), 3000).catch(() => {}),
      closesWithin(socket, 3000),
    ]);
    expect(got.bytes().toString('latin1')).toContain('HTTP/1.1 101 Switching Protocols');
    expect(socket.destroyed).toBe(false);
  });
});

describe("a backend's non-101 answer is relayed as it came", () => {
  it('401 with a chunked body written in two parts: the client gets the whole body, terminating chunk included', async () => {
    const head = 'HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nWWW-Authenticate: Bearer\r\n\r\n';
    const body1 = '5\r\nhello\r\n';
    const body2 = '6\r\n world\r\n0\r\n\r\n';
    const { gw } = await setup((_request, socket) => {
      socket.write(head);
      setTimeout(() => socket.write(body1), 50);
      setTimeout(() => socket.end(body2), 100);
      return undefined;
    });
    const res = await rawUpgrade(gw.port);
    cleanups.push(() => res.socket.destroy());
    expect(res.status).toBe(401);
    const rest = await readUntilClose(res.socket, res.rest);
    // What happens: the head (and whatever came in its read) is sent and the backend destroyed at once.
    expect(rest.toString('latin1')).toBe(body1 + body2);
  });

  it('403 without Content-Length (body delimited by the close): the client gets the body that follows the head', async () => {
    const { gw } = await setup((_request, socket) => {
      socket.write('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n');
      setTimeout(() => socket.end('you may not pass\n'), 50);
      return undefined;
    });
    const res = await rawUpgrade(gw.port);
    cleanups.push(() => res.socket.destroy());
    expect(res.status).toBe(403);
    const rest = await readUntilClose(res.socket, res.rest);
    expect(rest.toString('latin1')).toBe('you may not pass\n');
  });

  it('a backend that stalls in the middle of a Content-Length body: the client is not held open forever', async () => {
    // timeouts.handshake 1s and timeouts.idle 2s: nothing in wsgate should keep both sockets past a few seconds.
    const { gw } = await setup(() => 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\nabc');
    const res = await rawUpgrade(gw.port);
    cleanups.push(() => res.socket.destroy());
    expect(res.status).toBe(500);
    expect(await closesWithin(res.socket, 5000)).toBe(true);
  });

  it('a client that leaves while a refusal body is still being relayed: the backend connection is closed', async () => {
    let backendSocket: Socket | undefined;
    const { gw } = await setup((_request, socket) => {
      backendSocket = socket;
      return 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\n\r\nabc';
    });
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(500);
    res.socket.destroy();
    await waitFor(() => backendSocket !== undefined);
    const s = backendSocket as Socket;
    const closed = await new Promise<boolean>((resolve) => {
      if (s.destroyed) return resolve(true);
      const t = setTimeout(() => resolve(false), 4000);
      s.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    expect(closed).toBe(true);
  });

  it('a large refusal body to a client that does not read: the proxy applies backpressure instead of buffering it all', async () => {
    // The backend streams a 64 MiB body in 256 KiB writes, honouring its own backpressure, and counts what its
    // kernel took. The client reads nothing. Kernel buffers on the way (send 4 MiB max, a paused receiver's buffer
    // does not autotune up) hold a few MiB; with backpressure the backend stalls there.
    const MiB = 1 << 20;
    const size = 64 * MiB;
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let accepted = 0;
    const { gw } = await setup((_request, socket) => {
      socket.write(`HTTP/1.1 503 Service Unavailable\r\nContent-Length: ${size}\r\n\r\n`);
      const pump = () => {
        while (accepted < size && !socket.destroyed) {
          accepted += chunk.length;
          if (!socket.write(chunk)) return void socket.once('drain', pump);
        }
      };
      pump();
      return undefined;
    });
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    socket.write(upgradeRequest());
    socket.pause(); // the client reads nothing
    await delay(3000);
    // What happens: relayRefusal writes every chunk to the client with no regard for write()'s return value, so the
    // whole body ends up in wsgate's memory.
    expect(accepted).toBeLessThan(32 * MiB);
  });
});

describe('bytes after a complete refusal', () => {
  it('a 403 with Content-Length: 4 and more bytes in the same read: the client gets the 403 and its 4 bytes only', async () => {
    // When the rest of a body arrives in later reads, relayRefusal cuts at Content-Length; bytes past it that come
    // in the head's own read are forwarded whole, so a second response reaches the client behind the refusal.
    const refusal = 'HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\ndeny';
    const smuggled = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi';
    const { gw } = await setup(() => refusal + smuggled);
    const res = await rawUpgrade(gw.port);
    cleanups.push(() => res.socket.destroy());
    expect(res.status).toBe(403);
    const rest = await readUntilClose(res.socket, res.rest);
    expect(rest.toString('latin1')).toBe('deny');
  });
});

describe('what the backend receives of the request', () => {
  it('repeated Cookie, Sec-WebSocket-Extensions and Sec-WebSocket-Protocol lines, Origin and the key, exact and in order', async () => {
    const { raw, gw } = await setup((request) => switchingProtocols(request));
    const key = 'AQIDBAUGBwgJCgsMDQ4PEA==';
    const head =
      'GET /ws?room=1 HTTP/1.1\r\nHost: example.test:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n' +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nOrigin: https://app.example.test\r\n` +
      'Cookie: a=1; b=2\r\nCookie: c=3\r\n' +
      'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' +
      'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover, x-foo\r\n' +
      'Sec-WebSocket-Protocol: v2.chat\r\nSec-WebSocket-Protocol: v1.chat\r\n\r\n';
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    const got = collector(socket);
    socket.write(head);
    await waitFor(() => got.bytes().includes('\r\n\r\n'), 3000, 'answer');
    expect(got.bytes().toString('latin1')).toContain(`Sec-WebSocket-Accept: ${acceptFor(key)}`);
    const seen = Buffer.concat(raw.received[0] ?? []).toString('latin1');
    expect(seen.startsWith('GET /ws?room=1 HTTP/1.1\r\nHost: example.test:8080\r\n')).toBe(true);
    const lines = seen.split('\r\n');
    const pick = (name: string) => lines.filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
    expect(pick('Sec-WebSocket-Key')).toEqual([`Sec-WebSocket-Key: ${key}`]);
    expect(pick('Cookie')).toEqual(['Cookie: a=1; b=2', 'Cookie: c=3']);
    expect(pick('Sec-WebSocket-Extensions')).toEqual([
      'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits',
      'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover, x-foo',
    ]);
    expect(pick('Sec-WebSocket-Protocol')).toEqual([
      'Sec-WebSocket-Protocol: v2.chat',
      'Sec-WebSocket-Protocol: v1.chat',
    ]);
    expect(pick('Origin')).toEqual(['Origin: https://app.example.test']);
    expect(pick('Connection')).toEqual(['Connection: Upgrade']);
    expect(pick('Upgrade')).toEqual(['Upgrade: websocket']);
  });
});

describe('negotiated extensions in the 101 (RFC 6455 §9.1, RFC 7692)', () => {
  it('permessage-deflate accepted on a second Sec-WebSocket-Extensions line: RSV1 frames from the backend pass', async () => {
    // RFC 6455 §4.2.2 / §9.1: the extensions "can all be listed in a single Sec-WebSocket-Extensions header field
    // or split between multiple instances" of it.
    const compressed = Buffer.from('f248cdc9c90700', 'hex'); // "Hello" deflated (RFC 7692 §7.2.3.1)
    const { gw } = await setup((request, socket) => {
      setTimeout(() => socket.write(frame(1, compressed, { masked: false, rsv: 4 })), 50);
      return switchingProtocols(
        request,
        'Sec-WebSocket-Extensions: x-test\r\nSec-WebSocket-Extensions: permessage-deflate\r\n',
      );
    });
    const res = await rawUpgrade(gw.port, { headers: { 'Sec-WebSocket-Extensions': 'x-test, permessage-deflate' } });
    cleanups.push(() => res.socket.destroy());
    expect(res.status).toBe(101);
    const got = collector(res.socket, res.rest);
    await Promise.race([waitFor(() => got.bytes().length >= 9, 2000).catch(() => {}), closesWithin(res.socket, 2000)]);
    const frames = parseFrames(got.bytes());
    // What happens: wsgate reads only the first Sec-WebSocket-Extensions line, so RSV1 counts as a violation and
    // the client gets a close instead of the message.
    expect(
      frames[0]?.opcode,
      `first frame ${JSON.stringify(frames[0] && { ...frames[0], payload: frames[0].payload.toString('hex') })}`,
    ).toBe(1);
    expect(frames[0]?.payload.equals(compressed)).toBe(true);
    const m = await gw.metrics();
    expect(metricValue(m, 'wsgate_protocol_violations_total') ?? 0).toBe(0);
  });
});

describe('the 101 reaches the client byte-exact', () => {
  it('a 101 written one byte at a time, with Set-Cookie, odd header case, subprotocol, and frames in the same write', async () => {
    let sent = Buffer.alloc(0);
    const welcome = frame(1, 'welcome', { masked: false });
    const { gw } = await setup((request, socket) => {
      const head =
        'HTTP/1.1 101 Switching Protocols\r\n' +
        'upgrade: WebSocket\r\n' +
        'Connection: keep-alive, Upgrade\r\n' +
        `sec-websocket-accept: ${acceptFor(keyOf(request))}\r\n` +
        'Sec-WebSocket-Protocol: b\r\n' +
        'Set-Cookie: a=1; Path=/; HttpOnly\r\n' +
        'Set-Cookie: b=2; Secure\r\n' +
        'X-Odd:  spaced value \t\r\n\r\n';
      sent = Buffer.from(head, 'latin1');
      const bytes = Buffer.concat([sent, welcome]);
      let i = 0;
      const tick = () => {
        if (socket.destroyed || i >= bytes.length) return;
        socket.write(bytes.subarray(i, i + 1));
        i++;
        setTimeout(tick, 1);
      };
      tick();
      return undefined;
    });
    const socket = await openSocket(gw.port);
    cleanups.push(() => socket.destroy());
    const got = collector(socket);
    socket.write(upgradeRequest({ headers: { 'Sec-WebSocket-Protocol': 'a, b' } }));
    // The head as the backend wrote it, plus the request id wsgate adds (issue 18): its line is 38 bytes.
    const idLine = 'X-Request-Id: '.length + 22 + 2;
    await waitFor(() => got.bytes().length >= sent.length + idLine + welcome.length, 4000, 'head and welcome frame');
    const expected = headWithRequestId(sent.toString('latin1'), got.bytes().toString('latin1'));
    expect(got.bytes().subarray(0, expected.length).toString('latin1')).toBe(expected);
    expect(got.bytes().subarray(expected.length).equals(welcome)).toBe(true);
  });
});

describe('a 101 that repeats a header RFC 6455 allows once (§11.3.3)', () => {
  it('two Sec-WebSocket-Accept lines, the first right, the second wrong → 502 WSG_UPSTREAM_BAD_ACCEPT', async () => {
    // §11.3.3: Sec-WebSocket-Accept "MUST NOT appear more than once in an HTTP response". wsgate checks only the
    // first value and relays both; node's http client (and so `ws`) joins them as "right, bogus" and fails.
    const { gw } = await setup((request) => switchingProtocols(request, 'Sec-WebSocket-Accept: bogus\r\n'));
    const res = await rawUpgrade(gw.port);
    cleanups.push(() => res.socket.destroy());
    expect(res.status).toBe(502);
  });
});
