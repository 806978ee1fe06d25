// A load-generator process: raw node:net / node:tls sockets, no WebSocket library on the hot path. It runs one
// job (echo, handshake or idle) for the harness, which drives it over IPC: job → ready → measure → stop → result.
// Echo, closed loop: keeps `window` pre-built masked frames in flight per connection and writes as many as came
// back with a single write. Echo, fixed rate: every connection sends one frame per tick, whatever came back (up to
// `window` in flight). Latencies (send → echo) go to an HDR histogram in microseconds.

import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { build, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';
import { CLOSE_FRAME, messageFrames, ServerFrameCounter, upgradeRequest } from './frames.js';
import type { Command, Endpoint, Job, Report } from './protocol.js';

/** An upgrade that has not answered by then counts as an error. */
const UPGRADE_TIMEOUT_MS = 10_000;
/** A closing socket that has not closed by then is destroyed. */
const CLOSE_TIMEOUT_MS = 3_000;
/** Pause after a failed handshake so a refusing target cannot turn the loop into a busy spin. */
const ERROR_BACKOFF_MS = 20;

const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_101 = Buffer.from('HTTP/1.1 101');

function newHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

const stats = {
  measuring: false,
  count: 0,
  errors: 0,
  dropped: 0,
  firstError: null as string | null,
  histogram: newHistogram(),
};

function noteError(err: Error | string): void {
  stats.errors++;
  stats.firstError ??= typeof err === 'string' ? err : `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`;
}

function send(report: Report): void {
  process.send?.(report);
}

function open(endpoint: Endpoint, onConnect: () => void): Socket {
  const socket = endpoint.tls
    ? tlsConnect(
        { host: endpoint.host, port: endpoint.port, servername: 'localhost', rejectUnauthorized: false },
        onConnect,
      )
    : netConnect({ host: endpoint.host, port: endpoint.port, noDelay: true }, onConnect);
  socket.setNoDelay(true);
  return socket;
}

/**
 * Opens one WebSocket: connect, upgrade, wait for 101. Resolves with the socket and any bytes after the head,
 * or rejects. `startedAt` is when the TCP connect began (for handshake latency).
 */
function openWebSocket(endpoint: Endpoint): Promise<{ socket: Socket; rest: Buffer; startedAt: number }> {
  return new Promise((resolve, reject) => {
    const startedAt = performance.now();
    const request = upgradeRequest(`${endpoint.host}:${endpoint.port}`, endpoint.path);
    let head: Buffer = Buffer.alloc(0);
    const socket = open(endpoint, () => socket.write(request));
    const timer = setTimeout(() => fail(new Error('upgrade timed out')), UPGRADE_TIMEOUT_MS);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end === -1) {
        if (head.length > 16_384) fail(new Error('response head too large'));
        return;
      }
      if (!head.subarray(0, STATUS_101.length).equals(STATUS_101)) {
        fail(new Error(`not upgraded: ${head.subarray(0, head.indexOf('\r\n')).toString('latin1')}`));
        return;
      }
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', fail);
      socket.removeListener('close', onEarlyClose);
      resolve({ socket, rest: head.subarray(end + 4), startedAt });
    };
    const onEarlyClose = () => fail(new Error('closed before 101'));
    socket.on('data', onData);
    socket.on('error', fail);
    socket.on('close', onEarlyClose);
  });
}

