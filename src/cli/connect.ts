// `wsgate connect URL`: a small interactive WebSocket client in the spirit of wscat and websocat, on the `ws`
// package. Each line typed (or piped) is sent as a text message; everything that arrives is printed with a
// timestamp and its direction; a refused handshake is one line naming the status, wsgate's error code and what it
// means. `--count N [--rate R]` sends N messages and prints a summary: a quick load probe.
// Runs on Node 20 as well, so it only imports what the client needs.

import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { Errors } from '../errors.js';

export const CONNECT_HELP = `Usage: wsgate connect URL [options]      (or: npm run connect -- URL [options])

Opens a WebSocket to URL (ws:// or wss://), sends each line you type or pipe in as a text message, and prints
what arrives:   HH:MM:SS.mmm < received    > sent    * connection events

  -H, --header 'NAME: VALUE'   extra request header (repeatable)
  -s, --subprotocol NAME       offer this subprotocol (repeatable)
  -o, --origin ORIGIN          Origin header (routes with an origins list require one)
  -k, --insecure               accept any TLS certificate (wsgate's generated self-signed one, say)
  -n, --count N                send N messages, print a summary, close (stdin is not read)
  -r, --rate R                 with --count: R messages per second (default: as fast as the socket takes them)
  -d, --data TEXT              what --count sends (default: "message 1", "message 2", ...)
      --close-code CODE        close code when input ends (default 1000)
      --close-reason TEXT      close reason when input ends
      --timeout SECONDS        give up on the opening handshake after this long (default 10)
  -h, --help                   show this help

While connected: "/close [CODE [REASON]]" closes; "/ping [DATA]" pings; "//text" sends "/text".
Ctrl-D (end of input) closes with --close-code; Ctrl-C closes with 1000, a second Ctrl-C quits at once.
Exit status: 0 once a connection opened and closed with a close frame; 1 if it never opened or was cut; 2 for
bad arguments.`;

/** Names of close codes (RFC 6455 §7.4.1 and the IANA registry) for the `* closed` line. */
const CLOSE_CODE_NAMES: Readonly<Record<number, string>> = {
  1000: 'normal closure',
  1001: 'going away',
  1002: 'protocol error',
  1003: 'unsupported data',
  1005: 'no status code',
  1006: 'connection lost without a close frame',
  1007: 'invalid payload data',
  1008: 'policy violation',
  1009: 'message too big',
  1010: 'mandatory extension',
  1011: 'internal error',
  1012: 'service restart',
  1013: 'try again later',
  1014: 'bad gateway',
};

/** How far ahead of the socket --count may queue (bytes waiting in ws and the kernel) before it waits. */
const MAX_BUFFERED_BYTES = 1 << 20;
/** After --count has sent everything, how long it waits for the last answers. */
const COUNT_SETTLE_MS = 1000;

export interface ConnectOptions {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly subprotocols: readonly string[];
  readonly origin: string | undefined;
  readonly insecure: boolean;
  readonly count: number | undefined;
  readonly rate: number | undefined;
  readonly data: string | undefined;
  readonly closeCode: number;
  readonly closeReason: string;
  readonly timeoutMs: number;
}

class UsageError extends Error {}

