// The request id and trace context of one connection, end to end on the real CLI (`workers: 1` and `2`): taken
// from a trusted peer's X-Request-Id when it is a sane token, made anew otherwise; sent to the backend (the client's
// copies replaced), back in the 101 and in refusals, and in every log line of the connection from open to close.
// A well-formed traceparent reaches the backend unchanged and is logged; a malformed one is dropped.

import type { IncomingMessage } from 'node:http';
import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import WebSocket from 'ws';
import { startEchoBackend, type TestBackend } from '../helpers/backends.js';
import { type CliProcess, ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { simpleConfig } from '../helpers/gateway.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const NEW_ID = /^[A-Za-z0-9_-]{22}$/;

interface Ports {
  readonly trusted: number;
  readonly untrusted: number;
}

async function start(workers: number): Promise<{ cli: CliProcess; backend: TestBackend; ports: Ports }> {
  const backend = await startEchoBackend('a');
  cleanups.push(() => backend.close());
  const config = simpleConfig([backend.url], {
    workers,
    listeners: [
      { name: 'trusted', address: '127.0.0.1', port: 0, clientAddress: { trustedProxies: ['127.0.0.1/32'] } },
      { name: 'untrusted', address: '127.0.0.1', port: 0 },
    ],
    routes: [{ name: 'main', match: { path: '/ws' }, pool: 'main' }],
  });
  const cli = runCli(writeConfig(config), ['--no-watch']);
  cleanups.push(() => cli.kill('SIGKILL'));
  onTestFailed(() => {
    process.stderr.write(`wsgate output:\n${cli.lines.slice(-60).join('\n')}\n`);
  });
  const ready = await cli.logLine('wsgate ready');
  const listeners = ready.listeners as { name: string; port: number }[];
  const port = (name: string) => listeners.find((l) => l.name === name)?.port as number;
  return { cli, backend, ports: { trusted: port('trusted'), untrusted: port('untrusted') } };
}

/** Opens a WebSocket with `headers`; resolves once open with the 101's headers and a way to close it. */
function open(url: string, headers: Record<string, string>): Promise<{ answer: IncomingMessage; close(): void }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    let answer: IncomingMessage | undefined;
    ws.once('upgrade', (res) => {
      answer = res;
    });
    ws.once('open', () => resolve({ answer: answer as IncomingMessage, close: () => ws.close(1000) }));
    ws.once('error', reject);
    cleanups.push(() => ws.terminate());
  });
}

/** An upgrade the gateway refuses: its status and headers. */
function refused(url: string, headers: Record<string, string>): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res);
      res.resume();
    });
    ws.once('open', () => reject(new Error('the upgrade was not refused')));
    ws.on('error', () => {});
  });
}

/** How many header lines named `name` a request carried. */
function count(req: IncomingMessage, name: string): number {
  let n = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]?.toLowerCase() === name) n++;
  return n;
}

describe.each([1, 2])('workers: %i', (workers) => {
  it('a trusted peer’s id and traceparent go to the backend, back in the 101, and in every log line', async () => {
    const { cli, backend, ports } = await start(workers);
    const id = 'lb-7f3a:12.34';
    const conn = await open(`ws://127.0.0.1:${ports.trusted}/ws`, {
      'X-Request-Id': id,
      traceparent: TRACEPARENT,
      'x-user-id': 'u1',
    });
    expect(conn.answer.headers['x-request-id']).toBe(id);
    const seen = backend.requests.at(-1) as IncomingMessage;
    expect(seen.headers['x-request-id']).toBe(id);
    expect(count(seen, 'x-request-id')).toBe(1);
    expect(seen.headers.traceparent).toBe(TRACEPARENT);

    const opened = await cli.logLine('connection opened', (l) => l.requestId === id);
    expect(opened).toMatchObject({ event: 'open', traceparent: TRACEPARENT, route: 'main' });
    conn.close();
    const closed = await cli.logLine('connection closed', (l) => l.requestId === id);
    expect(closed).toMatchObject({ event: 'close', closeCode: 1000 });
    // Every line of this connection carries its id, and no other line does.
    const lines = cli.logs.filter((l) => l.requestId === id).map((l) => l.event);
    expect(lines).toEqual(['open', 'close']);
  });

  it('an untrusted peer’s id, an insane one and a malformed traceparent are replaced or dropped', async () => {
    const { cli, backend, ports } = await start(workers);
    const forged = 'forged-by-client';
    const conn = await open(`ws://127.0.0.1:${ports.untrusted}/ws`, {
      'X-Request-Id': forged,
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    });
    const made = conn.answer.headers['x-request-id'] as string;
    expect(made).toMatch(NEW_ID);
    const seen = backend.requests.at(-1) as IncomingMessage;
    expect(seen.headers['x-request-id']).toBe(made);
    expect(count(seen, 'x-request-id')).toBe(1);
    expect(seen.headers.traceparent).toBeUndefined();
    const opened = await cli.logLine('connection opened', (l) => l.requestId === made);
    expect(opened.traceparent).toBeUndefined();
    conn.close();

    // From a trusted peer, but not a sane token: too long, or with a space or a quote.
    for (const insane of ['x'.repeat(129), 'two words', 'quote"d']) {
      const c = await open(`ws://127.0.0.1:${ports.trusted}/ws`, { 'X-Request-Id': insane });
      const id = c.answer.headers['x-request-id'] as string;
      expect(id).toMatch(NEW_ID);
      expect((backend.requests.at(-1) as IncomingMessage).headers['x-request-id']).toBe(id);
      c.close();
    }
    // Ids made here differ (unique per connection).
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const c = await open(`ws://127.0.0.1:${ports.untrusted}/ws`, {});
      ids.add(c.answer.headers['x-request-id'] as string);
      c.close();
    }
    expect(ids.size).toBe(20);
  });

  it('a refusal carries the id in its answer and its log line; so does a plain HTTP answer', async () => {
    const { cli, ports } = await start(workers);
    const res = await refused(`ws://127.0.0.1:${ports.trusted}/nowhere`, { 'X-Request-Id': 'refused-1' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['x-request-id']).toBe('refused-1');
    const line = await cli.logLine('handshake rejected', (l) => l.requestId === 'refused-1');
    expect(line).toMatchObject({ event: 'rejected', status: 404, code: 'WSG_NO_ROUTE' });

    const untrusted = await refused(`ws://127.0.0.1:${ports.untrusted}/nowhere`, { 'X-Request-Id': 'refused-2' });
    const made = untrusted.headers['x-request-id'] as string;
    expect(made).toMatch(NEW_ID);
    await cli.logLine('handshake rejected', (l) => l.requestId === made);

    const plain = await fetch(`http://127.0.0.1:${ports.trusted}/ws/plain`, {
      headers: { 'X-Request-Id': 'plain-1', traceparent: TRACEPARENT },
    });
    expect(await plain.text()).toBe('plain a');
    expect(plain.headers.get('x-request-id')).toBe('plain-1');
    const plainRefused = await fetch(`http://127.0.0.1:${ports.untrusted}/nowhere`);
    expect(plainRefused.status).toBe(404);
    expect(plainRefused.headers.get('x-request-id')).toMatch(NEW_ID);
  });
});
