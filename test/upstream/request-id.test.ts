// Request ids and trace context (src/upstream/request-id.ts): whose id is believed, what a made id looks like,
// which traceparent values pass (W3C Trace Context §3.2), and that the backend gets exactly one of each.

import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { forwardedHeaders } from '../../src/upstream/request.js';
import { identify, isTraceparent, newRequestId } from '../../src/upstream/request-id.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('identify', () => {
  it('believes a sane X-Request-Id only from a trusted peer', () => {
    const raw = ['Host', 'a', 'X-Request-Id', 'lb-1:2/3+4=5~6.7_8'];
    expect(identify(raw, true).id).toBe('lb-1:2/3+4=5~6.7_8');
    expect(identify(raw, false).id).not.toBe('lb-1:2/3+4=5~6.7_8');
  });

  it('replaces ids that are too long, empty, repeated or carry unsafe characters', () => {
    for (const raw of [
      ['x-request-id', 'x'.repeat(129)],
      ['x-request-id', ''],
      ['x-request-id', 'a b'],
      ['x-request-id', 'a\u00e9'],
      ['x-request-id', 'one', 'X-Request-Id', 'two'],
    ]) {
      expect(identify(raw, true).id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    }
    expect(identify(['x-request-id', 'x'.repeat(128)], true).id).toBe('x'.repeat(128));
  });

  it('passes a well-formed traceparent on and drops malformed or repeated ones', () => {
    expect(identify(['traceparent', TRACEPARENT], false).traceparent).toBe(TRACEPARENT);
    expect(identify(['traceparent', TRACEPARENT, 'traceparent', TRACEPARENT], false).traceparent).toBeUndefined();
    expect(identify(['traceparent', 'garbage'], false).traceparent).toBeUndefined();
  });
});

describe('isTraceparent', () => {
  it('follows W3C Trace Context §3.2', () => {
    expect(isTraceparent(TRACEPARENT)).toBe(true);
    expect(isTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future')).toBe(true);
    expect(isTraceparent(`${TRACEPARENT}-extra`)).toBe(false); // version 00 has exactly four fields
    expect(isTraceparent('ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toBe(false);
    expect(isTraceparent('00-00000000000000000000000000000000-00f067aa0ba902b7-01')).toBe(false);
    expect(isTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01')).toBe(false);
    expect(isTraceparent('00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01')).toBe(false);
    expect(isTraceparent('00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01')).toBe(false);
  });
});

describe('newRequestId', () => {
  it('is 22 base64url characters, unique, and starts with the time so ids sort roughly by it', () => {
    const ids = Array.from({ length: 2000 }, () => newRequestId());
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const ms = Buffer.from(ids[0] as string, 'base64url').readUIntBE(0, 6);
    expect(Math.abs(ms - Date.now())).toBeLessThan(5000);
  });
});

describe('forwardedHeaders with an identity', () => {
  it('sends exactly one X-Request-Id and traceparent: ours, the client’s copies dropped', () => {
    const req = new IncomingMessage(new Socket());
    req.url = '/poll';
    req.rawHeaders = ['Host', 'a', 'X-Request-Id', 'client', 'traceparent', 'bad', 'x-request-id', 'again'];
    req.headers = { host: 'a' };
    const headers = forwardedHeaders(req, {
      clientAddress: '192.0.2.1',
      secure: false,
      identity: { id: 'ours', traceparent: TRACEPARENT },
    });
    const named = (name: string) => headers.filter((_h, i) => i % 2 === 1 && headers[i - 1]?.toLowerCase() === name);
    expect(named('x-request-id')).toEqual(['ours']);
    expect(named('traceparent')).toEqual([TRACEPARENT]);
  });
});
