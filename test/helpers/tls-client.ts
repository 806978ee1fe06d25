// TLS clients that offer a session and report whether the server resumed it.

import { constants } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';

export interface Handshake {
  readonly resumed: boolean;
  readonly session: Buffer | undefined;
}

/** One TLS connection to 127.0.0.1:port offering `session`; resolves once the server's tickets arrived. */
export function handshake(
  port: number,
  session?: Buffer,
  options: { maxVersion?: 'TLSv1.2' | 'TLSv1.3'; noTickets?: boolean } = {},
): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    let latest: Buffer | undefined;
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      rejectUnauthorized: false,
      ...(session === undefined ? {} : { session }),
      ...(options.maxVersion === undefined ? {} : { maxVersion: options.maxVersion }),
      ...(options.noTickets ? { secureOptions: constants.SSL_OP_NO_TICKET } : {}),
    });
    socket.on('session', (s: Buffer) => {
      latest = s;
    });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const resumed = socket.isSessionReused();
      // TLS 1.3 tickets come after the handshake: give them a moment, then close.
      setTimeout(() => {
        socket.end();
        resolve({ resumed, session: latest });
      }, 50);
    });
  });
}

/** Connects `n` times in a row, each offering the previous connection's session; how many were resumed. */
export async function chain(port: number, n: number, options?: Parameters<typeof handshake>[2]): Promise<boolean[]> {
  const resumed: boolean[] = [];
  let session: Buffer | undefined;
  for (let i = 0; i < n; i++) {
    const h = await handshake(port, session, options);
    resumed.push(h.resumed);
    session = h.session ?? session;
  }
  return resumed;
}
