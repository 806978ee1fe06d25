// The fast upgrade-head reader (src/handshake/upgrade-head.ts) may decline anything, but whatever it accepts must be
// read exactly as node's own parser (llhttp) reads it: the differential property test below sends every head it
// accepts to a real node:http server and compares the two readings field by field. DIFF_RUNS=<n> runs it longer
// (20,000 runs compared ~2,500 accepted heads in about a second here).

import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FAST_HEAD_BYTES, MAX_FAST_HEADER_LINES, parseUpgradeHead } from '../../src/handshake/upgrade-head.js';
import { IN_CI } from '../helpers/paths.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const BASE_LINES = [
  'Host: server.example.com',
  'Upgrade: websocket',
  'Connection: Upgrade',
  `Sec-WebSocket-Key: ${KEY}`,
  'Sec-WebSocket-Version: 13',
];

function head(lines: readonly string[] = BASE_LINES, requestLine = 'GET /chat HTTP/1.1'): Buffer {
  return Buffer.from(`${requestLine}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`, 'latin1');
}

function withLine(line: string): Buffer {
  return head([...BASE_LINES, line]);
}

describe('parseUpgradeHead accepts a whole upgrade head', () => {
  it('reads the RFC 6455 §1.3 request as node would', () => {
    const parsed = parseUpgradeHead(head());
    expect(parsed).toBeDefined();
    const req = parsed?.request;
    expect(req?.method).toBe('GET');
    expect(req?.url).toBe('/chat');
    expect([req?.httpVersion, req?.httpVersionMajor, req?.httpVersionMinor]).toEqual(['1.1', 1, 1]);
    expect(req?.headers.host).toBe('server.example.com');
    expect(req?.headers['sec-websocket-key']).toBe(KEY);
    expect(req?.rawHeaders.slice(0, 4)).toEqual(['Host', 'server.example.com', 'Upgrade', 'websocket']);
    expect(parsed?.headEnd).toBe(head().length);
  });

  it('hands the bytes after the blank line on as early frames', () => {
    const frame = Buffer.from([0x81, 0x80, 1, 2, 3, 4]);
    const chunk = Buffer.concat([head(), frame]);
    const parsed = parseUpgradeHead(chunk);
    expect(chunk.subarray(parsed?.headEnd)).toEqual(frame);
  });

  it('trims spaces and tabs around values and keeps the ones inside', () => {
    const parsed = parseUpgradeHead(withLine('X-Note: \t a \t b \t'));
    expect(parsed?.request.headers['x-note']).toBe('a \t b');
  });

  it('takes Connection token lists the way llhttp does', () => {
    for (const connection of ['keep-alive, Upgrade', 'UPGRADE', ' upgrade ,x', 'x,upgrade']) {
      const lines = BASE_LINES.map((l) => (l.startsWith('Connection') ? `Connection: ${connection}` : l));
      expect(parseUpgradeHead(head(lines)), connection).toBeDefined();
    }
  });

  it('keeps header names such as __proto__ as data, on an object without a prototype', () => {
    const parsed = parseUpgradeHead(withLine('__proto__: polluted'));
    expect(Object.getOwnPropertyDescriptor(parsed?.request.headers, '__proto__')?.value).toBe('polluted');
    expect(Object.getPrototypeOf(parsed?.request.headers)).toBeNull();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('parseUpgradeHead leaves everything else to node:http', () => {
  const declined: [string, Buffer][] = [
    ['POST', head(BASE_LINES, 'POST /chat HTTP/1.1')],
    ['a lower-case method', head(BASE_LINES, 'get /chat HTTP/1.1')],
    ['HTTP/1.0', head(BASE_LINES, 'GET /chat HTTP/1.0')],
    ['an absolute-form target', head(BASE_LINES, 'GET http://h.example/chat HTTP/1.1')],
    ['a fragment', head(BASE_LINES, 'GET /chat#x HTTP/1.1')],
    ['two spaces after the target', head(BASE_LINES, 'GET /chat  HTTP/1.1')],
    ['no version (HTTP/0.9)', Buffer.from('GET /chat\r\n\r\n')],
    [
      'a bare LF line end',
      Buffer.from(head().toString('latin1').replace('Upgrade: websocket\r\n', 'Upgrade: websocket\n')),
    ],
    ['a bare CR', withLine('X-A: 1\rX-B: 2')],
    ['a space before the colon', withLine('X-A : 1')],
    ['obs-fold', head([...BASE_LINES, 'X-A: 1', ' folded'])],
    ['an empty name', withLine(': 1')],
    ['a repeated header, in another case', withLine('HOST: other.example')],
    ['Content-Length', withLine('Content-Length: 0')],
    ['Transfer-Encoding', withLine('Transfer-Encoding: chunked')],
    ['an obs-text byte in a value', withLine('X-A: caf\xe9')],
    ['a NUL in a value', withLine('X-A: a\0b')],
    ['DEL in a value', withLine('X-A: a\x7fb')],
    ['no Upgrade header', head(BASE_LINES.filter((l) => !l.startsWith('Upgrade')))],
    [
      'an empty Upgrade (llhttp: no upgrade)',
      head(BASE_LINES.map((l) => (l.startsWith('Upgrade') ? 'Upgrade:  ' : l))),
    ],
    ['no Connection header', head(BASE_LINES.filter((l) => !l.startsWith('Connection')))],
    [
      'Connection without the upgrade token',
      head(BASE_LINES.map((l) => (l.startsWith('Connection') ? 'Connection: keep-alive' : l))),
    ],
    [
      'a space-separated Connection list',
      head(BASE_LINES.map((l) => (l.startsWith('Connection') ? 'Connection: keep-alive upgrade' : l))),
    ],
    ['a head over the fast size', withLine(`X-Big: ${'a'.repeat(MAX_FAST_HEAD_BYTES)}`)],
    [
      'more header lines than the fast limit',
      head([...BASE_LINES, ...Array.from({ length: MAX_FAST_HEADER_LINES }, (_, i) => `X-${i}: 1`)]),
    ],
  ];
  it.each(declined)('%s', (_name, bytes) => {
    expect(parseUpgradeHead(bytes)).toBeUndefined();
  });

  it('declines every proper prefix of a valid head (it arrived split over reads)', () => {
    const whole = head();
    for (let n = 0; n < whole.length; n++)
      expect(parseUpgradeHead(whole.subarray(0, n)), `prefix ${n}`).toBeUndefined();
  });
});

describe('parseUpgradeHead against node:http (differential)', () => {
  let server: Server;
  let port: number;
  /** Resolvers waiting for node's reading of the next connection's head. */
  const waiting: ((reading: NodeReading) => void)[] = [];

  interface NodeReading {
    event: 'upgrade' | 'request' | 'clientError';
    req?: IncomingMessage;
    head?: Buffer;
  }

  beforeAll(async () => {
    server = createServer({ maxHeaderSize: 16 * 1024 });
    const deliver = (reading: NodeReading) => waiting.shift()?.(reading);
    server.on('upgrade', (req: IncomingMessage, socket, rest: Buffer) => {
      deliver({ event: 'upgrade', req, head: Buffer.from(rest) });
      socket.destroy();
    });
    server.on('request', (req, res) => {
      deliver({ event: 'request', req });
      res.destroy();
    });
    server.on('clientError', (_err, socket) => {
      deliver({ event: 'clientError' });
      socket.destroy();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function nodeReading(bytes: Buffer): Promise<NodeReading> {
    const reading = new Promise<NodeReading>((resolve) => waiting.push(resolve));
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.end(bytes);
    try {
      return await reading;
    } finally {
      socket.destroy();
    }
  }

  const NAMES = [
    'X-Custom',
    'cookie',
    'Origin',
    'User-Agent',
    'Sec-WebSocket-Protocol',
    'X_Odd!#$%&*+.^`|~',
    'constructor',
  ];
  /** Mostly bytes the reader accepts, sometimes ones it must decline: both sides of the line get exercised. */
  const mostly = (usual: string, rare: string) =>
    fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...usual) }, { weight: 1, arbitrary: fc.constantFrom(...rare) });
  const valueChar = mostly('aZ0 \t;=,"\\({~/:', '\x7f\xe9\0\r\n');
  const targetChar = mostly("/a?=&%2F.-~!*:@'$+,;", '#"<\\^`{| [');
  const CONNECTIONS = [
    'Upgrade',
    'keep-alive, Upgrade',
    'keep-alive upgrade',
    'upgradex',
    ' upgrade ,x',
    'close',
    'Upgrade,',
    ',upgrade',
    '',
    ' , upgrade',
  ];
  /** Values for Upgrade; null leaves the header out. */
  const UPGRADES = ['websocket', 'websocket', 'websocket', 'WebSocket', '', '  ', 'h2c', 'websocket, h2c', null];
  const MUTATION_BYTES = ['\r', '\n', '\0', ' ', '\t', ':', '\x7f', '\xff', 'a'];

  const headArb = fc
    .record({
      target: fc.array(targetChar, { maxLength: 24 }).map((cs) => `/${cs.join('')}`),
      connection: fc.constantFrom(...CONNECTIONS),
      extra: fc.array(
        fc.record({
          name: fc.constantFrom(...NAMES),
          before: fc.constantFrom('', ' ', '\t', '  '),
          value: fc.array(valueChar, { maxLength: 12 }).map((cs) => cs.join('')),
        }),
        { maxLength: 4 },
      ),
      upgrade: fc.constantFrom(...UPGRADES),
      mutation: fc.oneof(
        { weight: 3, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.record({ at: fc.nat(), byte: fc.constantFrom(...MUTATION_BYTES) }) },
      ),
    })
    .map(({ target, connection, extra, upgrade, mutation }) => {
      const lines = BASE_LINES.filter((l) => !(upgrade === null && l.startsWith('Upgrade'))).map((l) =>
        l.startsWith('Connection') ? `Connection: ${connection}` : l.startsWith('Upgrade') ? `Upgrade: ${upgrade}` : l,
      );
      for (const e of extra) lines.push(`${e.name}:${e.before}${e.value}`);
      let text = head(lines, `GET ${target} HTTP/1.1`).toString('latin1');
      if (mutation) {
        const at = mutation.at % text.length;
        text = text.slice(0, at) + mutation.byte + text.slice(at + 1);
      }
      return Buffer.from(text, 'latin1');
    });

  it('everything it accepts, node reads as the same upgrade', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(headArb, async (bytes) => {
        const ours = parseUpgradeHead(bytes);
        if (ours === undefined) return;
        accepted++;
        const theirs = await nodeReading(bytes);
        expect(theirs.event).toBe('upgrade');
        const req = theirs.req as IncomingMessage;
        const mine = ours.request;
        expect([mine.method, mine.url, mine.httpVersion]).toEqual([req.method, req.url, req.httpVersion]);
        expect(mine.rawHeaders).toEqual(req.rawHeaders);
        expect(Object.entries(mine.headers)).toEqual(Object.entries(req.headers));
        expect(bytes.subarray(ours.headEnd)).toEqual(theirs.head);
      }),
      { numRuns: Number(process.env.DIFF_RUNS ?? 600), ...(IN_CI ? { seed: 20261130 } : {}) },
    );
    // The generator must reach the accepting side often enough for the comparison to mean something.
    expect(accepted).toBeGreaterThan(30);
  });
});
