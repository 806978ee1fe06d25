// A bench-only proxy for the issue-20 experiment: wsgate's own handshake code in JS (the strict head reader,
// RFC 6455 checks, the upstream request and the verified 101 from src/), then the tunnel either in JS
// (src/tunnel/tunnel.ts, as wsgate runs it: strict scanning, limits, sweeper) or in the native pump (pump.cc),
// which is handed the two descriptors. One route, one backend, no metrics server, no logging: both variants do
// the same handshake work, so the difference between them is the data path and its set-up and teardown.
//
// With --accept native, JS only starts the addon and publishes the routing table: accepting, the upgrade head, the
// checks, the backend's 101 and the tunnel all run on the pump threads (pump.cc, "the native accept + upgrade path").
// With --decide js as well, the sockets stay native but each complete head comes to JS, which checks, routes and
// builds the backend request with wsgate's code (onNativeHead): the shape an integration would most likely take.
//
// Getting a descriptor out of a net.Socket uses `socket._handle.fd`, a Node internal; it stays in bench/native.
//
// Usage: node dist/bench/native/gateway.js --backend PORT [--pump native|js] [--threads N] [--limits JSON]
//        [--accept js|native [--decide native|js]] [--splice MIN_BYTES] [--report]. Binds 127.0.0.1:0 (or --port) and sends { port } over IPC (or prints it). With --report every
//        ended tunnel is sent over IPC as { ended }; the message 'counters' is answered with { counters }.

import { existsSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import type { ConnectionLimits, DirectionLimits } from '../../src/config/types.js';
import { Endings } from '../../src/errors.js';
import { acceptFor } from '../../src/handshake/accept.js';
import { parseUpgradeHead } from '../../src/handshake/upgrade-head.js';
import { validateUpgrade } from '../../src/handshake/validate.js';
import { RouteStats } from '../../src/observe/hot-counts.js';
import { directWriteFd, writeChunk } from '../../src/platform/socket-io.js';
import { TunnelSweeper } from '../../src/tunnel/sweeper.js';
import { Tunnel, type TunnelEnd, type TunnelHooks } from '../../src/tunnel/tunnel.js';
import { attemptUpstream } from '../../src/upstream/handshake.js';
import { upstreamRequestHead } from '../../src/upstream/request.js';
import { ADDON_PATH, buildAddon, type HeadAsk, type NativeEnded, type NativePump, startNativePump } from './addon.js';

const HANDSHAKE_TIMEOUT_MS = 10_000;
const SWEEP_MS = 1000;

/** The bench's per-connection limits (bench/harness/targets.ts): far above anything sent, so the code runs. */
const UNREACHABLE: DirectionLimits = {
  messagesPerSecond: 1e9,
  burstMessages: 1e9,
  bytesPerSecond: 1e12,
  maxMessageBytes: 64 * 1024 * 1024,
  maxFramesPerMessage: 1e6,
  controlFramesPerSecond: 1e6,
};

const { values } = parseArgs({
  options: {
    backend: { type: 'string' },
    port: { type: 'string', default: '0' },
    pump: { type: 'string', default: 'native' },
    accept: { type: 'string', default: 'js' },
    splice: { type: 'string', default: '0' },
    decide: { type: 'string', default: 'native' },
    threads: { type: 'string', default: '1' },
    limits: { type: 'string' },
    report: { type: 'boolean', default: false },
  },
});
const backendPort = Number(values.backend);
if (!Number.isInteger(backendPort) || backendPort <= 0) throw new Error('--backend PORT is required');
if (values.pump !== 'native' && values.pump !== 'js') throw new Error(`--pump: native or js, got ${values.pump}`);
if (values.accept !== 'native' && values.accept !== 'js')
  throw new Error(`--accept: js or native, got ${values.accept}`);
const nativeAccept = values.accept === 'native';
const useNative = values.pump === 'native' || nativeAccept;
const limits: DirectionLimits = { ...UNREACHABLE, ...(values.limits ? JSON.parse(values.limits) : {}) };
const connectionLimits: ConnectionLimits = { clientToBackend: limits, backendToClient: limits, onExceed: 'close' };
const backend = { id: `ws://127.0.0.1:${backendPort}`, host: '127.0.0.1', port: backendPort, tls: false, weight: 1 };

function report(end: object): void {
  if (values.report && process.send) process.send({ ended: end });
}

// ---- the two data paths -------------------------------------------------------------------------------------------

const native: NativePump | undefined = useNative
  ? startNativePump(
      existsSync(ADDON_PATH) ? ADDON_PATH : buildAddon(),
      Number(values.threads),
      (end: NativeEnded) => report(end),
      Number(values.splice),
    )
  : undefined;

const stats = new RouteStats('echo');
const tunnels = new Set<Tunnel>();
const hooks: TunnelHooks = {
  violation() {},
  limitExceeded() {},
  keepaliveTimeout() {},
  deadlineReached() {},
  ended(tunnel: Tunnel, end: TunnelEnd) {
    tunnels.delete(tunnel);
    report({ ...end, initiator: end.initiator });
  },
};
if (!useNative) new TunnelSweeper(tunnels).start(SWEEP_MS);

type HandleWithFd = { _handle?: { fd?: number; readStop?: () => number } | null };

/** The socket's descriptor (a Node internal: `_handle.fd`), or -1. */
function fdOf(socket: Socket): number {
  const fd = (socket as unknown as HandleWithFd)._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/** Stops reading and returns whatever the socket's stream had already buffered (it belongs to the tunnel). */
function takeBuffered(socket: Socket): Buffer[] {
  (socket as unknown as HandleWithFd)._handle?.readStop?.();
  const chunks: Buffer[] = [];
  for (let c = socket.read() as Buffer | null; c !== null; c = socket.read() as Buffer | null) chunks.push(c);
  return chunks;
}

function joined(first: Buffer, more: Buffer[]): Buffer | undefined {
  const all = first.length > 0 ? [first, ...more] : more;
  return all.length === 0 ? undefined : all.length === 1 ? all[0] : Buffer.concat(all);
}

/** Hands both descriptors to the native pump (it duplicates them) and closes the JS sockets. */
function handOver(pump: NativePump, client: Socket, backendSocket: Socket, earlyClient: Buffer, rest: Buffer): void {
  if (client.writableLength > 0) {
    // The 101 is still queued in user space: closing the JS socket would drop it.
    client.once('drain', () => handOver(pump, client, backendSocket, earlyClient, rest));
    return;
  }
  const clientFd = fdOf(client);
  const backendFd = fdOf(backendSocket);
  if (clientFd < 0 || backendFd < 0 || client.destroyed || backendSocket.destroyed) {
    client.destroy();
    backendSocket.destroy();
    return;
  }
  const fromClient = joined(earlyClient, takeBuffered(client));
  const fromBackend = joined(rest, takeBuffered(backendSocket));
  pump.add(clientFd, backendFd, limits, limits, false, fromClient, fromBackend);
  client.destroy();
  backendSocket.destroy();
}

function startJsTunnel(client: Socket, backendSocket: Socket, earlyClient: Buffer, rest: Buffer, ip: string): void {
  const tunnel = new Tunnel(client, backendSocket, hooks, {
    stats,
    protocol: 'strict',
    limits: connectionLimits,
    rsv1Allowed: false,
    clientAddress: ip,
    requestId: '',
    keyHash: 0,
    idleMs: 0,
    keepalive: undefined,
  });
  tunnels.add(tunnel);
  tunnel.forwardEarly(false, rest);
  tunnel.forwardEarly(true, earlyClient);
  tunnel.start();
}

// ---- the handshake (wsgate's code) -------------------------------------------------------------------------------

function refuse(client: Socket, status: number): void {
  const version = status === 426 ? 'Sec-WebSocket-Version: 13\r\n' : '';
  client.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n${version}\r\n`);
}

function ignore(): void {}

async function onHead(client: Socket, chunk: Buffer): Promise<void> {
  client.pause();
  // Only heads that arrive whole in the first read (the load generator's do); wsgate gives others to node:http.
  const parsed = parseUpgradeHead(chunk);
  if (parsed === undefined) return refuse(client, 400);
  const check = validateUpgrade(parsed.request);
  if (!check.ok) return refuse(client, check.error.status ?? 400);
  const ip = client.remoteAddress ?? '';
  const requestHead = Buffer.from(upstreamRequestHead(parsed.request, { clientAddress: ip, secure: false }), 'latin1');
  const result = await attemptUpstream(backend, requestHead, acceptFor(check.key), HANDSHAKE_TIMEOUT_MS);
  if (result.kind !== 'switched') {
    if (result.kind === 'refused') result.socket.destroy();
    return refuse(client, 502);
  }
  if (client.destroyed) {
    result.socket.destroy();
    return;
  }
  writeChunk(client, directWriteFd(client), result.head.raw);
  const earlyClient = chunk.subarray(parsed.headEnd);
  if (native !== undefined) handOver(native, client, result.socket, earlyClient, result.rest);
  else startJsTunnel(client, result.socket, earlyClient, result.rest, ip);
}

function onConnection(client: Socket): void {
  client.on('error', ignore);
  client.once('data', (chunk: Buffer) => {
    void onHead(client, chunk);
  });
}

function listening(port: number): void {
  if (process.send) process.send({ port });
  else
    console.log(`native-bench gateway (${values.pump}, accept ${values.accept}) on 127.0.0.1:${port} → ${backend.id}`);
}

/** A head read by the native accept path, decided with wsgate's code: the same checks as onHead. */
function onNativeHead(pump: NativePump, ask: HeadAsk): void {
  const parsed = parseUpgradeHead(ask.head);
  const check = parsed === undefined ? undefined : validateUpgrade(parsed.request);
  if (parsed === undefined || check === undefined) pump.decide(ask, 400, 0);
  else if (!check.ok) pump.decide(ask, check.error.status ?? 400, 0);
  else {
    const head = upstreamRequestHead(parsed.request, { clientAddress: ask.ip, secure: false });
    pump.decide(ask, 0, backend.port, Buffer.from(head, 'latin1'), acceptFor(check.key));
  }
}

if (nativeAccept && native !== undefined) {
  native.setRoutes([{ prefix: '/', host: backend.host, port: backend.port }]);
  const onHeadJs = values.decide === 'js' ? (ask: HeadAsk) => onNativeHead(native, ask) : undefined;
  listening(native.listen(Number(values.port), limits, limits, onHeadJs));
  // Nothing JS-side holds the loop open: the pump threads do the work. Keep the process until it is stopped.
  setInterval(() => {}, 1 << 30);
} else {
  const server = createServer({ noDelay: true }, onConnection);
  server.listen(Number(values.port), '127.0.0.1', () => listening((server.address() as AddressInfo).port));
}
process.on('SIGTERM', () => process.exit(0));
// Over IPC, 'counters' asks for the native pump's counters (addon.ts, COUNTER); the JS pump has none to give.
process.on('message', (m: unknown) => {
  if (m === 'counters') process.send?.({ counters: native === undefined ? null : Array.from(native.counters()) });
});
// For drain experiments: SIGUSR2 closes every tunnel with 1001 (native: closeAll; JS: closeWith).
process.on('SIGUSR2', () => {
  if (native !== undefined) native.closeAll(1001);
  else for (const t of tunnels) t.closeWith(Endings.SHUTDOWN);
});