/** Opens `count` WebSockets, at most `concurrency` handshakes at a time. */
async function openMany(
  endpoint: Endpoint,
  count: number,
  concurrency: number,
  onOpen: (socket: Socket, rest: Buffer) => void,
): Promise<{ opened: number; failed: number }> {
  let next = 0;
  let opened = 0;
  let failed = 0;
  const lane = async () => {
    while (next < count) {
      next++;
      try {
        const ws = await openWebSocket(endpoint);
        opened++;
        onOpen(ws.socket, ws.rest);
      } catch (err) {
        failed++;
        noteError(err as Error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return { opened, failed };
}

const sockets = new Set<Socket>();
let stopped = false;

function track(socket: Socket): void {
  sockets.add(socket);
  socket.on('error', (err) => {
    if (!stopped) noteError(err);
  });
  socket.on('close', () => {
    sockets.delete(socket);
    if (!stopped && stats.measuring) stats.dropped++;
  });
}

// ---- echo ----------------------------------------------------------------------------------------------------

interface EchoConnection {
  readonly socket: Socket;
  readonly counter: ServerFrameCounter;
  readonly sentAt: Float64Array;
  head: number;
  tail: number;
  inFlight: number;
}

async function runEcho(job: Extract<Job, { mode: 'echo' }>): Promise<void> {
  const { frames, frameBytes } = messageFrames(job.payloadBytes, job.window);
  // Views for "write k frames" made once, so the hot path allocates nothing for the write itself.
  const views = Array.from({ length: job.window + 1 }, (_, k) => frames.subarray(0, k * frameBytes));
  const window = job.window;
  const fixedRate = job.ratePerConnection > 0;
  const sendFrames = (c: EchoConnection, k: number, now: number) => {
    c.inFlight += k;
    for (let i = 0; i < k; i++) {
      c.sentAt[c.tail] = now;
      c.tail = c.tail + 1 === window ? 0 : c.tail + 1;
    }
    c.socket.write(views[k] as Buffer);
  };
  const onData = (c: EchoConnection, chunk: Buffer) => {
    const k = c.counter.feed(chunk);
    if (k === 0 || stopped) return;
    const now = performance.now();
    for (let i = 0; i < k; i++) {
      if (stats.measuring) {
        stats.histogram.recordValue(Math.max(1, Math.round((now - (c.sentAt[c.head] ?? now)) * 1000)));
        stats.count++;
      }
      c.head = c.head + 1 === window ? 0 : c.head + 1;
    }
    c.inFlight -= k;
    if (!fixedRate) sendFrames(c, Math.min(k, window), now);
  };
  const connections: EchoConnection[] = [];
  const result = await openMany(job.endpoint, job.connections, job.connectConcurrency, (socket, rest) => {
    track(socket);
    const c: EchoConnection = {
      socket,
      counter: new ServerFrameCounter(),
      sentAt: new Float64Array(window),
      head: 0,
      tail: 0,
      inFlight: 0,
    };
    connections.push(c);
    socket.on('data', (chunk: Buffer) => onData(c, chunk));
    if (rest.length > 0) onData(c, rest);
  });
  if (fixedRate) {
    // One frame per connection per tick; a connection with `window` frames unanswered skips its turn.
    const timer = setInterval(() => {
      if (stopped) return clearInterval(timer);
      const now = performance.now();
      for (const c of connections) if (c.inFlight < window) sendFrames(c, 1, now);
    }, 1000 / job.ratePerConnection);
  } else {
    const now = performance.now();
    for (const c of connections) sendFrames(c, window, now);
  }
  send({ type: 'ready', opened: result.opened, failed: result.failed, firstError: stats.firstError });
}

// ---- handshake -----------------------------------------------------------------------------------------------

let activeLoops = 0;

async function handshakeLoop(endpoint: Endpoint): Promise<void> {
  activeLoops++;
  while (!stopped) {
    try {
      const ws = await openWebSocket(endpoint);
      if (stats.measuring) {
        stats.count++;
        stats.histogram.recordValue(Math.max(1, Math.round((performance.now() - ws.startedAt) * 1000)));
      }
      await closeWebSocket(ws.socket);
    } catch (err) {
      if (stats.measuring) noteError(err as Error);
      await new Promise((r) => setTimeout(r, ERROR_BACKOFF_MS));
    }
  }
  activeLoops--;
}

/** Client-initiated close (RFC 6455 §7.1.2): send a close frame, let the server answer and close TCP first. */
function closeWebSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => socket.destroy(), CLOSE_TIMEOUT_MS);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.resume();
    socket.write(CLOSE_FRAME);
  });
}

async function runHandshake(job: Extract<Job, { mode: 'handshake' }>): Promise<void> {
  for (let i = 0; i < job.concurrency; i++) void handshakeLoop(job.endpoint);
  send({ type: 'ready', opened: 0, failed: 0, firstError: null });
}

// ---- idle ----------------------------------------------------------------------------------------------------

async function runIdle(job: Extract<Job, { mode: 'idle' }>): Promise<void> {
  const result = await openMany(job.endpoint, job.connections, job.connectConcurrency, (socket) => {
    track(socket);
    socket.resume();
  });
  send({ type: 'ready', opened: result.opened, failed: result.failed, firstError: stats.firstError });
}

// ---- control -------------------------------------------------------------------------------------------------

async function stop(): Promise<void> {
  stats.measuring = false;
  const report: Report = {
    type: 'result',
    count: stats.count,
    errors: stats.errors,
    firstError: stats.firstError,
    histogram: stats.histogram.totalCount > 0 ? encodeIntoCompressedBase64(stats.histogram) : null,
    dropped: stats.dropped,
  };
  stopped = true;
  send(report);
  for (const s of sockets) s.destroy();
  // Handshake loops finish their current iteration (bounded by the timeouts above); then leave.
  const deadline = Date.now() + UPGRADE_TIMEOUT_MS + CLOSE_TIMEOUT_MS;
  while (activeLoops > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  process.exit(0);
}

process.on('message', (cmd: Command) => {
  switch (cmd.type) {
    case 'job': {
      const run =
        cmd.job.mode === 'echo'
          ? runEcho(cmd.job)
          : cmd.job.mode === 'handshake'
            ? runHandshake(cmd.job)
            : runIdle(cmd.job);
      run.catch((err: Error) => {
        process.stderr.write(`load generator: ${err.stack ?? err.message}\n`);
        process.exit(1);
      });
      break;
    }
    case 'measure':
      stats.count = 0;
      stats.errors = 0;
      stats.dropped = 0;
      stats.firstError = null;
      stats.histogram.reset();
      stats.measuring = true;
      break;
    case 'stop':
      void stop();
      break;
  }
});
// The harness going away must not leave a generator behind.
process.on('disconnect', () => process.exit(0));
