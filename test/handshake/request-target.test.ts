import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { toOriginForm } from '../../src/handshake/request-target.js';

function request(url: string, host = 'original.example'): IncomingMessage {
  return { url, headers: { host }, rawHeaders: ['X-A', '1', 'HOST', host] } as unknown as IncomingMessage;
}

describe('toOriginForm', () => {
  it('leaves origin-form and asterisk-form alone', () => {
    for (const url of ['/', '/ws?room=1', '*']) {
      const req = request(url);
      expect(toOriginForm(req)).toBe(true);
      expect(req.url).toBe(url);
      expect(req.headers.host).toBe('original.example');
    }
  });

  it.each([
    ['http://chat.example.com/ws?room=1', '/ws?room=1', 'chat.example.com'],
    ['HTTPS://chat.example.com:8443/a/b', '/a/b', 'chat.example.com:8443'],
    ['ws://[::1]:9000/ws', '/ws', '[::1]:9000'],
    ['wss://h.example', '/', 'h.example'],
    ['http://h.example?x=1', '/?x=1', 'h.example'],
  ])('rewrites %s to path %s and Host %s', (url, path, host) => {
    const req = request(url);
    expect(toOriginForm(req)).toBe(true);
    expect(req.url).toBe(path);
    expect(req.headers.host).toBe(host);
    // The raw headers say the same, so nothing reading them (hash keys, the upstream request) sees the old Host.
    expect(req.rawHeaders).toEqual(['X-A', '1', 'HOST', host]);
  });

  it('adds Host to the raw headers when the request had none', () => {
    const req = { url: 'http://h.example/ws', headers: {}, rawHeaders: [] } as unknown as IncomingMessage;
    expect(toOriginForm(req)).toBe(true);
    expect(req.rawHeaders).toEqual(['Host', 'h.example']);
  });

  it.each([
    'ws',
    'chat.example.com:443',
    'ftp://h.example/x',
    'http://user:pw@h.example/ws',
    'http:///ws',
    'http://h.example/ws#frag',
    '',
  ])('refuses %j', (url) => {
    const req = request(url);
    expect(toOriginForm(req)).toBe(false);
    expect(req.headers.host).toBe('original.example');
    expect(req.rawHeaders).toEqual(['X-A', '1', 'HOST', 'original.example']);
  });
});
