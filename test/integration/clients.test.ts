/// <reference lib="dom" />
// What real WebSocket clients (Debian's Chromium through playwright-core, the `ws` package) and a real
// `ws` backend see through wsgate, end to end: permessage-deflate both ways (RFC 7692), subprotocols (RFC 6455
// §4.2.2, §11.3.4), close codes and reasons each side hears (§7.4), cookies/Origin, the Origin allowlist,
// and frames of every length class (§5.2).
// biome-ignore-all lint/suspicious/noDocumentCookie: the pages set cookies the way a site's script does, to see them reach the backend

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { listenFor } from '../helpers/backends.js';
import { makeCert } from '../helpers/certs.js';
import { CHROMIUM, describeBrowser, launchChromium } from '../helpers/chromium.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { closeCodeIn, frame, parseFrames } from '../helpers/frames.js';
import { type ConfigObject, routeConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { delay, waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

let browser: Browser | undefined;
beforeAll(async () => {
  browser = await launchChromium(['--ignore-certificate-errors']);
}, 60_000);
afterAll(async () => {
  await browser?.close();
});

// ---------------------------------------------------------------------------------------------------------------
// A `ws` backend that compresses everything (threshold 0), picks subprotocol 'b' when offered, records every frame
// header it receives and sends (to prove RSV1 really crossed the proxy), and obeys a few text commands.

interface FrameHead {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  length: number;
  masked: boolean;
}

/** Streams frame headers out of a byte stream (header bytes only; payload skipped by count). */
class HeadTap {
  readonly frames: FrameHead[] = [];
  private buf = Buffer.alloc(0);
  private skip = 0;
  push(chunk: Buffer): void {
    let data = chunk;
    if (this.skip > 0) {
      const n = Math.min(this.skip, data.length);
      this.skip -= n;
      data = data.subarray(n);
    }
    this.buf = Buffer.concat([this.buf, data]);
    for (;;) {
      if (this.buf.length < 2) return;
      const b0 = this.buf[0] as number;
      const b1 = this.buf[1] as number;
      let len = b1 & 0x7f;
      let p = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        p = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        p = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      if (masked) p += 4;
      if (this.buf.length < p) return;
      this.frames.push({ fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, length: len, masked });
      const rest = this.buf.subarray(p);
      if (rest.length >= len) {
        this.buf = Buffer.from(rest.subarray(len));
      } else {
        this.skip = len - rest.length;
        this.buf = Buffer.alloc(0);
        return;
      }
    }
  }
}

interface Backend {
  url: string;
  port: number;
  requests: IncomingMessage[];
  sockets: WebSocket[];
  /** Frame headers the backend read from wsgate (client → backend). */
  inbound: HeadTap;
  /** Frame headers the backend wrote to wsgate (backend → client). */
  outbound: HeadTap;
  closes: { code: number; reason: string }[];
  close(): Promise<void>;
}

/** The backend's plain HTTP answer: an app page that sets a session cookie (served to browsers through wsgate). */
function appPage(req: IncomingMessage, res: import('node:http').ServerResponse): void {
  res.writeHead(200, {
    'Content-Type': 'text/html',
    'Set-Cookie': 'sid=42; Path=/; HttpOnly; SameSite=Strict',
    'X-Seen-Proto': String(req.headers['x-forwarded-proto'] ?? ''),
  });
  res.end('<!doctype html><title>app</title>');
}

async function startBackend(
  options: { deflate?: boolean; protocol?: (offered: Set<string>) => string | false; tls?: boolean } = {},
): Promise<Backend> {
  const server = options.tls
    ? (() => {
        const c = makeCert('backend.review');
        return createHttpsServer({ cert: readFileSync(c.cert), key: readFileSync(c.key) }, appPage);
      })()
    : createHttpServer(appPage);
  const wss = new WebSocketServer({
    server,
    maxPayload: 64 * 1024 * 1024,
    perMessageDeflate: (options.deflate ?? true) ? { threshold: 0 } : false,
    handleProtocols: (offered) => (options.protocol ? options.protocol(offered) : offered.has('b') ? 'b' : false),
  });
  const b: Backend = {
    url: '',
    port: 0,
    requests: [],
    sockets: [],
    inbound: new HeadTap(),
    outbound: new HeadTap(),
    closes: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  wss.on('connection', (ws, req) => {
    b.requests.push(req);
    b.sockets.push(ws);
    ws.on('error', () => {});
    const raw = (ws as unknown as { _socket: Socket })._socket;
    raw.on('data', (c: Buffer) => b.inbound.push(c));
    const write = raw.write.bind(raw) as (...args: unknown[]) => boolean;
    (raw as unknown as { write: (...args: unknown[]) => boolean }).write = (...args: unknown[]) => {
      const chunk = args[0];
      if (Buffer.isBuffer(chunk)) b.outbound.push(chunk);
      else if (chunk instanceof Uint8Array) b.outbound.push(Buffer.from(chunk));
      return write(...args);
    };
    ws.on('close', (code, reason) => b.closes.push({ code, reason: reason.toString() }));
    ws.on('message', (data: Buffer, isBinary) => {
      const text = isBinary ? '' : data.toString();
      if (text.startsWith('cmd:close:')) {
        const [, , code, reason] = text.split(':');
        ws.close(Number(code), reason);
      } else if (text === 'cmd:kill') {
        raw.destroy();
      } else if (text.startsWith('cmd:frag:')) {
        // One compressed message in three fragments (RFC 7692 §6.1: RSV1 on the first only).
        const part = text.slice('cmd:frag:'.length);
        ws.send(part, { fin: false });
        ws.send(part, { fin: false });
        ws.send(part, { fin: true });
      } else if (text.startsWith('cmd:big:')) {
        ws.send(randomBytes(Number(text.slice('cmd:big:'.length))), { binary: true });
      } else if (text === 'cmd:headers') {
        ws.send(JSON.stringify({ cookie: req.headers.cookie ?? null, origin: req.headers.origin ?? null }));
      } else {
        ws.send(data, { binary: isBinary });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  b.url = `${options.tls ? 'wss' : 'ws'}://127.0.0.1:${port}`;
  b.port = port;
  cleanups.push(() => b.close());
  return b;
}

async function gateway(backends: string[], route: ConfigObject = {}, extra: ConfigObject = {}): Promise<TestGateway> {
  const gw = await startGateway(routeConfig(backends, route, extra));
  cleanups.push(() => gw.stop());
  return gw;
}

/** A TLS listener with the generated self-signed certificate beside the plain one. */
function withTls(extra: ConfigObject = {}): ConfigObject {
  return {
    listeners: [
      { name: 'public', address: '127.0.0.1', port: 0 },
      { name: 'secure', address: '127.0.0.1', port: 0, tls: {} },
    ],
    ...extra,
  };
}

/** A tiny page server: every path answers an empty HTML page (so the page has a real http origin). */
async function pageServer(): Promise<{ origin: string; port: number }> {
  const server: Server = createHttpServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>t</title>');
  });
  const port = await listenFor(cleanups, server);
  return { origin: `http://127.0.0.1:${port}`, port };
}

async function newPage(url?: string): Promise<Page> {
  if (!browser) throw new Error(`${CHROMIUM} is missing`);
  const context: BrowserContext = await browser.newContext({ ignoreHTTPSErrors: true });
  cleanups.push(() => context.close());
  const page = await context.newPage();
  await page.goto(url ?? (await pageServer()).origin);
  return page;
}

/** Opens a WebSocket in the page and keeps it as window.ws; resolves with what onopen saw, or the failure. */
async function openInPage(
  page: Page,
  url: string,
  protocols?: string[],
): Promise<{ open: boolean; protocol: string; extensions: string; code?: number; reason?: string }> {
  return page.evaluate(
    ({ url, protocols }) =>
      new Promise((resolve) => {
        const w = window as unknown as Record<string, unknown>;
        // Not the bare identifier: vitest rewrites it to the imported `ws` module, which the page does not have.
        const PageWebSocket = (globalThis as unknown as { WebSocket: typeof globalThis.WebSocket }).WebSocket;
        const ws = protocols ? new PageWebSocket(url, protocols) : new PageWebSocket(url);
        ws.binaryType = 'arraybuffer';
        w.ws = ws;
        w.inbox = [] as unknown[];
        w.wsClosed = new Promise((done) => {
          ws.onclose = (e) => {
            w.closeEvent = { code: e.code, reason: e.reason, wasClean: e.wasClean };
            done(w.closeEvent);
          };
        });
        ws.onmessage = (e) => (w.inbox as unknown[]).push(e.data);
        ws.onopen = () => resolve({ open: true, protocol: ws.protocol, extensions: ws.extensions });
        ws.onerror = () => {
          /* onclose follows */
        };
        (w.wsClosed as Promise<{ code: number; reason: string }>).then((c) => {
          if (ws.readyState === 3)
            resolve({ open: false, protocol: '', extensions: '', code: c.code, reason: c.reason });
        });
      }),
    { url, protocols },
  );
}

/** The next close event of window.ws (within `ms`). */
function closeEventInPage(page: Page, ms = 8000): Promise<{ code: number; reason: string; wasClean: boolean }> {
  return page.evaluate(
    (ms) =>
      Promise.race([
        (window as unknown as { wsClosed: Promise<{ code: number; reason: string; wasClean: boolean }> }).wsClosed,
        new Promise<{ code: number; reason: string; wasClean: boolean }>((r) =>
          setTimeout(() => r({ code: -1, reason: 'no close event', wasClean: false }), ms),
        ),
      ]),
    ms,
  );
}

describeBrowser('Chromium through wsgate: permessage-deflate and subprotocols', () => {
  for (const scheme of ['ws', 'wss'] as const) {
    it(`${scheme}://: deflate negotiated, subprotocol 'b' chosen, compressed text/binary small/large/fragmented echo intact`, async () => {
      const b = await startBackend();
      const gw = await gateway([b.url], {}, scheme === 'wss' ? withTls() : {});
      const port = scheme === 'wss' ? gw.tlsPort : gw.port;
      const page = await newPage();
      const opened = await openInPage(page, `${scheme}://127.0.0.1:${port}/chat`, ['a', 'b']);
      expect(opened.open).toBe(true);
      expect(opened.protocol).toBe('b');
      expect(opened.extensions).toContain('permessage-deflate');
      // Chromium offered both subprotocols and permessage-deflate; the backend saw the offer as sent.
      expect(b.requests[0]?.headers['sec-websocket-protocol']).toBe('a, b');
      expect(b.requests[0]?.headers['sec-websocket-extensions']).toContain('permessage-deflate');

      const result = await page.evaluate(async () => {
        const w = window as unknown as { ws: WebSocket; inbox: unknown[] };
        const next = async (): Promise<unknown> => {
          const start = performance.now();
          while (w.inbox.length === 0) {
            if (performance.now() - start > 10_000) throw new Error('timeout waiting for a message');
            await new Promise((r) => setTimeout(r, 5));
          }
          return w.inbox.shift();
        };
        const rand = (n: number) => {
          const a = new Uint8Array(n);
          for (let i = 0; i < n; i += 65536) crypto.getRandomValues(a.subarray(i, Math.min(n, i + 65536)));
          return a;
        };
        const sameBytes = (x: ArrayBuffer, y: Uint8Array) => {
          const a = new Uint8Array(x);
          if (a.length !== y.length) return false;
          for (let i = 0; i < a.length; i++) if (a[i] !== y[i]) return false;
          return true;
        };
        const out: Record<string, boolean> = {};
        const smallText = 'hello, compressed world';
        w.ws.send(smallText);
        out.smallText = (await next()) === smallText;
        // 1.5 MiB of text: partly compressible (words), partly not (random hex).
        let big = '';
        const hex = Array.from(rand(400_000), (v) => v.toString(16).padStart(2, '0')).join('');
        while (big.length < 1_600_000)
          big += `message ${big.length} ${hex.slice(big.length % 1000, (big.length % 1000) + 64)} `;
        big += hex;
        w.ws.send(big);
        out.bigText = (await next()) === big;
        const smallBin = rand(100);
        w.ws.send(smallBin);
        out.smallBinary = sameBytes((await next()) as ArrayBuffer, smallBin);
        const bigBin = rand(1_200_000);
        w.ws.send(bigBin);
        out.bigBinary = sameBytes((await next()) as ArrayBuffer, bigBin);
        // Size-class boundaries (RFC 6455 §5.2) with random (incompressible) bytes.
        for (const n of [0, 125, 126, 65535, 65536]) {
          const d = rand(n);
          w.ws.send(d);
          out[`binary${n}`] = sameBytes((await next()) as ArrayBuffer, d);
        }
        // A fragmented compressed message from the backend.
        w.ws.send('cmd:frag:fragment-');
        out.fragmented = (await next()) === 'fragment-fragment-fragment-';
        return out;
      });
      expect(result).toEqual({
        smallText: true,
        bigText: true,
        smallBinary: true,
        bigBinary: true,
        binary0: true,
        binary125: true,
        binary126: true,
        binary65535: true,
        binary65536: true,
        fragmented: true,
      });
      // RSV1 really crossed wsgate both ways: compressed data frames in, compressed data frames out,
      // and a fragmented compressed message with RSV1 on its first frame only (RFC 7692 §6.1).
      expect(b.inbound.frames.some((f) => f.rsv1 && f.opcode === 1)).toBe(true);
      expect(b.inbound.frames.some((f) => f.rsv1 && f.opcode === 2)).toBe(true);
      expect(b.outbound.frames.some((f) => f.rsv1 && f.opcode === 2 && f.length > 1_000_000)).toBe(true);
      const fragIdx = b.outbound.frames.findIndex((f) => f.opcode === 1 && !f.fin);
      expect(fragIdx).toBeGreaterThanOrEqual(0);
      expect(b.outbound.frames[fragIdx]?.rsv1).toBe(true);
      expect(b.outbound.frames[fragIdx + 1]).toMatchObject({ opcode: 0, rsv1: false });
      expect(await gw.metrics()).not.toMatch(/wsgate_protocol_violations_total\{[^}]*\} [1-9]/);

      await page.evaluate(() => (window as unknown as { ws: WebSocket }).ws.close(1000, 'done'));
      expect(await closeEventInPage(page)).toEqual({ code: 1000, reason: 'done', wasClean: true });
      await waitFor(() => b.closes.length === 1);
      expect(b.closes[0]).toEqual({ code: 1000, reason: 'done' });
    });
  }

  it('subprotocol: a backend that picks none leaves protocol empty; a backend that picks the first gets it', async () => {
    const b = await startBackend({ protocol: (offered) => ([...offered][0] as string) ?? false });
    const gw = await gateway([b.url]);
    const page = await newPage();
    const opened = await openInPage(page, `ws://127.0.0.1:${gw.port}/`, ['x-first', 'x-second']);
    expect(opened).toMatchObject({ open: true, protocol: 'x-first' });
    const b2 = await startBackend({ protocol: () => false });
    const gw2 = await gateway([b2.url]);
    const page2 = await newPage();
    const opened2 = await openInPage(page2, `ws://127.0.0.1:${gw2.port}/`);
    expect(opened2).toMatchObject({ open: true, protocol: '' });
  });
});

for (const scheme of ['ws', 'wss'] as const) {
  describeBrowser(`Chromium through wsgate (${scheme}://): close codes the page sees`, () => {
    const tls = scheme === 'wss' ? withTls() : {};
    const at = (gw: TestGateway) => `${scheme}://127.0.0.1:${scheme === 'wss' ? gw.tlsPort : gw.port}/`;
    it('the backend closes with 4001 "srv": the page sees 4001 "srv", clean', async () => {
      const b = await startBackend();
      const gw = await gateway([b.url], {}, tls);
      const page = await newPage();
      expect((await openInPage(page, at(gw))).open).toBe(true);
      await page.evaluate(() => (window as unknown as { ws: WebSocket }).ws.send('cmd:close:4001:srv'));
      expect(await closeEventInPage(page)).toEqual({ code: 4001, reason: 'srv', wasClean: true });
    });

    it('the page closes with 4000 "bye": the backend sees 4000 "bye" and the page a clean close', async () => {
      const b = await startBackend();
      const gw = await gateway([b.url], {}, tls);
      const page = await newPage();
      expect((await openInPage(page, at(gw))).open).toBe(true);
      await page.evaluate(() => (window as unknown as { ws: WebSocket }).ws.close(4000, 'bye'));
      expect(await closeEventInPage(page)).toEqual({ code: 4000, reason: 'bye', wasClean: true });
      await waitFor(() => b.closes.length === 1);
      expect(b.closes[0]).toEqual({ code: 4000, reason: 'bye' });
    });

    it('the backend connection is destroyed without a close frame: the page sees 1014 (docs/errors.md close codes)', async () => {
      const b = await startBackend();
      const gw = await gateway([b.url], {}, tls);
      const page = await newPage();
      expect((await openInPage(page, at(gw))).open).toBe(true);
      await page.evaluate(() => (window as unknown as { ws: WebSocket }).ws.send('cmd:kill'));
      const ev = await closeEventInPage(page);
      expect(ev.code).toBe(1014);
      expect(ev.reason).toBe('backend connection lost');
    });

    it('wsgate drains: the page sees 1001', async () => {
      const b = await startBackend();
      const gw = await startGateway(routeConfig([b.url], {}, tls));
      const page = await newPage();
      expect((await openInPage(page, at(gw))).open).toBe(true);
      const stopping = gw.stop();
      const ev = await closeEventInPage(page);
      await stopping;
      expect(ev.code).toBe(1001);
      expect(ev.wasClean).toBe(true);
      await waitFor(() => b.closes.length === 1);
      expect(b.closes[0]?.code).toBe(1001);
    });

    it('a message over maxMessageBytes from the page (compressed, incompressible): the page sees 1009, the backend 1000', async () => {
      const b = await startBackend();
      const gw = await gateway([b.url], { limits: { perConnection: { maxMessageBytes: '64KiB' } } }, tls);
      const page = await newPage();
      expect((await openInPage(page, at(gw))).open).toBe(true);
      await page.evaluate(() => {
        const a = new Uint8Array(200_000);
        for (let i = 0; i < a.length; i += 65536) crypto.getRandomValues(a.subarray(i, Math.min(a.length, i + 65536)));
        (window as unknown as { ws: WebSocket }).ws.send(a);
      });
      const ev = await closeEventInPage(page);
      expect(ev.code).toBe(1009);
      await waitFor(() => b.closes.length === 1);
      expect(b.closes[0]?.code).toBe(1000);
    });

    it('a message over maxMessageBytes from the backend: the page sees 1014, the backend 1009', async () => {
      const b = await startBackend();
      const gw = await gateway([b.url], { limits: { perConnection: { maxMessageBytes: '64KiB' } } }, tls);
      const page = await newPage();
      expect((await openInPage(page, at(gw))).open).toBe(true);
      await page.evaluate(() => (window as unknown as { ws: WebSocket }).ws.send('cmd:big:200000'));
      const ev = await closeEventInPage(page);
      expect(ev.code).toBe(1014);
      await waitFor(() => b.closes.length === 1);
      expect(b.closes[0]?.code).toBe(1009);
    });

    it('a burst over messagesPerSecond: the page sees 1008', async () => {
      const b = await startBackend();
      const gw = await gateway([b.url], { limits: { perConnection: { messagesPerSecond: 5, burstMessages: 5 } } }, tls);
      const page = await newPage();
      expect((await openInPage(page, at(gw))).open).toBe(true);
      await page.evaluate(() => {
        for (let i = 0; i < 50; i++) (window as unknown as { ws: WebSocket }).ws.send(`m${i}`);
      });
      const ev = await closeEventInPage(page);
      expect(ev.code).toBe(1008);
      // wasClean is true in ~24 of 25 runs; the odd run reports false (seen in Chromium only, never with a raw client; cause unknown), not asserted here.
    });
  });
}

describeBrowser('Chromium through wsgate: cookies and Origin', () => {
  it("the page's cookie and Origin reach the backend", async () => {
    const b = await startBackend();
    const gw = await gateway([b.url]);
    const site = await pageServer();
    const page = await newPage(site.origin);
    await page.evaluate(() => {
      document.cookie = 'session=abc123; path=/';
      document.cookie = 'room=blue; path=/';
    });
    expect((await openInPage(page, `ws://127.0.0.1:${gw.port}/chat`)).open).toBe(true);
    const seen = await page.evaluate(async () => {
      const w = window as unknown as { ws: WebSocket; inbox: unknown[] };
      w.ws.send('cmd:headers');
      while (w.inbox.length === 0) await new Promise((r) => setTimeout(r, 5));
      return JSON.parse(w.inbox.shift() as string);
    });
    expect(seen.origin).toBe(site.origin);
    expect(seen.cookie).toContain('session=abc123');
    expect(seen.cookie).toContain('room=blue');
  });

  it('the route allowlist admits the listed origin and refuses a page from another origin (403): the page sees 1006', async () => {
    const b = await startBackend();
    const allowed = await pageServer();
    const other = await pageServer();
    const gw = await gateway([b.url], { origins: [allowed.origin] });
    const good = await newPage(allowed.origin);
    expect((await openInPage(good, `ws://127.0.0.1:${gw.port}/`)).open).toBe(true);
    const bad = await newPage(other.origin);
    const refused = await openInPage(bad, `ws://127.0.0.1:${gw.port}/`);
    expect(refused).toMatchObject({ open: false, code: 1006 });
    expect(b.requests.length).toBe(1);
    const text = await gw.metrics();
    expect(text).toMatch(/wsgate_handshake_rejections_total\{[^}]*status="403"[^}]*\} 1/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The `ws` package as a client.

async function wsClient(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, options);
  ws.on('error', () => {});
  cleanups.push(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
    ws.once('error', reject);
  });
  return ws;
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: Buffer, isBinary) => resolve({ data, isBinary })));
}

describe('the ws package as a client through wsgate', () => {
  for (const deflate of [true, false]) {
    it(`perMessageDeflate ${deflate ? 'on' : 'off'}: every size class both ways, byte-exact`, async () => {
      const b = await startBackend();
      const gw = await gateway([b.url]);
      const ws = await wsClient(`ws://127.0.0.1:${gw.port}/`, { perMessageDeflate: deflate });
      expect(ws.extensions.includes('permessage-deflate')).toBe(deflate);
      for (const n of [0, 1, 125, 126, 127, 65535, 65536, 65537, 2 * 1024 * 1024]) {
        const payload = randomBytes(n);
        const back = nextMessage(ws);
        ws.send(payload, { binary: true });
        const got = await back;
        expect(got.isBinary).toBe(true);
        expect(got.data.equals(payload)).toBe(true);
      }
      expect(b.inbound.frames.some((f) => f.rsv1)).toBe(deflate);
      ws.close(1000);
      await waitFor(() => b.closes.length === 1);
    });
  }

  // `ws` stops reading once its receiver fails, so its own 'close' event says 1006 even talking to a `ws` server
  // directly (checked by hand); what matters here is that its 1009 close frame reaches the backend.
  it('client maxPayload smaller than a backend message: the client sends 1009 and the backend hears 1009', async () => {
    const b = await startBackend({ deflate: false });
    const gw = await gateway([b.url]);
    const ws = await wsClient(`ws://127.0.0.1:${gw.port}/`, { perMessageDeflate: false, maxPayload: 1000 });
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.send('cmd:big:5000');
    expect([1006, 1009]).toContain(await closed);
    await waitFor(() => b.closes.length === 1);
    expect(b.closes[0]?.code).toBe(1009);
  });

  it('client maxPayload with deflate: an inflated message over maxPayload closes 1009 end to end', async () => {
    const b = await startBackend();
    const gw = await gateway([b.url]);
    const ws = await wsClient(`ws://127.0.0.1:${gw.port}/`, { perMessageDeflate: true, maxPayload: 1000 });
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    // Highly compressible: far under 1000 bytes on the wire, 100 KB inflated.
    ws.send('x'.repeat(900));
    await nextMessage(ws);
    b.sockets[0]?.send('y'.repeat(100_000));
    expect([1006, 1009]).toContain(await closed);
    await waitFor(() => b.closes.length === 1);
    expect(b.closes[0]?.code).toBe(1009);
  });
});

describe('a raw client: masked frames of every size class', () => {
  it('125/126/65535/65536-byte masked frames, text and binary, one frame per write and all in one write', async () => {
    const b = await startBackend({ deflate: false });
    const gw = await gateway([b.url]);
    const res = await rawUpgrade(gw.port);
    expect(res.status).toBe(101);
    const chunks: Buffer[] = [res.rest];
    res.socket.on('data', (c: Buffer) => chunks.push(c));
    res.socket.resume();
    const sizes = [125, 126, 65535, 65536];
    const payloads = sizes.map((n) => randomBytes(n));
    // Per write, then all four in one write, then each frame split at every header byte boundary.
    for (const p of payloads) res.socket.write(frame(2, p));
    res.socket.write(Buffer.concat(payloads.map((p) => frame(2, p))));
    for (const p of payloads) {
      const f = frame(2, p);
      for (let i = 0; i < 14; i++) {
        res.socket.write(f.subarray(i, i + 1));
        await delay(1);
      }
      res.socket.write(f.subarray(14));
    }
    const total = sizes.length * 3;
    const expected = [...payloads, ...payloads, ...payloads];
    await waitFor(() => {
      const frames = parseFrames(Buffer.concat(chunks)).filter((f) => f.opcode === 2);
      return frames.length >= total;
    }, 8000);
    const frames = parseFrames(Buffer.concat(chunks)).filter((f) => f.opcode === 2);
    expect(frames.map((f) => f.payload.length)).toEqual(expected.map((p) => p.length));
    for (const [i, f] of frames.entries()) expect(f.payload.equals(expected[i] as Buffer)).toBe(true);
    expect(frames.every((f) => !f.masked)).toBe(true);
    res.socket.write(frame(8, Buffer.from([0x03, 0xe8])));
    await waitFor(() => closeCodeIn(Buffer.concat(chunks)) !== undefined);
    expect(closeCodeIn(Buffer.concat(chunks))).toBe(1000);
    res.socket.destroy();
  });
});

describe('the ws package: bursts with backpressure over every plain/TLS combination', () => {
  for (const clientTls of [false, true]) {
    for (const backendTls of [false, true]) {
      it(`client ${clientTls ? 'wss' : 'ws'} → backend ${backendTls ? 'wss' : 'ws'}: 120 mixed messages each way, a paused client, all byte-exact and in order`, async () => {
        const b = await startBackend({ deflate: true, tls: backendTls });
        const gw = await startGateway(
          routeConfig(
            [b.url],
            {},
            {
              ...(clientTls ? withTls() : {}),
              pools: { main: { backends: [b.url], ...(backendTls ? { tls: { insecureSkipVerify: true } } : {}) } },
            },
          ),
        );
        cleanups.push(() => gw.stop());
        const url = clientTls ? `wss://127.0.0.1:${gw.tlsPort}/` : `ws://127.0.0.1:${gw.port}/`;
        const ws = await wsClient(url, { perMessageDeflate: true, rejectUnauthorized: false });
        const sizes = Array.from(
          { length: 120 },
          (_, i) => [0, 1, 125, 126, 65535, 65536, 200_000, 7][i % 8] as number,
        );
        const payloads = sizes.map((n, i) => (i % 3 === 0 ? Buffer.alloc(n, i & 0xff) : randomBytes(n)));
        const got: Buffer[] = [];
        ws.on('message', (d: Buffer) => got.push(d));
        // Client → backend → client, while the client stops reading for a while (TCP backpressure through wsgate).
        for (const p of payloads) ws.send(p, { binary: true });
        (ws as unknown as { _socket: Socket })._socket.pause();
        await delay(400);
        (ws as unknown as { _socket: Socket })._socket.resume();
        await waitFor(() => got.length === payloads.length, 15_000, `${got.length}/${payloads.length} messages back`);
        for (let i = 0; i < payloads.length; i++)
          expect(
            got[i]?.equals(payloads[i] as Buffer),
            `message ${i}: ${got[i]?.length} bytes, sent ${payloads[i]?.length}`,
          ).toBe(true);
        // Backend → client burst, with the client paused.
        got.length = 0;
        (ws as unknown as { _socket: Socket })._socket.pause();
        const srv = b.sockets[0] as WebSocket;
        for (const p of payloads) srv.send(p, { binary: true });
        await delay(400);
        (ws as unknown as { _socket: Socket })._socket.resume();
        await waitFor(() => got.length === payloads.length, 15_000, `${got.length}/${payloads.length} messages back`);
        for (let i = 0; i < payloads.length; i++)
          expect(
            got[i]?.equals(payloads[i] as Buffer),
            `message ${i}: ${got[i]?.length} bytes, sent ${payloads[i]?.length}`,
          ).toBe(true);
        const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
        ws.close(1000, 'done');
        expect(await closed).toBe(1000);
        await waitFor(() => b.closes.length === 1);
        expect(b.closes[0]).toEqual({ code: 1000, reason: 'done' });
      });
    }
  }
});

describeBrowser('Chromium through wsgate: keepalive, idle, leaving the page, crossing closes', () => {
  it('keepalive pings every 100 ms to both peers while large compressed messages flow: nothing is closed, echoes intact', async () => {
    const b = await startBackend();
    const gw = await gateway([b.url], { keepalive: { interval: '100ms', timeout: '2s', peers: 'both' } });
    const page = await newPage();
    expect((await openInPage(page, `ws://127.0.0.1:${gw.port}/`)).open).toBe(true);
    const result = await page.evaluate(async () => {
      const w = window as unknown as { ws: WebSocket; inbox: unknown[]; closeEvent?: unknown };
      const rand = (n: number) => {
        const a = new Uint8Array(n);
        for (let i = 0; i < n; i += 65536) crypto.getRandomValues(a.subarray(i, Math.min(n, i + 65536)));
        return a;
      };
      let ok = 0;
      let bad = 0;
      const until = performance.now() + 1500;
      let i = 0;
      while (performance.now() < until && w.closeEvent === undefined) {
        const d = i % 5 === 0 ? rand(300_000) : rand(50 + i);
        i++;
        w.ws.send(d);
        const start = performance.now();
        while (w.inbox.length === 0 && w.closeEvent === undefined && performance.now() - start < 3000) {
          await new Promise((r) => setTimeout(r, 2));
        }
        const got = w.inbox.shift() as ArrayBuffer | undefined;
        const a = got ? new Uint8Array(got) : new Uint8Array(0);
        if (a.length === d.length && a.every((v, j) => v === d[j])) ok++;
        else bad++;
        await new Promise((r) => setTimeout(r, 20));
      }
      return { ok, bad, closed: w.closeEvent ?? null, state: w.ws.readyState };
    });
    expect(result.closed).toBeNull();
    expect(result.bad).toBe(0);
    expect(result.ok).toBeGreaterThan(5);
    const text = await gw.metrics();
    expect(text).not.toMatch(/wsgate_keepalive_timeouts_total\{[^}]*\} [1-9]/);
    expect(text).not.toMatch(/wsgate_protocol_violations_total\{[^}]*\} [1-9]/);
  });

  it('idle timeout: the page sees 1001 and the backend 1001', async () => {
    const b = await startBackend();
    const gw = await gateway([b.url], {}, { timeouts: { handshake: '2s', idle: '400ms', drain: '1s' } });
    const page = await newPage();
    expect((await openInPage(page, `ws://127.0.0.1:${gw.port}/`)).open).toBe(true);
    const ev = await closeEventInPage(page, 5000);
    expect(ev.code).toBe(1001);
    expect(ev.wasClean).toBe(true);
    await waitFor(() => b.closes.length === 1);
    expect(b.closes[0]?.code).toBe(1001);
  });

  it('the page navigates away: the backend hears 1001 (what Chromium sends), and the tunnel ends', async () => {
    const b = await startBackend();
    const gw = await gateway([b.url]);
    const page = await newPage();
    expect((await openInPage(page, `ws://127.0.0.1:${gw.port}/`)).open).toBe(true);
    await page.goto('about:blank');
    await waitFor(() => b.closes.length === 1, 5000);
    expect(b.closes[0]?.code).toBe(1001);
    await waitFor(() => gw.gateway.tunnels.size === 0, 8000);
  });

  it('page and wsgate close at the same moment (drain vs ws.close): both sides finish cleanly', async () => {
    const b = await startBackend();
    const gw = await startGateway(
      routeConfig([b.url], {}, { timeouts: { handshake: '2s', idle: '60s', drain: '0s' } }),
    );
    const page = await newPage();
    expect((await openInPage(page, `ws://127.0.0.1:${gw.port}/`)).open).toBe(true);
    const pageClose = page.evaluate(() => (window as unknown as { ws: WebSocket }).ws.close(1000, 'page'));
    const stopping = gw.stop();
    await pageClose;
    const ev = await closeEventInPage(page);
    await stopping;
    expect([1000, 1001]).toContain(ev.code);
    expect(ev.wasClean).toBe(true);
    await waitFor(() => b.closes.length === 1);
    expect([1000, 1001]).toContain(b.closes[0]?.code);
  });
});

describeBrowser('Chromium through wsgate: how fast a close completes', () => {
  for (const scheme of ['ws', 'wss'] as const) {
    for (const who of ['page', 'backend'] as const) {
      it(`${scheme}://, ${who} closes: the page's onclose fires promptly and the tunnel is gone within a second`, async () => {
        const b = await startBackend();
        const gw = await gateway([b.url], {}, scheme === 'wss' ? withTls() : {});
        const port = scheme === 'wss' ? gw.tlsPort : gw.port;
        const page = await newPage();
        expect((await openInPage(page, `${scheme}://127.0.0.1:${port}/`)).open).toBe(true);
        const ms = await page.evaluate(async (who) => {
          const w = window as unknown as { ws: WebSocket; wsClosed: Promise<unknown> };
          const t0 = performance.now();
          if (who === 'page') w.ws.close(1000, 'x');
          else w.ws.send('cmd:close:1000:x');
          await w.wsClosed;
          return performance.now() - t0;
        }, who);
        const t1 = Date.now();
        await waitFor(() => gw.gateway.tunnels.size === 0, 8000);
        const tunnelMs = Date.now() - t1;
        expect(ms).toBeLessThan(1000);
        expect(tunnelMs).toBeLessThan(1000);
      });
    }
  }
});

describeBrowser('Chromium through wsgate: odd but legal things a page does', () => {
  it('close reasons of exactly 123 UTF-8 bytes both ways, and a close without a code (1005)', async () => {
    const b = await startBackend();
    const gw = await gateway([b.url]);
    const reason = `${'ü'.repeat(61)}a`; // 123 bytes, the most a close frame carries (§5.5)
    expect(Buffer.byteLength(reason)).toBe(123);
    const page = await newPage();
    expect((await openInPage(page, `ws://127.0.0.1:${gw.port}/`)).open).toBe(true);
    await page.evaluate((r) => (window as unknown as { ws: WebSocket }).ws.close(4002, r), reason);
    expect(await closeEventInPage(page)).toEqual({ code: 4002, reason, wasClean: true });
    await waitFor(() => b.closes.length === 1);
    expect(b.closes[0]).toEqual({ code: 4002, reason });

    const page2 = await newPage();
    expect((await openInPage(page2, `ws://127.0.0.1:${gw.port}/`)).open).toBe(true);
    await page2.evaluate(() => (window as unknown as { ws: WebSocket }).ws.close());
    const ev = await closeEventInPage(page2);
    expect(ev).toEqual({ code: 1005, reason: '', wasClean: true });
    await waitFor(() => b.closes.length === 2);
    expect(b.closes[1]?.code).toBe(1005);
  });

  it('a UTF-8 cookie, a UTF-8 path and a query with encoded slashes and dots reach the backend byte-exact', async () => {
    const b = await startBackend();
    const gw = await gateway([b.url]);
    const site = await pageServer();
    const page = await newPage(site.origin);
    await page.evaluate(() => {
      document.cookie = 'name=héllo✓; path=/';
    });
    const opened = await openInPage(page, `ws://127.0.0.1:${gw.port}/chat/ünï code?next=%2F..%2Fx&q=a b`);
    expect(opened.open).toBe(true);
    const req = b.requests[0] as IncomingMessage;
    expect(Buffer.from(req.headers.cookie ?? '', 'latin1').toString('utf8')).toBe('name=héllo✓');
    expect(req.url).toBe('/chat/%C3%BCn%C3%AF%20code?next=%2F..%2Fx&q=a%20b');
  });

  it('throttled uploads (bytesPerSecond, throttle) with keepalive on: nothing closed, all echoed intact', async () => {
    const b = await startBackend();
    const gw = await gateway([b.url], {
      // Pings every 100 ms while the throttled upload runs (~1.4 s); the timeout leaves room for a loaded CI worker,
      // which hosts the gateway, the ws backend and drives Chromium (at 300 ms the backend's pong was late once).
      keepalive: { interval: '100ms', timeout: '1s', peers: 'both' },
      limits: { perConnection: { bytesPerSecond: '1MiB', onExceed: 'throttle' } },
    });
    const page = await newPage();
    expect((await openInPage(page, `ws://127.0.0.1:${gw.port}/`)).open).toBe(true);
    const result = await page.evaluate(async () => {
      const w = window as unknown as { ws: WebSocket; inbox: unknown[]; closeEvent?: unknown };
      const sent: Uint8Array[] = [];
      for (let i = 0; i < 8; i++) {
        const a = new Uint8Array(300_000);
        for (let j = 0; j < a.length; j += 65536) crypto.getRandomValues(a.subarray(j, Math.min(a.length, j + 65536)));
        sent.push(a);
        w.ws.send(a);
      }
      const start = performance.now();
      while (w.inbox.length < sent.length && w.closeEvent === undefined && performance.now() - start < 10_000) {
        await new Promise((r) => setTimeout(r, 10));
      }
      let ok = 0;
      sent.forEach((d, i) => {
        const got = w.inbox[i] as ArrayBuffer | undefined;
        const a = got ? new Uint8Array(got) : new Uint8Array(0);
        if (a.length === d.length && a.every((v, j) => v === d[j])) ok++;
      });
      return { ok, closed: w.closeEvent ?? null, ms: performance.now() - start };
    });
    expect(result.closed).toBeNull();
    expect(result.ok).toBe(8);
    // 2.4 MB at 1 MiB/s with a one-second burst: well over a second.
    expect(result.ms).toBeGreaterThan(900);
    expect(await gw.metrics()).not.toMatch(/wsgate_keepalive_timeouts_total\{[^}]*\} [1-9]/);
  });
});

