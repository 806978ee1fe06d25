// Loopback ports for targets whose config file must name a port (nginx, HAProxy, wsgate's listeners).
//
// This is the "pick a free port, then let someone else bind it" pattern that tests must not use (another process
// may take the port in between). It is accepted here, in the benchmark harness only, because every caller
// retries the whole target start with fresh ports when the target fails to bind (see targets.ts, START_ATTEMPTS).

import { connect, createServer, type Server } from 'node:net';
import { sleep } from './processes.js';

/** `count` distinct ports the OS considered free a moment ago (all held at once, so they are distinct). */
export async function pickLoopbackPorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => resolve());
      });
      servers.push(server);
    }
    return servers.map((s) => {
      const address = s.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Waits until every port accepts TCP, or `timeoutMs` passes, or `gaveUp()` says the target died. */
export async function waitForPorts(
  ports: readonly number[],
  timeoutMs: number,
  gaveUp: () => boolean,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (const port of ports) {
    while (!(await accepts(port))) {
      if (gaveUp() || Date.now() > deadline) return false;
      await sleep(50);
    }
  }
  return true;
}