function positiveNumber(text: string | undefined, flag: string, integer: boolean): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${flag} must be a ${integer ? 'whole ' : ''}number above 0, got "${text}"`);
  }
  return n;
}

/** Parses `connect`'s arguments; throws UsageError with a one-line reason. */
export function parseConnectArgs(argv: readonly string[]): ConnectOptions | 'help' {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: {
      header: { type: 'string', short: 'H', multiple: true },
      subprotocol: { type: 'string', short: 's', multiple: true },
      origin: { type: 'string', short: 'o' },
      insecure: { type: 'boolean', short: 'k' },
      count: { type: 'string', short: 'n' },
      rate: { type: 'string', short: 'r' },
      data: { type: 'string', short: 'd' },
      'close-code': { type: 'string' },
      'close-reason': { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) return 'help';
  if (positionals.length !== 1) throw new UsageError('give exactly one URL');
  const url = positionals[0] as string;
  if (!/^wss?:\/\//i.test(url)) throw new UsageError(`URL must start with ws:// or wss://, got "${url}"`);
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header must be "NAME: VALUE", got "${h}"`);
    headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
  }
  const closeCode = positiveNumber(values['close-code'], '--close-code', true) ?? 1000;
  if (closeCode !== 1000 && (closeCode < 3000 || closeCode > 4999)) {
    throw new UsageError('--close-code must be 1000 or 3000-4999 (codes a client may send)');
  }
  const count = positiveNumber(values.count, '--count', true);
  const rate = positiveNumber(values.rate, '--rate', false);
  if (rate !== undefined && count === undefined) throw new UsageError('--rate needs --count');
  return {
    url,
    headers,
    subprotocols: values.subprotocol ?? [],
    origin: values.origin,
    insecure: values.insecure === true,
    count,
    rate,
    data: values.data,
    closeCode,
    closeReason: values['close-reason'] ?? '',
    timeoutMs: (positiveNumber(values.timeout, '--timeout', false) ?? 10) * 1000,
  };
}

function timestamp(): string {
  const d = new Date();
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function show(direction: '<' | '>' | '*', text: string): void {
  process.stdout.write(`${timestamp()} ${direction} ${text}\n`);
}

function describeData(data: WebSocket.RawData, isBinary: boolean): string {
  const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  if (!isBinary) return bytes.toString('utf8');
  const hex = bytes.subarray(0, 32).toString('hex');
  return `[binary, ${bytes.length} bytes] ${hex}${bytes.length > 32 ? '…' : ''}`;
}

/** The one line for a refused handshake: status, wsgate's error code and its meaning, or what answered instead. */
export function describeRefusal(status: number, statusText: string, code: string | undefined, body: string): string {
  const head = `refused: ${status} ${statusText}`.trim();
  if (code !== undefined) {
    const entry = Object.values(Errors).find((e) => e.code === code);
    return `${head}, X-Wsgate-Error: ${code} (${entry?.message ?? 'not in this version’s catalogue'})`;
  }
  const firstLine = body.split('\n', 1)[0]?.trim().slice(0, 120) ?? '';
  const said = firstLine === '' ? '' : `: "${firstLine}"`;
  return `${head}, no X-Wsgate-Error (the backend's own answer, or not a wsgate)${said}`;
}

/** The one line for a connection that could not be made (refused port, unknown host, TLS, timeout). */
export function describeConnectError(err: NodeJS.ErrnoException, url: string): string {
  const target = new URL(url).host;
  switch (err.code) {
    case 'ECONNREFUSED':
      return `cannot connect to ${target}: connection refused (is wsgate running and listening there?)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot connect to ${target}: the host name does not resolve`;
    case 'ETIMEDOUT':
      return `cannot connect to ${target}: timed out`;
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return `TLS: ${target}'s certificate is not signed by a trusted CA (${err.code}); add --insecure to accept it`;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `TLS: ${target}'s certificate does not name this host; add --insecure to accept it`;
    default:
      return `cannot connect to ${target}: ${err.message}`;
  }
}