describeBrowser('Chromium loads the app through wsgate, then opens its WebSocket on the same origin', () => {
  for (const scheme of ['ws', 'wss'] as const) {
    it(`${scheme === 'wss' ? 'https' : 'http'} page + ${scheme}:// socket: HttpOnly cookie set through wsgate reaches the WS backend with the page's Origin`, async () => {
      const b = await startBackend();
      const gw = await startGateway(routeConfig([b.url], {}, scheme === 'wss' ? withTls() : {}));
      cleanups.push(() => gw.stop());
      const port = scheme === 'wss' ? gw.tlsPort : gw.port;
      const origin = `${scheme === 'wss' ? 'https' : 'http'}://127.0.0.1:${port}`;
      const page = await newPage(`${origin}/app`);
      expect(await page.title()).toBe('app');
      const opened = await openInPage(page, `${scheme}://127.0.0.1:${port}/ws`);
      expect(opened.open).toBe(true);
      const req = b.requests[0] as IncomingMessage;
      expect(req.headers.origin).toBe(origin);
      expect(req.headers.cookie).toBe('sid=42');
      expect(req.headers['x-forwarded-proto']).toBe(scheme === 'wss' ? 'https' : 'http');
    });
  }
});

describe('the ws package: its own pings through wsgate while wsgate keeps alive both peers', () => {
  it('200 client pings with 16-byte payloads (the length of wsgate’s own) each get their pong back, in order', async () => {
    const b = await startBackend();
    const gw = await gateway([b.url], { keepalive: { interval: '100ms', timeout: '2s', peers: 'both' } });
    const ws = await wsClient(`ws://127.0.0.1:${gw.port}/`, { perMessageDeflate: true });
    const pongs: string[] = [];
    ws.on('pong', (d: Buffer) => pongs.push(d.toString('hex')));
    const sent: string[] = [];
    for (let i = 0; i < 200; i++) {
      const p = randomBytes(16);
      sent.push(p.toString('hex'));
      ws.ping(p);
      if (i % 20 === 0) await delay(60);
    }
    await waitFor(() => pongs.length >= 200, 5000).catch(() => {});
    expect(pongs).toEqual(sent);
    ws.close(1000);
  });
});

