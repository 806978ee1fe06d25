// The issue-20 native pump (bench/native/pump.cc) against the JS tunnel it is measured against: the same bench
// gateway (bench/native/gateway.ts: wsgate's handshake, then one pump or the other) behind real sockets, checked
// for byte-exact forwarding both ways (split writes, large frames, a reader that stalls) and for the close codes
// of RFC 6455 §7.4 that the JS tunnel sends: 1009 for a message over the size limit, 1008 for a rate limit,
// 1002 for a protocol violation, 1014 when the backend vanishes. A pump that corrupts frames measures nothing.
//
// The addon is compiled here with g++ (about a second). Without a C++ compiler it cannot be built, so the native
// cases are skipped, and only then: the shipped path never loads it (the JS cases still run).

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildAddon, COUNTER, compilerMissing } from '../../bench/native/addon.js';
import { acceptFor } from '../../src/handshake/accept.js';
import { type RawBackend, startRawBackend } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { closeCodeIn, frame, parseFrames } from '../helpers/frames.js';
import { NODE_BIN, ROOT } from '../helpers/paths.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const noCompiler = compilerMissing();
if (noCompiler !== undefined) console.warn(`native pump cases skipped: ${noCompiler}`);

const cleanups = cleanupAfterEach();

interface Gateway {
  readonly port: number;
  readonly ended: Record<string, unknown>[];
  readonly child: ChildProcess;
  /** The native pump's counters (null for the JS pump). */
  counters(): Promise<number[] | null>;
}

/** The bench gateway from the sources, with `pump` and per-direction `limits`; ended tunnels come over IPC. */
async function startGateway(mode: string[], backendPort: number, limits: object = {}): Promise<Gateway> {
  const child = spawn(
    NODE_BIN,
    [
      '--import',
      join(ROOT, 'test', 'helpers', 'ts-hooks.ts'),
      join(ROOT, 'bench', 'native', 'gateway.ts'),
      '--backend',
      String(backendPort),
      ...mode,
      '--limits',
      JSON.stringify(limits),
      '--report',
    ],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  cleanups.push(() => {
    child.kill('SIGKILL');
  });
  const ended: Record<string, unknown>[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    child.on('message', (m: { port?: number; ended?: Record<string, unknown> }) => {
      if (m.port !== undefined) resolve(m.port);
      if (m.ended !== undefined) ended.push(m.ended);
    });
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
  });
  const counters = () =>
    new Promise<number[] | null>((resolve) => {
      const onMessage = (m: { counters?: number[] | null }) => {
        if (m.counters === undefined) return;
        child.off('message', onMessage);
        resolve(m.counters);
      };
      child.on('message', onMessage);
      child.send('counters');
    });
  return { port, ended, child, counters };
}

