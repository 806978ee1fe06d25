// A plain request's body on its way to undici (src/http/request-body.ts): relayed with backpressure, cut when it
// breaks or stalls (each told once), and let go of cleanly. A PassThrough stands in for node's IncomingMessage:
// the relay only uses its stream side and its events.

import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RequestBody } from '../../src/http/request-body.js';
import { REQUEST_BODY_FAILED } from '../../src/listen/listener.js';

afterEach(() => {
  vi.useRealTimers();
});

function source(): PassThrough & IncomingMessage {
  return new PassThrough() as PassThrough & IncomingMessage;
}

async function readAll(body: RequestBody): Promise<string> {
  let out = '';
  for await (const chunk of body) out += (chunk as Buffer).toString();
  return out;
}

describe('relaying', () => {
  it('every byte in order, then the end; no failure', async () => {
    const req = source();
    const failures: string[] = [];
    const body = new RequestBody(req, 1000, (r) => failures.push(r));
    const read = readAll(body);
    req.write('abc');
    req.write('def');
    req.end();
    expect(await read).toBe('abcdef');
    expect(failures).toEqual([]);
  });

  it('pauses the request while undici does not read; what it then reads is every byte', async () => {
    const req = source();
    const body = new RequestBody(req, 1000, () => {});
    for (let i = 0; i < 8; i++) req.write(Buffer.alloc(16 * 1024, 0x61 + i));
    req.end();
    await new Promise((r) => setImmediate(r));
    expect(req.isPaused()).toBe(true);
    const all = await readAll(body);
    expect(all.length).toBe(8 * 16 * 1024);
    expect([...new Set(all)].join('')).toBe('abcdefgh');
  });
});

describe('failures', () => {
  it('a body that stalls for the stall time: timeout, told once; bytes before it did not count as a stall', () => {
    vi.useFakeTimers();
    const req = source();
    const failures: string[] = [];
    const body = new RequestBody(req, 1000, (r, d) => failures.push(`${r}: ${d}`));
    body.resume();
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(900);
      req.write('x');
    }
    expect(failures).toEqual([]);
    vi.advanceTimersByTime(1001);
    vi.advanceTimersByTime(5000);
    expect(failures).toEqual(['timeout: no request body byte for 1000 ms']);
  });

  it("the listener's parse error: malformed; node's requestTimeout: timeout; told once, the stall timer stopped", () => {
    vi.useFakeTimers();
    for (const [code, reason] of [
      ['HPE_INVALID_CHUNK_SIZE', 'malformed'],
      ['ERR_HTTP_REQUEST_TIMEOUT', 'timeout'],
    ] as const) {
      const req = source();
      const failures: string[] = [];
      new RequestBody(req, 1000, (r, d) => failures.push(`${r}: ${d}`));
      req.emit(REQUEST_BODY_FAILED, Object.assign(new Error('bad'), { code }));
      req.emit(REQUEST_BODY_FAILED, Object.assign(new Error('bad'), { code }));
      vi.advanceTimersByTime(5000);
      expect(failures).toEqual([`${reason}: ${code}`]);
    }
  });

  it('destroyed by undici (it gave up on the request): the request is left alone, drained, and nothing is told', () => {
    vi.useFakeTimers();
    const req = source();
    const failures: string[] = [];
    const body = new RequestBody(req, 1000, (r) => failures.push(r));
    body.destroy();
    expect(req.destroyed).toBe(false);
    expect(req.isPaused()).toBe(false);
    expect(req.listenerCount('data')).toBe(0);
    req.emit(REQUEST_BODY_FAILED, new Error('late'));
    vi.advanceTimersByTime(5000);
    expect(failures).toEqual([]);
  });
});