describeBrowser('Chromium: wsgate closes while a large compressed message is in flight', () => {
  for (const scheme of ['ws', 'wss'] as const) {
    it(`${scheme}://: drain during a 24 MB backend message: the page gets the whole message, then a clean 1001`, async () => {
      const b = await startBackend();
      const gw = await startGateway(routeConfig([b.url], {}, scheme === 'wss' ? withTls() : {}));
      const port = scheme === 'wss' ? gw.tlsPort : gw.port;
      const page = await newPage();
      expect((await openInPage(page, `${scheme}://127.0.0.1:${port}/`)).open).toBe(true);
      await waitFor(() => b.sockets.length === 1);
      (b.sockets[0] as WebSocket).send(randomBytes(24 * 1024 * 1024), { binary: true });
      // Drain once the frame is really in flight through wsgate (the backend compresses it first).
      await waitFor(() => [...gw.gateway.tunnels].some((t) => t.b2c.bytes > 1024 * 1024), 5000, 'frame in flight', 1);
      // A drain window far longer than the 24 MB take on a loaded machine: the test is about the message arriving
      // whole before the 1001, not about the deadline (the helpers' 500 ms cut it with 1006 on a busy CI machine).
      const stopping = gw.stop(30_000);
      const ev = await closeEventInPage(page, 25_000);
      await stopping;
      const sizes = await page.evaluate(() =>
        (window as unknown as { inbox: ArrayBuffer[] }).inbox.map((m) => m.byteLength),
      );
      expect(ev.code).toBe(1001);
      expect(ev.wasClean).toBe(true);
      expect(sizes).toEqual([24 * 1024 * 1024]);
    });
  }
});
