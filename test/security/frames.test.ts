// Hostile frames after a good handshake (issue 7 over issue 3's frame-aware tunnel): every RFC 6455 §5
// violation sent by the client and, from a raw backend, by the server. The offender gets close 1002 (1009 for a
// length no one can count), the other side 1011 (client offended) or 1014 (backend offended), and the offending
// frame never reaches the other side. Then length boundaries, an absurd declared length that must not allocate,
// one byte per write, ten thousand empty continuations, and close payloads under strict and lenient routes.

import type { Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type RawBackend, startRawBackend } from '../helpers/backends.js';
import { afterHead, closeCodeIn, frame, frameHeader, type ParsedFrame, parseFrames } from '../helpers/frames.js';
import { metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { switchingProtocols } from '../helpers/hostile-backends.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

/** What the backend sends right after its 101, for the next connection only. */
let backendScript: ((socket: Socket) => void) | undefined;
let backend: RawBackend;
let gw: TestGateway;

beforeAll(async () => {
  backend = await startRawBackend((request, socket) => {
    const script = backendScript;
    backendScript = undefined;
    if (script) setTimeout(() => script(socket), 20);
    return switchingProtocols(request);
  });
  const config = simpleConfig([backend.url], {
    limits: { maxConnections: 1000, maxConnectionsPerIp: 1000 },
  });
  config.routes = [
    { name: 'lenient', match: { path: '/lenient' }, pool: 'main', protocol: 'lenient' },
    {
      name: 'fragments',
      match: { path: '/fragments' },
      pool: 'main',
      limits: { perConnection: { maxFramesPerMessage: 1000 } },
    },
    { name: 'main', match: { path: '/' }, pool: 'main' },
  ];
  gw = await startGateway(config);
});

afterAll(async () => {
  await gw.stop();
  await backend.close();
});

beforeEach(() => {
  backendScript = undefined;
});

interface Tunnel {
  socket: Socket;
  /** Index of this tunnel's connection on the raw backend. */
  index: number;
  received(): Buffer;
  closed: Promise<Buffer>;
  /** Frames the backend received after its 101. */
  backendFrames(): ParsedFrame[];
  backendBytes(): Buffer;
}

async function open(path = '/', script?: (socket: Socket) => void): Promise<Tunnel> {
  backendScript = script;
  const index = backend.connections;
  const res = await rawUpgrade(gw.port, { path });
  expect(res.status).toBe(101);
  const chunks: Buffer[] = [res.rest];
  res.socket.on('data', (c: Buffer) => chunks.push(c));
  res.socket.on('error', () => {});
  res.socket.resume();
  const closed = new Promise<Buffer>((resolve) => res.socket.once('close', () => resolve(Buffer.concat(chunks))));
  const backendBytes = () => afterHead(Buffer.concat(backend.received[index] ?? []));
  return {
    socket: res.socket,
    index,
    received: () => Buffer.concat(chunks),
    closed,
    backendBytes,
    backendFrames: () => parseFrames(backendBytes()),
  };
}

const closeOf = (frames: ParsedFrame[]) => frames.find((f) => f.opcode === 8);

async function activeIsZero(): Promise<void> {
  await waitFor(async () => metricValue(await gw.metrics(), 'wsgate_connections_active') === 0, 5000, 'gauge at 0');
}

/** A violation as each side would send it: `masked` is how that side must (or must not) mask. */
type Violation = { name: string; bytes: (masked: boolean) => Buffer; code?: number };

const payload125 = 'p'.repeat(125);
const violations: Violation[] = [
  ...[3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf].map((op) => ({
    name: `reserved opcode 0x${op.toString(16)}`,
    bytes: (masked: boolean) => frame(op, 'x', { masked }),
  })),
  { name: 'ping of 126 bytes', bytes: (masked) => frame(9, `${payload125}p`, { masked }) },
  { name: 'fragmented ping', bytes: (masked) => frame(9, 'p', { masked, fin: false }) },
  { name: 'fragmented close', bytes: (masked) => frame(8, Buffer.from([0x03, 0xe8]), { masked, fin: false }) },
  { name: 'continuation without a message', bytes: (masked) => frame(0, 'x', { masked }) },
  {
    name: 'a new text frame inside an unfinished message',
    bytes: (masked) => Buffer.concat([frame(1, 'a', { masked, fin: false }), frame(1, 'b', { masked })]),
  },
  ...[4, 2, 1].map((rsv) => ({
    name: `RSV bits ${rsv.toString(2).padStart(3, '0')} without an extension`,
    bytes: (masked: boolean) => frame(1, 'x', { masked, rsv }),
  })),
  {
    name: '16-bit length for 5 bytes (non-minimal)',
    bytes: (masked) => Buffer.concat([frameHeader(0x81, 5n, { masked, lengthBytes: 2 }), Buffer.from('hello')]),
  },
  {
    name: '64-bit length for 200 bytes (non-minimal)',
    bytes: (masked) => Buffer.concat([frameHeader(0x82, 200n, { masked, lengthBytes: 8 }), Buffer.alloc(200)]),
  },
  { name: '64-bit length with the top bit set (2^63)', bytes: (masked) => frameHeader(0x82, 1n << 63n, { masked }) },
  {
    name: 'declared length 2^62 (cannot be counted)',
    bytes: (masked) => frameHeader(0x82, 1n << 62n, { masked }),
    code: 1009,
  },
  {
    name: 'close with code 1005 (never sent on the wire)',
    bytes: (masked) => frame(8, Buffer.from([0x03, 0xed]), { masked }),
  },
  { name: 'close with code 999', bytes: (masked) => frame(8, Buffer.from([0x03, 0xe7]), { masked }) },
  { name: 'close with a 1-byte payload', bytes: (masked) => frame(8, Buffer.from([0x03]), { masked }) },
  {
    name: 'close with an invalid UTF-8 reason',
    bytes: (masked) => frame(8, Buffer.from([0x03, 0xe8, 0xc3, 0x28]), { masked }),
  },
];

describe('violations sent by the client: client gets 1002, backend 1011, the frame is not forwarded', () => {
  const all: Violation[] = [
    ...violations,
    { name: 'an unmasked client frame', bytes: () => frame(1, 'x', { masked: false }) },
  ];
  for (const v of all) {
    it(v.name, async () => {
      const t = await open();
      const bad = v.name.startsWith('an unmasked') ? v.bytes(false) : v.bytes(true);
      t.socket.write(bad);
      const got = await t.closed;
      expect(closeCodeIn(got)).toBe(v.code ?? 1002);
      await waitFor(() => closeOf(t.backendFrames()) !== undefined, 5000, 'backend close frame');
      const frames = t.backendFrames();
      // The backend sees the proxy's masked close 1011 and nothing of the offending frame (a valid first
      // fragment before it passes, as it was valid when it came).
      const leading = v.name.includes('inside an unfinished') ? [1] : [];
      expect(frames.map((f) => f.opcode)).toEqual([...leading, 8]);
      const close = closeOf(frames);
      expect(close?.masked).toBe(true);
      expect(close?.payload.readUInt16BE(0)).toBe(1011);
      if (leading.length === 0) expect(t.backendBytes().indexOf(bad.subarray(0, Math.min(bad.length, 6)))).toBe(-1);
      await activeIsZero();
    });
  }
});

describe('violations sent by the backend: backend gets 1002, client 1014, the frame is not forwarded', () => {
  const all: Violation[] = [
    ...violations,
    { name: 'a masked server frame', bytes: () => frame(1, 'x', { masked: true }) },
  ];
  for (const v of all) {
    it(v.name, async () => {
      const bad = v.name.startsWith('a masked') ? v.bytes(true) : v.bytes(false);
      const t = await open('/', (socket) => socket.write(bad));
      const got = await t.closed;
      const frames = parseFrames(got);
      const leading = v.name.includes('inside an unfinished') ? [1] : [];
      expect(frames.map((f) => f.opcode)).toEqual([...leading, 8]);
      expect(closeOf(frames)?.masked).toBe(false);
      expect(closeCodeIn(got)).toBe(1014);
      if (leading.length === 0) expect(got.indexOf(bad.subarray(0, Math.min(bad.length, 6)))).toBe(-1);
      await waitFor(() => closeOf(t.backendFrames()) !== undefined, 5000, 'backend close frame');
      const close = closeOf(t.backendFrames());
      expect(close?.masked).toBe(true);
      expect(close?.payload.readUInt16BE(0)).toBe(v.code ?? 1002);
      await activeIsZero();
    });
  }

  it('every violation was counted once per direction', async () => {
    const text = await gw.metrics();
    for (const direction of ['client_to_backend', 'backend_to_client']) {
      expect(metricValue(text, 'wsgate_protocol_violations_total', { direction, kind: 'reserved_opcode' })).toBe(10);
      expect(metricValue(text, 'wsgate_protocol_violations_total', { direction, kind: 'rsv_without_extension' })).toBe(
        3,
      );
      expect(metricValue(text, 'wsgate_protocol_violations_total', { direction, kind: 'invalid_close_payload' })).toBe(
        4,
      );
    }
  });
});

describe('length boundaries pass through byte-identical (RFC 6455 §5.2)', () => {
  for (const length of [0, 125, 126, 127, 65535, 65536, 70000]) {
    it(`${length}-byte frames both ways`, async () => {
      const fromServer = frame(2, Buffer.alloc(length, 0xab), { masked: false });
      const t = await open('/', (socket) => socket.write(fromServer));
      const fromClient = frame(2, Buffer.alloc(length, 0xcd));
      t.socket.write(fromClient);
      await waitFor(() => t.backendBytes().length >= fromClient.length, 5000, 'client frame at backend');
      expect(t.backendBytes().equals(fromClient)).toBe(true);
      await waitFor(() => t.received().length >= fromServer.length, 5000, 'server frame at client');
      expect(t.received().equals(fromServer)).toBe(true);
      t.socket.destroy();
      await activeIsZero();
    });
  }
});

describe('absurd declared lengths do not allocate', () => {
  it('a 2^62-byte declaration: 1009 at once, RSS does not move', async () => {
    const rssBefore = process.memoryUsage().rss;
    for (let i = 0; i < 20; i++) {
      const t = await open();
      t.socket.write(frameHeader(0x82, 1n << 62n, { masked: true }));
      expect(closeCodeIn(await t.closed)).toBe(1009);
    }
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);
  });

  it('a 2^40-byte declaration is streamed, not buffered: the proxy holds at most a few MiB of it', async () => {
    const t = await open();
    try {
      t.socket.write(frameHeader(0x82, 1n << 40n, { masked: true }));
      const tunnel = [...gw.gateway.tunnels].at(-1);
      expect(tunnel).toBeDefined();
      let maxHeld = 0;
      const sample = setInterval(() => {
        if (!tunnel) return;
        const held = tunnel.backend.writableLength + tunnel.client.readableLength;
        maxHeld = Math.max(maxHeld, held);
      }, 5);
      const chunk = Buffer.alloc(1 << 20, 0x11);
      for (let i = 0; i < 32; i++) {
        if (!t.socket.write(chunk)) await new Promise((r) => t.socket.once('drain', r));
      }
      await waitFor(() => t.backendBytes().length >= 32 * (1 << 20), 20_000, '32 MiB at backend');
      clearInterval(sample);
      expect(maxHeld).toBeLessThan(4 * 1024 * 1024);
    } finally {
      t.socket.destroy();
    }
    await activeIsZero();
  });
});