/** A backend that switches protocols properly and keeps every byte it gets after its 101; `peer()` is its socket. */
async function switchingBackend(): Promise<{ backend: RawBackend; peer: () => Socket | undefined }> {
  let socket: Socket | undefined;
  const backend = await startRawBackend((request, s) => {
    socket = s;
    const key = /sec-websocket-key: *(\S+)/i.exec(request)?.[1] ?? '';
    return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`;
  });
  cleanups.push(() => backend.close());
  return { backend, peer: () => socket };
}

/** What the backend received after the request head on its only connection. */
function afterRequest(backend: RawBackend): Buffer {
  const all = Buffer.concat(backend.received[0] ?? []);
  const end = all.indexOf('\r\n\r\n');
  return end < 0 ? Buffer.alloc(0) : all.subarray(end + 4);
}

async function client(port: number) {
  const res = await rawUpgrade(port);
  expect(res.status).toBe(101);
  const chunks: Buffer[] = [res.rest];
  res.socket.on('data', (c: Buffer) => chunks.push(c));
  res.socket.on('error', () => {});
  res.socket.resume();
  cleanups.push(() => res.socket.destroy());
  const closed = new Promise<void>((resolve) => res.socket.once('close', () => resolve()));
  return { socket: res.socket, received: () => Buffer.concat(chunks), closed };
}

/** Writes `bytes` in pieces cut at random offsets, a tick apart, so headers straddle reads. */
async function writeSplit(socket: Socket, bytes: Buffer): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    const n = Math.min(bytes.length - at, 1 + Math.floor(Math.random() * 3000));
    socket.write(bytes.subarray(at, at + n));
    at += n;
    if (Math.random() < 0.3) await delay(1);
  }
}

const PUMPS = [
  { pump: 'js', mode: ['--pump', 'js'], skip: false },
  { pump: 'native', mode: ['--pump', 'native'], skip: noCompiler !== undefined },
  // Accept, upgrade and tunnel all native (pump.cc, "the native accept + upgrade path").
  { pump: 'native-accept', mode: ['--accept', 'native'], skip: noCompiler !== undefined },
  // Sockets native, the head's checks and the backend request in JS (wsgate's code): what differs is the handshake.
  {
    pump: 'native-accept-jsdecide',
    mode: ['--accept', 'native', '--decide', 'js'],
    skip: noCompiler !== undefined,
    only: ['bytes', 'close', 'refuse'],
  },
  // Payloads of 16 KiB or more spliced socket → pipe → socket (pump.cc, trySplice): what differs is large frames.
  {
    pump: 'native-splice',
    mode: ['--pump', 'native', '--splice', '16384'],
    skip: noCompiler !== undefined,
    only: ['bytes', '1009'],
  },
];

/** Stands in for `it` where a case does not apply to a variant. */
function notRegistered(..._case: unknown[]): void {}

beforeAll(() => {
  if (noCompiler === undefined) buildAddon();
}, 60_000);

describe.each(PUMPS)('bench gateway with the $pump pump', ({ mode, skip, only }: (typeof PUMPS)[number]) => {
  /**
   * `it` for case `key`: skipped without a compiler for a native variant (CI installs g++), and not registered at
   * all when the variant does not exercise that case (what differs is elsewhere, see PUMPS).
   */
  const caseFor = (key: string) => (only !== undefined && !only.includes(key) ? notRegistered : it.skipIf(skip));
  caseFor('bytes')(
    'forwards every byte unchanged both ways: split writes, 16- and 64-bit lengths, a stalled reader',
    async () => {
      const { backend, peer } = await switchingBackend();
      const gw = await startGateway(mode, backend.port);
      const c = await client(gw.port);
      await waitFor(() => peer() !== undefined);
      // §5.2 length encodings at their edges, a fragmented message with a ping inside (§5.4), all masked.
      const sizes = [0, 1, 125, 126, 65_535, 65_536, 300_000];
      const toBackend = Buffer.concat([
        ...sizes.map((n) => frame(2, randomBytes(n))),
        frame(1, 'frag', { fin: false }),
        frame(9, 'ping'),
        frame(0, 'mented'),
      ]);
      await writeSplit(c.socket, toBackend);
      await waitFor(() => afterRequest(backend).length >= toBackend.length, 10_000);
      expect(afterRequest(backend).equals(toBackend)).toBe(true);

      // Toward the client: 24 MiB in unmasked frames while the client does not read, so the kernel's buffers fill
      // and the pump must queue and stop reading; then the client reads again.
      c.socket.pause();
      const toClient = Buffer.concat(
        [...sizes, 1_000_000, ...Array(8).fill(2_900_000)].map((n) => frame(2, randomBytes(n), { masked: false })),
      );
      peer()?.write(toClient);
      await delay(300);
      c.socket.resume();
      await waitFor(() => c.received().length >= toClient.length, 10_000);
      expect(c.received().equals(toClient)).toBe(true);
      // The stall made the native pump queue what the kernel refused (the JS pump has no counter for it).
      const counters = await gw.counters();
      if (counters !== null) expect(counters[COUNTER.queuedBytes]).toBeGreaterThan(0);
      if (mode.includes('--splice')) expect(counters?.[COUNTER.splicedBytes]).toBeGreaterThan(1_000_000);
    },
  );

  caseFor('close')('passes a close handshake through and closes both connections (1000)', async () => {
    const { backend, peer } = await switchingBackend();
    const gw = await startGateway(mode, backend.port);
    const c = await client(gw.port);
    await waitFor(() => peer() !== undefined);
    const backendGot: Buffer[] = [];
    peer()?.on('data', (d: Buffer) => backendGot.push(d));
    c.socket.write(frame(8, Buffer.from([0x03, 0xe8])));
    await waitFor(() => closeCodeIn(Buffer.concat(backendGot)) === 1000);
    peer()?.end(frame(8, Buffer.from([0x03, 0xe8]), { masked: false }));
    await c.closed;
    expect(closeCodeIn(c.received())).toBe(1000);
    await waitFor(() => gw.ended.length === 1);
    expect(gw.ended[0]).toMatchObject({ reason: 'client_close_frame', initiator: 'client', closeCode: 1000 });
  });

  caseFor('1009')(
    'closes with 1009 a client message over maxMessageBytes, after forwarding the one before it',
    async () => {
      const { backend, peer } = await switchingBackend();
      const gw = await startGateway(mode, backend.port, { maxMessageBytes: 1000 });
      const c = await client(gw.port);
      await waitFor(() => peer() !== undefined);
      const fine = frame(2, randomBytes(1000));
      c.socket.write(Buffer.concat([fine, frame(2, randomBytes(1001))]));
      await c.closed;
      const fromProxy = parseFrames(c.received());
      expect(fromProxy.map((f) => f.opcode)).toEqual([8]);
      expect(closeCodeIn(c.received())).toBe(1009);
      // The backend got the fine frame byte for byte, then the proxy's close (1000: the backend did nothing wrong).
      await waitFor(() => closeCodeIn(afterRequest(backend).subarray(fine.length)) === 1000);
      expect(afterRequest(backend).subarray(0, fine.length).equals(fine)).toBe(true);
      await waitFor(() => gw.ended.length === 1);
      expect(gw.ended[0]).toMatchObject({ reason: 'message_too_big', initiator: 'proxy', closeCode: 1009 });
    },
  );

  caseFor('1008')('closes with 1008 a client over messagesPerSecond, at the frame that went over', async () => {
    const { backend, peer } = await switchingBackend();
    const gw = await startGateway(mode, backend.port, { messagesPerSecond: 5, burstMessages: 5 });
    const c = await client(gw.port);
    await waitFor(() => peer() !== undefined);
    const messages = Array.from({ length: 10 }, (_, i) => frame(1, `message ${i}`));
    c.socket.write(Buffer.concat(messages));
    await c.closed;
    expect(closeCodeIn(c.received())).toBe(1008);
    const five = Buffer.concat(messages.slice(0, 5));
    await waitFor(() => closeCodeIn(afterRequest(backend).subarray(five.length)) === 1000);
    expect(afterRequest(backend).subarray(0, five.length).equals(five)).toBe(true);
    await waitFor(() => gw.ended.length === 1);
    expect(gw.ended[0]).toMatchObject({ reason: 'limit:messages_per_second', closeCode: 1008 });
  });

  caseFor('1002')('closes with 1002 an unmasked client frame (§5.1), telling the backend 1011', async () => {
    const { backend, peer } = await switchingBackend();
    const gw = await startGateway(mode, backend.port);
    const c = await client(gw.port);
    await waitFor(() => peer() !== undefined);
    const fine = frame(1, 'fine');
    c.socket.write(Buffer.concat([fine, frame(1, 'bare', { masked: false })]));
    await c.closed;
    expect(closeCodeIn(c.received())).toBe(1002);
    await waitFor(() => closeCodeIn(afterRequest(backend).subarray(fine.length)) === 1011);
    await waitFor(() => gw.ended.length === 1);
    expect(gw.ended[0]).toMatchObject({ reason: 'violation:unmasked_client_frame', closeCode: 1002 });
  });

  caseFor('1002')('closes with 1002 a backend frame with a reserved opcode, telling the client 1014', async () => {
    const { backend, peer } = await switchingBackend();
    const gw = await startGateway(mode, backend.port);
    const c = await client(gw.port);
    await waitFor(() => peer() !== undefined);
    const backendGot: Buffer[] = [];
    peer()?.on('data', (d: Buffer) => backendGot.push(d));
    const ok = frame(2, 'ok', { masked: false });
    peer()?.write(Buffer.concat([ok, frame(3, 'reserved', { masked: false })]));
    await c.closed;
    // The frame before it went through; the offending frame did not; then the proxy's close.
    expect(c.received().subarray(0, ok.length).equals(ok)).toBe(true);
    expect(parseFrames(c.received()).map((f) => f.opcode)).toEqual([2, 8]);
    expect(closeCodeIn(c.received())).toBe(1014);
    await waitFor(() => closeCodeIn(Buffer.concat(backendGot)) === 1002);
    await waitFor(() => gw.ended.length === 1);
    expect(gw.ended[0]).toMatchObject({ reason: 'violation:reserved_opcode', closeCode: 1014 });
  });

  caseFor('cut')(
    'cuts the TCP connection without a close frame when the offending header straddles two reads',
    async () => {
      const { backend, peer } = await switchingBackend();
      const gw = await startGateway(mode, backend.port);
      const c = await client(gw.port);
      await waitFor(() => peer() !== undefined);
      const backendGot: Buffer[] = [];
      peer()?.on('data', (d: Buffer) => backendGot.push(d));
      // The bad frame's first byte went to the client with the frame before it: the stream toward the client is
      // mid-frame, so no close frame can follow there and the TCP close speaks for the proxy (tunnel.ts, sendClose).
      const ok = frame(2, 'ok', { masked: false });
      const bad = frame(3, 'reserved', { masked: false });
      peer()?.write(Buffer.concat([ok, bad.subarray(0, 1)]));
      // Only once those bytes reached the client (a fixed pause lets a loaded machine read both writes at once).
      await waitFor(() => c.received().length === ok.length + 1);
      peer()?.write(bad.subarray(1));
      await c.closed;
      expect(c.received().equals(Buffer.concat([ok, bad.subarray(0, 1)]))).toBe(true);
      await waitFor(() => closeCodeIn(Buffer.concat(backendGot)) === 1002);
    },
  );

  caseFor('1014')('tells the client 1014 when the backend connection is lost', async () => {
    const { backend, peer } = await switchingBackend();
    const gw = await startGateway(mode, backend.port);
    const c = await client(gw.port);
    await waitFor(() => peer() !== undefined);
    peer()?.destroy();
    await c.closed;
    expect(closeCodeIn(c.received())).toBe(1014);
    await waitFor(() => gw.ended.length === 1);
    expect(gw.ended[0]).toMatchObject({ reason: 'backend_closed', initiator: 'backend', closeCode: 1014 });
  });

  caseFor('refuse')(
    'refuses a wrong Sec-WebSocket-Version with 426 and a missing Upgrade with 400 (§4.2.2)',
    async () => {
      const { backend } = await switchingBackend();
      const gw = await startGateway(mode, backend.port);
      const wrong = await rawUpgrade(gw.port, { headers: { 'Sec-WebSocket-Version': '8' } });
      cleanups.push(() => wrong.socket.destroy());
      expect(wrong.status).toBe(426);
      expect(wrong.headers['sec-websocket-version']).toBe('13');
      const plain = await rawUpgrade(gw.port, { headers: { Upgrade: '' } });
      cleanups.push(() => plain.socket.destroy());
      expect(plain.status).toBe(400);
      expect(backend.connections).toBe(0);
    },
  );
});
