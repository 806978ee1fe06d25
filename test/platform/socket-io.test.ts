import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  detach,
  directWriteFd,
  READ_BUFFER_BYTES,
  readDirect,
  SOCKET_IO_MODE,
  writeChunk,
} from '../../src/platform/socket-io.js';
import { startEchoBackend } from '../helpers/backends.js';
import { makeCert } from '../helpers/certs.js';
import { spawnGateway } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { simpleConfig, startGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

/** A connected loopback pair; the server side is not read until the test says so (pauseOnConnect). */
async function socketPair(): Promise<{ client: Socket; server: Socket }> {
  const listener: Server = createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => listener.once('connection', r));
  const client = connect((listener.address() as AddressInfo).port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  const server = await accepted;
  listener.close();
  cleanups.push(() => {
    client.destroy();
    server.destroy();
  });
  return { client, server };
}

/** Reads `socket` through the shared buffer; resolves with a copy of the first read and its buffer. */
function firstDirectRead(socket: Socket): Promise<{ bytes: Buffer; buffer: Buffer }> {
  return new Promise((resolve) => {
    const ok = readDirect(socket, (nread, buffer) =>
      resolve({ bytes: Buffer.from(buffer.subarray(0, nread)), buffer }),
    );
    expect(ok).toBe(true);
    socket.resume();
  });
}

function sha256(chunks: readonly Buffer[]): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}

describe('direct reads', () => {
  it('deliver a plain socket’s bytes through the one shared buffer, not through data events', async () => {
    expect(SOCKET_IO_MODE).toBe('direct');
    const a = await socketPair();
    const b = await socketPair();
    let dataEvents = 0;
    a.server.on('data', () => dataEvents++);
    const readA = firstDirectRead(a.server);
    a.client.write('hello');
    const first = await readA;
    expect(first.bytes.toString()).toBe('hello');
    expect(first.buffer.length).toBe(READ_BUFFER_BYTES);
    const readB = firstDirectRead(b.server);
    b.client.write('world');
    const second = await readB;
    expect(second.bytes.toString()).toBe('world');
    expect(second.buffer).toBe(first.buffer);
    expect(dataEvents).toBe(0);
  });

  it('still report the peer’s FIN as end', async () => {
    const { client, server } = await socketPair();
    const ended = new Promise((r) => server.once('end', r));
    readDirect(server, () => {});
    server.resume();
    client.end();
    await ended;
    expect(server.readableEnded).toBe(true);
  });

  it('work for TLS sockets (plaintext), which are never written directly', async () => {
    const cert = makeCert('socket-io.test');
    // The server answers only once asked, so nothing arrives before the client switched to direct reads.
    const server = createTlsServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (s) =>
      s.once('data', () => s.end('hi')),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const socket: TLSSocket = tlsConnect({
      port: (server.address() as AddressInfo).port,
      host: '127.0.0.1',
      rejectUnauthorized: false,
    });
    cleanups.push(() => socket.destroy());
    await new Promise((r) => socket.once('secureConnect', r));
    // Its handle does report the TCP descriptor beneath: writing there would bypass the encryption.
    expect(directWriteFd(socket)).toBe(-1);
    const read = firstDirectRead(socket);
    socket.write('go');
    const { bytes } = await read;
    expect(bytes.toString()).toBe('hi');
  });
});