describe('slow and fragmented senders', () => {
  it('a client writing one byte per write is forwarded byte-identical', async () => {
    const t = await open();
    const stream = Buffer.concat([
      frame(1, 'hello'),
      frame(2, Buffer.alloc(130, 7)),
      frame(9, 'ping'),
      frame(1, 'frag', { fin: false }),
      frame(0, 'mented'),
    ]);
    t.socket.setNoDelay(true);
    for (const byte of stream) {
      t.socket.write(Buffer.from([byte]));
      await delay(0);
    }
    await waitFor(() => t.backendBytes().length >= stream.length, 10_000, 'all bytes at backend');
    expect(t.backendBytes().equals(stream)).toBe(true);
    expect(t.socket.destroyed).toBe(false);
    t.socket.destroy();
    await activeIsZero();
  });

  it('10,000 empty continuation frames: passed through without a frame limit', async () => {
    const t = await open();
    const flood = Buffer.concat([
      frame(1, '', { fin: false }),
      ...Array.from({ length: 10_000 }, () => frame(0, '', { fin: false })),
      frame(0, 'end'),
    ]);
    t.socket.write(flood);
    await waitFor(() => t.backendBytes().length >= flood.length, 10_000, 'flood at backend');
    expect(t.backendBytes().equals(flood)).toBe(true);
    t.socket.destroy();
    await activeIsZero();
  });

  it('10,000 empty continuation frames on a route with maxFramesPerMessage 1000: 1008', async () => {
    const t = await open('/fragments');
    const flood = Buffer.concat([
      frame(1, '', { fin: false }),
      ...Array.from({ length: 10_000 }, () => frame(0, '', { fin: false })),
    ]);
    t.socket.write(flood);
    expect(closeCodeIn(await t.closed)).toBe(1008);
    // Far fewer than the flood reached the backend.
    expect(t.backendBytes().length).toBeLessThan(1001 * 6 + 64);
    await activeIsZero();
  });
});

