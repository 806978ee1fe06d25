// The client behind trusted L7 proxies: X-Forwarded-For (or RFC 7239 Forwarded) walked from the right, as nginx's
// real_ip_recursive on does.

import { describe, expect, it } from 'vitest';
import { forwardedClient } from '../../src/listen/forwarded-for.js';
import { CidrList } from '../../src/net/cidr.js';

const trusted = new CidrList(['10.0.0.0/8', '127.0.0.1/32', '::1/128']);

function client(peer: string, ...headers: [string, string][]): string {
  return forwardedClient(peer, headers.flat(), trusted);
}

describe('forwardedClient', () => {
  it('an untrusted peer is the client, whatever it claims', () => {
    expect(client('203.0.113.9', ['X-Forwarded-For', '1.1.1.1'])).toBe('203.0.113.9');
    expect(client('203.0.113.9', ['Forwarded', 'for=1.1.1.1'])).toBe('203.0.113.9');
  });

  it('a trusted peer without forwarding headers is the client', () => {
    expect(client('10.0.0.5')).toBe('10.0.0.5');
  });

  it('walks from the right past trusted proxies to the first untrusted address', () => {
    expect(client('10.0.0.5', ['X-Forwarded-For', '198.51.100.7'])).toBe('198.51.100.7');
    expect(client('10.0.0.5', ['X-Forwarded-For', '6.6.6.6, 198.51.100.7, 10.1.1.1, 10.2.2.2'])).toBe('198.51.100.7');
  });

  it('a spoofed entry left of the real client is never taken', () => {
    // The client sent "X-Forwarded-For: 10.9.9.9" (a trusted-looking address); the balancer appended the client.
    expect(client('10.0.0.5', ['X-Forwarded-For', '10.9.9.9, 198.51.100.7'])).toBe('198.51.100.7');
  });

  it('several header lines are one list, in order', () => {
    expect(client('10.0.0.5', ['X-Forwarded-For', '6.6.6.6'], ['x-forwarded-for', '198.51.100.7, 10.3.3.3'])).toBe(
      '198.51.100.7',
    );
  });

  it('a malformed entry ends the walk: the last trusted address stands', () => {
    expect(client('10.0.0.5', ['X-Forwarded-For', '198.51.100.7, garbage'])).toBe('10.0.0.5');
    expect(client('10.0.0.5', ['X-Forwarded-For', '198.51.100.7, garbage, 10.4.4.4'])).toBe('10.4.4.4');
    expect(client('10.0.0.5', ['X-Forwarded-For', ''])).toBe('10.0.0.5');
    expect(client('10.0.0.5', ['X-Forwarded-For', '198.51.100.7,'])).toBe('10.0.0.5');
  });

  it('every entry trusted: the leftmost one is the client', () => {
    expect(client('10.0.0.5', ['X-Forwarded-For', '10.1.1.1, 10.2.2.2'])).toBe('10.1.1.1');
  });

  it('takes ports and brackets some balancers add, and IPv6 (IPv4-mapped as IPv4)', () => {
    expect(client('10.0.0.5', ['X-Forwarded-For', '198.51.100.7:4711'])).toBe('198.51.100.7');
    expect(client('10.0.0.5', ['X-Forwarded-For', '[2001:db8::7]:443'])).toBe('2001:db8::7');
    expect(client('10.0.0.5', ['X-Forwarded-For', '2001:db8::7'])).toBe('2001:db8::7');
    expect(client('::1', ['X-Forwarded-For', '::ffff:198.51.100.7'])).toBe('198.51.100.7');
    expect(client('10.0.0.5', ['X-Forwarded-For', '198.51.100.7:99999'])).toBe('10.0.0.5');
  });

  it('RFC 7239 Forwarded: for= tokens and quoted strings, when there is no X-Forwarded-For', () => {
    expect(client('10.0.0.5', ['Forwarded', 'for=198.51.100.7;proto=https;by=10.0.0.5'])).toBe('198.51.100.7');
    expect(client('10.0.0.5', ['Forwarded', 'for="[2001:db8:cafe::17]:4711", for=10.1.1.1'])).toBe('2001:db8:cafe::17');
    expect(client('10.0.0.5', ['Forwarded', 'For=198.51.100.7'])).toBe('198.51.100.7');
    expect(client('10.0.0.5', ['Forwarded', 'for=unknown'])).toBe('10.0.0.5');
    expect(client('10.0.0.5', ['Forwarded', 'for=_hidden, for=198.51.100.7'])).toBe('198.51.100.7');
    expect(client('10.0.0.5', ['Forwarded', 'proto=https'])).toBe('10.0.0.5');
    // X-Forwarded-For wins when both are there.
    expect(client('10.0.0.5', ['Forwarded', 'for=1.1.1.1'], ['X-Forwarded-For', '198.51.100.7'])).toBe('198.51.100.7');
  });

  it('10,000 entries: answered, and never with a spoofed address', () => {
    const spoofed = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.1`).join(', ');
    expect(client('10.0.0.5', ['X-Forwarded-For', `${spoofed}, 198.51.100.7`])).toBe('198.51.100.7');
    // All trusted-looking: the leftmost, which is still inside the trusted range (not an outside address).
    expect(trusted.has(client('10.0.0.5', ['X-Forwarded-For', spoofed]))).toBe(true);
  });
});