describe('writeChunk', () => {
  it('writes straight to the kernel while nothing is queued', async () => {
    const { client, server } = await socketPair();
    const fd = directWriteFd(client);
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(writeChunk(client, fd, Buffer.from('abc'))).toBe(true);
    // Nothing went through the Writable: the kernel took it all at once.
    expect(client.writableLength).toBe(0);
    expect(client.bytesWritten).toBe(0);
    server.resume();
    const [got] = (await new Promise((r) => server.once('data', (d) => r([d])))) as Buffer[];
    expect(got?.toString()).toBe('abc');
  });

  it('queues a copy of what the kernel refused when the bytes view the shared read buffer, and keeps order', async () => {
    const feed = await socketPair();
    const { client, server } = await socketPair();
    const fd = directWriteFd(client);
    // Fill the kernel: the peer does not read until the end.
    const filler = randomBytes(256 * 1024);
    const sent: Buffer[] = [];
    let guard = 0;
    while (client.writableLength === 0 && guard++ < 10_000) {
      writeChunk(client, fd, filler);
      sent.push(filler);
    }
    expect(client.writableLength).toBeGreaterThan(0);
    // A chunk that lives in the shared read buffer, written while the queue is non-empty...
    const readFeed = firstDirectRead(feed.server);
    feed.client.write('SHARED-BYTES');
    const { bytes, buffer } = await readFeed;
    expect(bytes.toString()).toBe('SHARED-BYTES');
    writeChunk(client, fd, buffer.subarray(0, bytes.length));
    sent.push(bytes);
    // ...then the shared buffer is overwritten, as the next read would: the queued bytes must not change.
    buffer.fill(0x21, 0, bytes.length);
    const received: Buffer[] = [];
    let total = 0;
    const want = sent.reduce((n, b) => n + b.length, 0);
    server.on('data', (d: Buffer) => {
      received.push(d);
      total += d.length;
    });
    server.resume();
    await waitFor(() => total === want, 10_000);
    expect(sha256(received)).toBe(sha256(sent));
  });

  it('destroys the socket with the error when the peer is gone', async () => {
    const { client, server } = await socketPair();
    const fd = directWriteFd(client);
    const failed = new Promise<Error>((r) => client.once('error', r));
    server.resetAndDestroy();
    // The first write after a reset may still be accepted; keep writing until the kernel reports it.
    await waitFor(() => {
      writeChunk(client, fd, Buffer.from('x'));
      return client.destroyed;
    }, 5000);
    expect(((await failed) as NodeJS.ErrnoException).code).toMatch(/EPIPE|ECONNRESET/);
  });

  it('detach copies only views of the shared read buffer', async () => {
    const own = Buffer.from('mine');
    expect(detach(own)).toBe(own);
    const { client, server } = await socketPair();
    const read = firstDirectRead(server);
    client.write('shared');
    const { buffer } = await read;
    const view = buffer.subarray(0, 6);
    const copy = detach(view);
    expect(copy).not.toBe(view);
    expect(copy.buffer).not.toBe(buffer.buffer);
    expect(copy.toString()).toBe('shared');
  });
});

describe('tunnels on the shared read buffer', () => {
  it('keep every byte of many ws:// and wss:// connections pushing into slow readers at once', async () => {
    const backend = await startEchoBackend('b', { welcome: false });
    cleanups.push(() => backend.close());
    const gw = await startGateway(
      simpleConfig([backend.url], {
        listeners: [
          { name: 'public', address: '127.0.0.1', port: 0 },
          { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
        ],
      }),
    );
    cleanups.push(() => gw.stop());
    const CLIENTS = 8;
    const MESSAGES = 160;
    const SIZE = 64 * 1024;
    let maxQueued = 0;
    const sampler = setInterval(() => {
      for (const t of gw.gateway.tunnels)
        maxQueued = Math.max(maxQueued, t.client.writableLength + t.backend.writableLength);
    }, 2);
    cleanups.push(() => clearInterval(sampler));
    const runs = Array.from({ length: CLIENTS }, async (_, i) => {
      // Every other client over TLS: its reads are direct too, its writes go through TLS.
      const url = i % 2 === 0 ? `ws://127.0.0.1:${gw.port}/` : `wss://127.0.0.1:${gw.tlsPort}/`;
      const ws = new WebSocket(url, { headers: { 'x-user-id': `u${i}` }, rejectUnauthorized: false });
      cleanups.push(() => ws.terminate());
      await new Promise((r) => ws.once('open', r));
      const sent: Buffer[] = Array.from({ length: MESSAGES }, () => randomBytes(SIZE));
      const received: Buffer[] = [];
      ws.on('message', (d: Buffer) => received.push(d));
      // Everything at once, read nothing for a while: the proxy's writes to this client hit a full kernel buffer.
      ws.pause();
      for (const m of sent) ws.send(m);
      await new Promise((r) => setTimeout(r, 500));
      ws.resume();
      await waitFor(() => received.length === MESSAGES, 20_000);
      return { sent: sha256(sent), received: sha256(received) };
    });
    const results = await Promise.all(runs);
    for (const r of results) expect(r.received).toBe(r.sent);
    // The test is only worth something if the copy-on-backpressure path ran.
    expect(maxQueued).toBeGreaterThan(0);
  });

  it('work the same on Node streams (WSGATE_SOCKET_IO=stream), which the gateway says at start', async () => {
    const backend = await startEchoBackend('b', { welcome: false });
    cleanups.push(() => backend.close());
    const child = await spawnGateway(simpleConfig([backend.url]), { env: { WSGATE_SOCKET_IO: 'stream' } });
    cleanups.push(() => child.stop());
    const ws = new WebSocket(`ws://127.0.0.1:${child.port}/`);
    cleanups.push(() => ws.terminate());
    await new Promise((r) => ws.once('open', r));
    const payload = randomBytes(200_000);
    const echoed = new Promise<Buffer>((r) => ws.once('message', r));
    ws.send(payload);
    expect((await echoed).equals(payload)).toBe(true);
    const startLine = child.stdout.find((l) => l.includes('"socketIo"'));
    expect(startLine).toContain('"socketIo":"stream"');
  });
});