describe('close payloads: strict refuses, lenient forwards as sent', () => {
  const badCloses: [string, Buffer][] = [
    ['code 1005', Buffer.from([0x03, 0xed])],
    ['code 0', Buffer.from([0x00, 0x00])],
    ['invalid UTF-8 reason', Buffer.from([0x03, 0xe8, 0xff, 0xfe])],
  ];
  for (const [name, payload] of badCloses) {
    it(`${name}: strict → 1002; lenient → forwarded byte-identical`, async () => {
      const strict = await open('/');
      strict.socket.write(frame(8, payload));
      expect(closeCodeIn(await strict.closed)).toBe(1002);

      const lenient = await open('/lenient');
      const close = frame(8, payload);
      lenient.socket.write(close);
      await waitFor(() => lenient.backendBytes().length >= close.length, 5000, 'close at backend');
      expect(lenient.backendBytes().subarray(0, close.length).equals(close)).toBe(true);
      lenient.socket.destroy();
      await activeIsZero();
    });
  }

  it('lenient still stops a length it cannot count (2^63) with 1002', async () => {
    const t = await open('/lenient');
    t.socket.write(frameHeader(0x82, 1n << 63n, { masked: true }));
    expect(closeCodeIn(await t.closed)).toBe(1002);
  });

  it('lenient forwards a reserved opcode from the backend and counts it', async () => {
    const bad = frame(0xb, 'x', { masked: false });
    const t = await open('/lenient', (socket) => socket.write(bad));
    await waitFor(() => t.received().length >= bad.length, 5000, 'frame at client');
    expect(t.received().equals(bad)).toBe(true);
    t.socket.destroy();
    await activeIsZero();
  });
});