async function readBody(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  res.on('data', (chunk: Buffer) => {
    if (size < 4096) chunks.push(chunk);
    size += chunk.length;
  });
  await Promise.race([once(res, 'end'), once(res, 'close')]).catch(() => undefined);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Opens the connection; resolves with the socket, or rejects with the line to print. `listen` attaches the
 * handlers for what arrives at once: a first message may come in the same read as the 101.
 */
function open(options: ConnectOptions, listen: (ws: WebSocket) => void): Promise<WebSocket> {
  const ws = new WebSocket(options.url, [...options.subprotocols], {
    headers: options.headers,
    ...(options.origin === undefined ? {} : { origin: options.origin }),
    rejectUnauthorized: !options.insecure,
    handshakeTimeout: options.timeoutMs,
    perMessageDeflate: false,
  });
  listen(ws);
  return new Promise((resolve, reject) => {
    let status: number | undefined;
    ws.once('upgrade', (res) => {
      status = res.statusCode;
    });
    ws.once('open', () => {
      const protocol = ws.protocol === '' ? 'none' : ws.protocol;
      show('*', `connected to ${options.url} (${status}, subprotocol: ${protocol})`);
      resolve(ws);
    });
    // With this listener, ws leaves the answer to us: read a little of its body, then drop the request.
    ws.once('unexpected-response', (req, res) => {
      const code = res.headers['x-wsgate-error'];
      void readBody(res).then((body) => {
        reject(new Error(describeRefusal(res.statusCode ?? 0, res.statusMessage ?? '', code?.toString(), body)));
        req.destroy();
      });
    });
    ws.once('error', (err: NodeJS.ErrnoException) => {
      if (/handshake has timed out/.test(err.message)) {
        reject(new Error(`no answer to the opening handshake within ${options.timeoutMs / 1000} s`));
      } else reject(new Error(describeConnectError(err, options.url)));
    });
  });
}

/** Resolves with the exit status once the connection has closed. */
function closed(ws: WebSocket, closedByUs: () => boolean): Promise<number> {
  return new Promise((resolve) => {
    ws.on('error', (err) => show('*', `error: ${err.message}`));
    ws.once('close', (code, reason) => {
      const name = CLOSE_CODE_NAMES[code] ?? (code >= 4000 ? 'application code' : 'unregistered code');
      const text = reason.length > 0 ? ` "${reason.toString()}"` : '';
      show('*', `closed ${code} (${name})${text}${closedByUs() ? '' : ' by the server'}`);
      resolve(code === 1006 ? 1 : 0);
    });
  });
}

/** Interactive (or piped) mode, arrivals: every message, ping and pong, printed. */
function showArrivals(ws: WebSocket): void {
  ws.on('message', (data, isBinary) => show('<', describeData(data, isBinary)));
  ws.on('ping', (data) => show('<', `ping${data.length > 0 ? ` ${data.toString()}` : ''}`));
  ws.on('pong', (data) => show('<', `pong${data.length > 0 ? ` ${data.toString()}` : ''}`));
}

/** Interactive (or piped) mode: stdin lines out until the input ends. */
function converse(ws: WebSocket, options: ConnectOptions): Promise<number> {
  let closing = false;
  const close = (code: number, reason: string) => {
    if (closing) return;
    closing = true;
    ws.close(code, reason);
  };
  const done = closed(ws, () => closing);

  const tty = process.stdin.isTTY === true;
  const input = createInterface({ input: process.stdin, terminal: false });
  input.on('line', (line) => {
    // In a terminal the typed line is already on screen: replace it with the timestamped one.
    if (tty) process.stdout.write('\x1b[1A\x1b[2K');
    if (closing) return;
    if (line.startsWith('/') && !line.startsWith('//')) {
      const [command, code, ...reason] = line.slice(1).split(' ');
      if (command === 'close') close(Number(code ?? 1000) || 1000, reason.join(' '));
      else if (command === 'ping') {
        ws.ping(line.slice('/ping'.length).trim());
        show('>', 'ping');
      } else show('*', `unknown command /${command} (/close [CODE [REASON]], /ping [DATA]; //text sends /text)`);
      return;
    }
    const text = line.startsWith('//') ? line.slice(1) : line;
    ws.send(text);
    show('>', text);
  });
  input.on('close', () => close(options.closeCode, options.closeReason));
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    close(1000, '');
  });
  return done.finally(() => input.close());
}

/** Messages counted as they arrive, for --count's summary. */
class ArrivalCount {
  received = 0;
  lastArrivalMs = Date.now();
  listen(ws: WebSocket): void {
    ws.on('message', () => {
      this.received++;
      this.lastArrivalMs = Date.now();
    });
  }
}

/** --count mode: N messages at --rate, then a summary once answers stop arriving. */
async function probe(ws: WebSocket, options: ConnectOptions, count: number, arrivals: ArrivalCount): Promise<number> {
  let closing = false;
  const done = closed(ws, () => closing);
  const start = Date.now();
  for (let i = 1; i <= count && ws.readyState === WebSocket.OPEN; i++) {
    if (options.rate !== undefined) {
      const wait = start + ((i - 1) * 1000) / options.rate - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const sent = new Promise<void>((r) => ws.send(options.data ?? `message ${i}`, () => r()));
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) await sent;
  }
  const seconds = (Date.now() - start) / 1000;
  while (ws.readyState === WebSocket.OPEN && Date.now() - arrivals.lastArrivalMs < COUNT_SETTLE_MS) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const rate = seconds > 0 ? ` (${(count / seconds).toFixed(1)}/s)` : '';
  show('*', `sent ${count} messages in ${seconds.toFixed(3)} s${rate}; received ${arrivals.received}`);
  closing = true;
  if (ws.readyState === WebSocket.OPEN) ws.close(options.closeCode, options.closeReason);
  return done;
}

/** `wsgate connect ...`: resolves with the exit status. */
export async function connectCommand(argv: readonly string[]): Promise<number> {
  let options: ConnectOptions | 'help';
  try {
    options = parseConnectArgs(argv);
  } catch (err) {
    process.stderr.write(`wsgate connect: ${(err as Error).message}\n\n${CONNECT_HELP}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${CONNECT_HELP}\n`);
    return 0;
  }
  const { count } = options;
  const arrivals = new ArrivalCount();
  let ws: WebSocket;
  try {
    ws = await open(options, count === undefined ? showArrivals : (socket) => arrivals.listen(socket));
  } catch (err) {
    process.stderr.write(`wsgate connect: ${(err as Error).message}\n`);
    return 1;
  }
  return count === undefined ? converse(ws, options) : probe(ws, options, count, arrivals);
}
