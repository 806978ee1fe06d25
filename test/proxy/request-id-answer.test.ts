// The request id in the client's answer when the backend puts an X-Request-Id of its own in its answer: the client
// gets exactly one, the id the backend was sent (and wsgate logged), on the 101, on a relayed refusal and on a plain
// answer; a backend that echoes the very id it was sent is passed on byte for byte.

import { describe, expect, it } from 'vitest';
import { rawBackendFor } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { simpleConfig, startGatewayFor } from '../helpers/gateway.js';
import { receivedText, switchingProtocols } from '../helpers/hostile-backends.js';
import { rawUpgrade, sendRequest } from '../helpers/raw-client.js';

const cleanups = cleanupAfterEach();

/** The values of every `name` line in a raw head (any letter case). */
function linesOf(head: string, name: string): string[] {
  return head
    .split('\r\n')
    .filter((l) => l.slice(0, l.indexOf(':')).trim().toLowerCase() === name)
    .map((l) => l.slice(l.indexOf(':') + 1).trim());
}

/** The X-Request-Id the backend received in `request`. */
function sentId(request: string): string {
  const [id] = linesOf(request, 'x-request-id');
  if (id === undefined) throw new Error('the backend got no X-Request-Id');
  return id;
}

/**
 * A backend that answers upgrades on /ws with 101, on /refuse with 403, and plain requests with 200, each with two
 * X-Request-Id lines of its own (`own` true) or an echo of the id it was sent.
 */
async function gatewayWithBackend(own: boolean) {
  const ids = (request: string) =>
    own ? 'X-Request-Id: backend-7\r\nx-request-id: backend-8\r\n' : `X-Request-Id: ${sentId(request)}\r\n`;
  const backend = await rawBackendFor(cleanups, (request) => {
    if (request.startsWith('GET /refuse'))
      return `HTTP/1.1 403 Forbidden\r\n${ids(request)}Content-Length: 2\r\nConnection: close\r\n\r\nno`;
    if (/^upgrade: websocket/im.test(request)) return switchingProtocols(request, `X-Backend: b\r\n${ids(request)}`);
    return `HTTP/1.1 200 OK\r\n${ids(request)}X-Backend: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok`;
  });
  const gw = await startGatewayFor(cleanups, simpleConfig([backend.url]));
  return { backend, gw };
}

describe("a backend's own X-Request-Id in its answer", () => {
  it('is replaced by the id the backend was sent: one line, on the 101, on a relayed refusal and on a plain answer', async () => {
    const { backend, gw } = await gatewayWithBackend(true);
    for (const [path, status] of [
      ['/ws', 101],
      ['/refuse', 403],
    ] as const) {
      const res = await rawUpgrade(gw.port, { path });
      cleanups.push(() => res.socket.destroy());
      expect(res.status).toBe(status);
      expect(linesOf(res.head, 'x-request-id')).toEqual([sentId(receivedText(backend, backend.received.length - 1))]);
      // The backend's other lines are kept.
      if (status === 101) expect(linesOf(res.head, 'x-backend')).toEqual(['b']);
    }
    const plain = await sendRequest(gw.port, 'GET /plain HTTP/1.1\r\nHost: x\r\n\r\n');
    cleanups.push(() => plain.socket.destroy());
    expect(plain.status).toBe(200);
    expect(linesOf(plain.head, 'x-request-id')).toEqual([sentId(receivedText(backend, backend.received.length - 1))]);
    expect(linesOf(plain.head, 'x-backend')).toEqual(['b']);
  });

  it('that echoes the id it was sent is passed on as it is: one line', async () => {
    const { gw } = await gatewayWithBackend(false);
    const upgraded = await rawUpgrade(gw.port, { path: '/ws' });
    cleanups.push(() => upgraded.socket.destroy());
    expect(upgraded.status).toBe(101);
    expect(linesOf(upgraded.head, 'x-request-id')).toHaveLength(1);
    const plain = await sendRequest(gw.port, 'GET /plain HTTP/1.1\r\nHost: x\r\n\r\n');
    cleanups.push(() => plain.socket.destroy());
    expect(linesOf(plain.head, 'x-request-id')).toHaveLength(1);
  });
});
