// The backend side of plain HTTP (src/http/upstream-client.ts) against a real backend: one pool per backend, kept
// across requests and equal reloads, connections kept alive, never pipelined, bounded by limits.maxConnections,
// and pools of backends that left closed.

import { createServer, type ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { BackendConfig } from '../../src/config/types.js';
import { UpstreamClient, type UpstreamSettings } from '../../src/http/upstream-client.js';
import { Member } from '../../src/pool/member.js';
import { listenTracked } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

const SETTINGS: UpstreamSettings = { maxConnections: 100, connectTimeoutMs: 2000 };

/** A backend that answers /fast at once and holds /hold until release(); counts requests per connection. */
async function backend() {
  const held: ServerResponse[] = [];
  const perConnection: number[] = [];
  const server = createServer((req, res) => {
    const socket = req.socket as typeof req.socket & { n?: number };
    if (socket.n === undefined) {
      socket.n = perConnection.length;
      perConnection.push(0);
    }
    perConnection[socket.n] = (perConnection[socket.n] ?? 0) + 1;
    req.resume();
    if (req.url === '/hold') held.push(res);
    else res.end('ok');
  });
  const listening = await listenTracked(server, cleanups);
  const config: BackendConfig = { id: listening.url, host: '127.0.0.1', port: listening.port, tls: false, weight: 1 };
  const release = () => {
    for (const res of held.splice(0)) res.end('late');
  };
  cleanups.push(release);
  return { ...listening, config, held, perConnection, release };
}

function client(): UpstreamClient {
  const c = new UpstreamClient();
  cleanups.push(() => c.close());
  return c;
}

async function request(c: UpstreamClient, member: Member, path: string, settings = SETTINGS): Promise<string> {
  const answer = await c.poolFor(member, settings).request({ method: 'GET', path });
  return answer.body.text();
}

describe('pools', () => {
  it('one pool per backend, reused by every request and by a reload that changed nothing', async () => {
    const b = await backend();
    const c = client();
    const member = new Member(b.config, 0);
    const pool = c.poolFor(member, SETTINGS);
    expect(c.poolFor(member, SETTINGS)).toBe(pool);
    member.backend = { ...b.config };
    expect(c.poolFor(member, { ...SETTINGS })).toBe(pool);
  });

  it('new limits or new TLS settings give the backend a new pool', async () => {
    const b = await backend();
    const c = client();
    const member = new Member(b.config, 0);
    const pool = c.poolFor(member, SETTINGS);
    const bigger = c.poolFor(member, { ...SETTINGS, maxConnections: 200 });
    expect(bigger).not.toBe(pool);
    member.backend = { ...b.config, tlsOptions: { ca: undefined, serverName: 'x', rejectUnauthorized: true } };
    expect(c.poolFor(member, { ...SETTINGS, maxConnections: 200 })).not.toBe(bigger);
  });

  it('the pool of a backend that left its pool is closed when the next pool is made', async () => {
    const b = await backend();
    const c = client();
    const gone = new Member(b.config, 0);
    expect(await request(c, gone, '/fast')).toBe('ok');
    await waitFor(() => b.open() === 1, 2000, 'a kept-alive connection');
    gone.index = -1;
    const other = await backend();
    c.poolFor(new Member(other.config, 1), SETTINGS);
    await waitFor(() => b.open() === 0, 2000, "the departed backend's connection closed");
  });
});

describe('connections', () => {
  it('kept alive: sequential requests share one connection', async () => {
    const b = await backend();
    const c = client();
    const member = new Member(b.config, 0);
    for (let i = 0; i < 5; i++) {
      expect(await request(c, member, '/fast')).toBe('ok');
      // undici gives the connection back a moment after the answer ends, as a client's next request comes later.
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(b.perConnection).toEqual([5]);
  });

  it('never pipelined: a request does not wait behind a held long poll, it gets a connection of its own', async () => {
    const b = await backend();
    const c = client();
    const member = new Member(b.config, 0);
    const held = request(c, member, '/hold');
    await waitFor(() => b.held.length === 1, 2000, 'the long poll at the backend');
    expect(await request(c, member, '/fast')).toBe('ok');
    expect(b.perConnection).toEqual([1, 1]);
    b.release();
    expect(await held).toBe('late');
  });

  it('bounded by limits.maxConnections', async () => {
    const b = await backend();
    const c = client();
    const member = new Member(b.config, 0);
    const settings = { ...SETTINGS, maxConnections: 2 };
    const held = [0, 1, 2].map(() => request(c, member, '/hold', settings));
    await waitFor(() => b.held.length === 2, 2000, 'two long polls at the backend');
    await new Promise((r) => setTimeout(r, 200));
    expect(b.open()).toBe(2);
    b.release();
    await waitFor(() => b.held.length === 1, 2000, 'the third once a connection was free');
    b.release();
    expect(await Promise.all(held)).toEqual(['late', 'late', 'late']);
  });
});
