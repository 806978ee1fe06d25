// One active health check against one backend: an HTTP GET (2xx passes) or a full WebSocket handshake followed
// by a close. Every probe settles by its own timeout and leaves no socket behind.

import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { BackendConfig, HealthCheckConfig } from '../config/types.js';
import { acceptFor } from '../handshake/accept.js';
import { CLOSE_CODES, encodeCloseFrame } from '../tunnel/close-frame.js';
import { attemptUpstream, tcpWithPreamble } from '../upstream/handshake.js';
import { localProxyHeader } from '../upstream/proxy-header.js';
import { upstreamTlsOptions } from '../upstream/tls.js';

/** Also the `result` label of `wsgate_backend_health_checks_total`. */
export type ProbeResult = 'success' | 'failure' | 'timeout';

export const PROBE_RESULTS: readonly ProbeResult[] = ['success', 'failure', 'timeout'];

export type Probe = (backend: BackendConfig, check: HealthCheckConfig) => Promise<ProbeResult>;

const USER_AGENT = 'wsgate-health-check';

export const probeBackend: Probe = (backend, check) =>
  check.websocket ? websocketProbe(backend, check) : httpProbe(backend, check);

function hostHeader(backend: BackendConfig): string {
  return `${backend.host.includes(':') ? `[${backend.host}]` : backend.host}:${backend.port}`;
}

/** A connection to `backend` that starts with `preamble`, TLS on top for a wss:// backend. */
function connectWith(backend: BackendConfig, preamble: Buffer): Socket {
  const tcp = tcpWithPreamble(backend, preamble);
  return backend.tls
    ? tlsConnect({ socket: tcp, host: backend.host, ALPNProtocols: ['http/1.1'], ...upstreamTlsOptions(backend) })
    : tcp;
}

function httpProbe(backend: BackendConfig, check: HealthCheckConfig): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    const local = backend.proxyProtocol === undefined ? undefined : localProxyHeader(backend.proxyProtocol);
    const req = (backend.tls ? httpsRequest : httpRequest)(
      {
        host: backend.host,
        port: backend.port,
        path: check.path,
        method: 'GET',
        headers: { host: hostHeader(backend), 'user-agent': USER_AGENT, connection: 'close' },
        ...(backend.tls ? upstreamTlsOptions(backend) : {}),
        // A connection of its own for each check (no agent); a backend behind PROXY protocol expects a header on
        // every connection: LOCAL, "no client behind this" (node uses createConnection only without an agent).
        ...(local === undefined ? { agent: false } : { createConnection: () => connectWith(backend, local) }),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        settle(status >= 200 && status < 300 ? 'success' : 'failure');
      },
    );
    // The whole check gets `timeout`, not just an idle gap: a trickling backend is as bad as a silent one.
    const timer = setTimeout(settle, check.timeoutMs, 'timeout');
    req.on('error', () => settle('failure'));
    req.end();
  });
}

async function websocketProbe(backend: BackendConfig, check: HealthCheckConfig): Promise<ProbeResult> {
  const started = performance.now();
  const key = randomBytes(16).toString('base64');
  const head =
    `GET ${check.path} HTTP/1.1\r\nHost: ${hostHeader(backend)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: ${USER_AGENT}\r\n\r\n`;
  const local = backend.proxyProtocol === undefined ? undefined : localProxyHeader(backend.proxyProtocol);
  const attempt = await attemptUpstream(backend, Buffer.from(head, 'latin1'), acceptFor(key), check.timeoutMs, local);
  if (attempt.kind === 'failed') return attempt.reason === 'timeout' ? 'timeout' : 'failure';
  const socket = attempt.socket;
  if (attempt.kind === 'refused') {
    socket.destroy();
    return 'failure';
  }
  // Close politely (§5.5.1) and wait for the backend to finish, so checks of one backend never overlap even
  // in their teardown; whatever is left of the timeout bounds the wait.
  const remainingMs = Math.max(1, check.timeoutMs - (performance.now() - started));
  return new Promise((resolve) => {
    const timer = setTimeout(() => socket.destroy(), remainingMs);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('success');
    });
    socket.resume();
    socket.end(encodeCloseFrame(CLOSE_CODES.NORMAL, 'health check', true));
  });
}
