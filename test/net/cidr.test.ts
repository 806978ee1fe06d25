import { describe, expect, it } from 'vitest';
import { CidrList, parseCidr } from '../../src/net/cidr.js';

describe('parseCidr', () => {
  it('accepts IPv4 and IPv6 blocks and single addresses', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ ok: true, address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseCidr('2001:db8::/32')).toEqual({ ok: true, address: '2001:db8::', prefix: 32, family: 'ipv6' });
    expect(parseCidr('127.0.0.1')).toEqual({ ok: true, address: '127.0.0.1', prefix: 32, family: 'ipv4' });
    expect(parseCidr('::1')).toEqual({ ok: true, address: '::1', prefix: 128, family: 'ipv6' });
    expect(parseCidr('0.0.0.0/0')).toMatchObject({ ok: true, prefix: 0 });
  });

  it.each([
    ['10.0.0.0/33', 'prefix length after / must be 0 to 32'],
    ['::/129', 'prefix length after / must be 0 to 128'],
    ['10.0.0.0/', 'prefix length'],
    ['10.0.0.0/08', 'prefix length'],
    ['10.0.0.0/-1', 'prefix length'],
    ['10.0.0/8', 'not an IPv4 or IPv6 address'],
    ['example.com/8', 'not an IPv4 or IPv6 address'],
    ['', 'not an IPv4 or IPv6 address'],
    ['10.0.0.0/8/8', 'prefix length'],
  ])('refuses %j', (text, message) => {
    const parsed = parseCidr(text);
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? '' : parsed.error).toContain(message);
  });
});

describe('CidrList', () => {
  const list = new CidrList(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::1/128']);

  it('matches addresses inside each block, edges included, and nothing outside', () => {
    for (const inside of ['10.0.0.0', '10.255.255.255', '192.168.1.7', '2001:db8::', '2001:db8:ffff:ffff::1', '::1']) {
      expect(list.has(inside), inside).toBe(true);
    }
    for (const outside of ['9.255.255.255', '11.0.0.0', '192.168.1.8', '2001:db9::', '::2', '127.0.0.1']) {
      expect(list.has(outside), outside).toBe(false);
    }
  });

  it('an IPv4-mapped IPv6 address matches the IPv4 block it maps to', () => {
    expect(list.has('::ffff:10.1.2.3')).toBe(true);
    expect(list.has('::ffff:11.1.2.3')).toBe(false);
  });

  it('anything that is not an address is not in the list', () => {
    for (const junk of ['', 'unknown', '10.0.0.1:80', '[::1]', '10.0.0', 'fe80::1%eth0x'])
      expect(list.has(junk)).toBe(false);
  });

  it('an empty list holds nothing; a bad entry throws', () => {
    expect(new CidrList([]).has('10.0.0.1')).toBe(false);
    expect(new CidrList([]).empty).toBe(true);
    expect(() => new CidrList(['10.0.0.0/40'])).toThrow(/prefix length/);
  });
});
