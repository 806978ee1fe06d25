// The benchmark backend: a minimal raw WebSocket echo server on node:net, in its own process. It answers the
// upgrade, echoes data frames unmasked (one write per incoming chunk), answers pings and closes; a plain GET gets
// a 64-byte 200 on a kept-alive connection (the plain-HTTP benchmark). Fast enough
// that it is not what a proxy's numbers measure; "direct" in the results is this server without a proxy.
// Usage: node dist/bench/backend/echo-server.js [--rsa-cert F --rsa-key F] [--ecdsa-cert F --ecdsa-key F]
// binds 127.0.0.1:0 (plus a TLS port per certificate given) and sends { ports } over IPC (or prints them).

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { parseArgs } from 'node:util';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD_BYTES = 16_384;
/** Frames bigger than this are refused (close 1009): the benchmark never sends them. */
const MAX_FRAME_BYTES = 16 * 1024 * 1024;

interface Connection {
  upgraded: boolean;
  /** Bytes not yet consumed: a partial head, or a partial frame. */
  carry: Buffer | null;
  closing: boolean;
}

const PLAIN_BODY = 'x'.repeat(64);
const PLAIN_ANSWER = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${PLAIN_BODY.length}\r\n\r\n${PLAIN_BODY}`,
);

function acceptFor(key: string): string {
  return createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
}

function onHead(socket: Socket, c: Connection, data: Buffer): Buffer | null {
  const end = data.indexOf(HEAD_END);
  if (end === -1) {
    if (data.length > MAX_HEAD_BYTES) socket.destroy();
    return data;
  }
  const head = data.subarray(0, end).toString('latin1');
  const key = /\r\nsec-websocket-key:\s*([^\r\n]+)/i.exec(head)?.[1]?.trim();
  if (!key && !/\r\nupgrade:/i.test(head) && head.startsWith('GET ')) {
    // A plain GET (the plain-HTTP benchmark, like a long-poll answer): a small body, and the connection stays open
    // for the next request.
    socket.write(PLAIN_ANSWER);
    const rest = data.subarray(end + 4);
    return rest.length > 0 ? onHead(socket, c, rest) : null;
  }
  if (!key) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return null;
  }
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`,
  );
  c.upgraded = true;
  const rest = data.subarray(end + 4);
  return rest.length > 0 ? onFrames(socket, c, rest) : null;
}

/** Echoes every complete frame in `data`; returns the incomplete tail (to carry) or null. */
function onFrames(socket: Socket, c: Connection, data: Buffer): Buffer | null {
  // First pass: how many whole frames, and how big is the answer.
  let off = 0;
  let outBytes = 0;
  const len = data.length;
  while (off + 2 <= len) {
    const b1 = data[off + 1] ?? 0;
    const len7 = b1 & 0x7f;
    const masked = (b1 & 0x80) !== 0;
    const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    const headBytes = 2 + ext + (masked ? 4 : 0);
    if (off + headBytes > len) break;
    const payload =
      len7 === 126 ? data.readUInt16BE(off + 2) : len7 === 127 ? Number(data.readBigUInt64BE(off + 2)) : len7;
    if (payload > MAX_FRAME_BYTES) {
      socket.destroy();
      return null;
    }
    if (off + headBytes + payload > len) break;
    outBytes += (payload < 126 ? 2 : payload < 65536 ? 4 : 10) + payload;
    off += headBytes + payload;
  }
  const whole = off;
  if (whole > 0) {
    const out = Buffer.allocUnsafe(outBytes);
    let o = 0;
    let closeAfter = false;
    for (off = 0; off < whole; ) {
      const b0 = data[off] ?? 0;
      const b1 = data[off + 1] ?? 0;
      const len7 = b1 & 0x7f;
      const masked = (b1 & 0x80) !== 0;
      const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
      const payload =
        len7 === 126 ? data.readUInt16BE(off + 2) : len7 === 127 ? Number(data.readBigUInt64BE(off + 2)) : len7;
      const maskAt = off + 2 + ext;
      const start = maskAt + (masked ? 4 : 0);
      let opcode = b0 & 0x0f;
      if (opcode === 0x9)
        opcode = 0xa; // ping → pong
      else if (opcode === 0xa) {
        off = start + payload; // unsolicited pong: dropped, so the answer may end short of outBytes
        continue;
      } else if (opcode === 0x8) closeAfter = true;
      out[o++] = (b0 & 0x80) | opcode;
      if (payload < 126) out[o++] = payload;
      else if (payload < 65536) {
        out[o++] = 126;
        out.writeUInt16BE(payload, o);
        o += 2;
      } else {
        out[o++] = 127;
        out.writeBigUInt64BE(BigInt(payload), o);
        o += 8;
      }
      if (masked) {
        const m0 = data[maskAt] ?? 0;
        const m1 = data[maskAt + 1] ?? 0;
        const m2 = data[maskAt + 2] ?? 0;
        const m3 = data[maskAt + 3] ?? 0;
        let i = 0;
        for (; i + 4 <= payload; i += 4) {
          out[o + i] = (data[start + i] ?? 0) ^ m0;
          out[o + i + 1] = (data[start + i + 1] ?? 0) ^ m1;
          out[o + i + 2] = (data[start + i + 2] ?? 0) ^ m2;
          out[o + i + 3] = (data[start + i + 3] ?? 0) ^ m3;
        }
        for (; i < payload; i++)
          out[o + i] = (data[start + i] ?? 0) ^ (i % 4 === 0 ? m0 : i % 4 === 1 ? m1 : i % 4 === 2 ? m2 : m3);
      } else data.copy(out, o, start, start + payload);
      o += payload;
      off = start + payload;
      if (closeAfter) break;
    }
    if (!c.closing) socket.write(o === out.length ? out : out.subarray(0, o));
    if (closeAfter && !c.closing) {
      c.closing = true;
      socket.end();
      return null;
    }
  }
  return whole < len ? Buffer.from(data.subarray(whole)) : null;
}

function onConnection(socket: Socket): void {
  socket.setNoDelay(true);
  const c: Connection = { upgraded: false, carry: null, closing: false };
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    const data = c.carry === null ? chunk : Buffer.concat([c.carry, chunk]);
    c.carry = c.upgraded ? onFrames(socket, c, data) : onHead(socket, c, data);
  });
}

export interface EchoBackendPorts {
  readonly ws: number;
  readonly wssRsa: number | undefined;
  readonly wssEcdsa: number | undefined;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
}

function tlsServer(cert: string | undefined, key: string | undefined): Server | undefined {
  if (cert === undefined || key === undefined) return undefined;
  return createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) }, onConnection);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'rsa-cert': { type: 'string' },
      'rsa-key': { type: 'string' },
      'ecdsa-cert': { type: 'string' },
      'ecdsa-key': { type: 'string' },
    },
  });
  const plain = createServer({ noDelay: true }, onConnection);
  const rsa = tlsServer(values['rsa-cert'], values['rsa-key']);
  const ecdsa = tlsServer(values['ecdsa-cert'], values['ecdsa-key']);
  const ports: EchoBackendPorts = {
    ws: await listen(plain),
    wssRsa: rsa ? await listen(rsa) : undefined,
    wssEcdsa: ecdsa ? await listen(ecdsa) : undefined,
  };
  if (process.send) process.send({ ports });
  else process.stdout.write(`echo backend: ${JSON.stringify(ports)}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`echo backend: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
