// routes[].access address lists: deny first, an absent allow lets everyone else in, IPv4-mapped IPv6 meets the
// IPv4 entries, and the boundaries of /0, /32 and /128 blocks fall where they should.

import { describe, expect, it } from 'vitest';
import { AddressList } from '../../src/access/address-list.js';

describe('AddressList', () => {
  it('checks deny before allow', () => {
    const list = new AddressList({ allow: ['10.0.0.0/8'], deny: ['10.9.0.0/16'] });
    expect(list.check('10.1.2.3')).toBeUndefined();
    expect(list.check('10.9.0.1')).toBe('denied_address');
    expect(list.check('192.0.2.1')).toBe('not_allowed_address');
  });

  it('lets every address not denied in when allow is absent', () => {
    const list = new AddressList({ allow: undefined, deny: ['192.0.2.0/24'] });
    expect(list.check('198.51.100.7')).toBeUndefined();
    expect(list.check('2001:db8::1')).toBeUndefined();
    expect(list.check('192.0.2.255')).toBe('denied_address');
  });

  it('an empty allow list lets nobody in', () => {
    expect(new AddressList({ allow: [], deny: [] }).check('127.0.0.1')).toBe('not_allowed_address');
  });

  it('matches an IPv4-mapped IPv6 address against IPv4 entries, in dotted and hex form', () => {
    const list = new AddressList({ allow: ['10.0.0.0/8'], deny: ['10.9.0.0/16'] });
    expect(list.check('::ffff:10.1.2.3')).toBeUndefined();
    expect(list.check('::FFFF:10.9.1.1')).toBe('denied_address');
    expect(list.check('::ffff:a01:203')).toBeUndefined(); // 10.1.2.3
    expect(list.check('::ffff:c000:201')).toBe('not_allowed_address'); // 192.0.2.1
  });

  it('matches an IPv4 address against an IPv4-mapped IPv6 entry', () => {
    const list = new AddressList({ allow: undefined, deny: ['::ffff:10.0.0.0/104'] });
    expect(list.check('10.200.1.1')).toBe('denied_address');
    expect(list.check('11.0.0.1')).toBeUndefined();
  });

  it('/32 and /128 entries hold exactly one address', () => {
    const list = new AddressList({ allow: undefined, deny: ['192.0.2.10/32', '2001:db8::10/128'] });
    expect(list.check('192.0.2.10')).toBe('denied_address');
    expect(list.check('192.0.2.9')).toBeUndefined();
    expect(list.check('192.0.2.11')).toBeUndefined();
    expect(list.check('2001:db8::10')).toBe('denied_address');
    expect(list.check('2001:db8::f')).toBeUndefined();
    expect(list.check('2001:db8::11')).toBeUndefined();
  });

  it('block edges: the first and last address are in, their neighbours out', () => {
    const list = new AddressList({ allow: ['10.0.0.0/8', '2001:db8::/32'], deny: [] });
    expect(list.check('10.0.0.0')).toBeUndefined();
    expect(list.check('10.255.255.255')).toBeUndefined();
    expect(list.check('9.255.255.255')).toBe('not_allowed_address');
    expect(list.check('11.0.0.0')).toBe('not_allowed_address');
    expect(list.check('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff')).toBeUndefined();
    expect(list.check('2001:db9::')).toBe('not_allowed_address');
    expect(list.check('2001:db7:ffff:ffff:ffff:ffff:ffff:ffff')).toBe('not_allowed_address');
  });

  it('0.0.0.0/0 covers every IPv4 address (and mapped ones) but no IPv6; ::/0 covers both', () => {
    const v4 = new AddressList({ allow: undefined, deny: ['0.0.0.0/0'] });
    expect(v4.check('0.0.0.0')).toBe('denied_address');
    expect(v4.check('255.255.255.255')).toBe('denied_address');
    expect(v4.check('::ffff:1.2.3.4')).toBe('denied_address');
    expect(v4.check('::1')).toBeUndefined();
    const v6 = new AddressList({ allow: undefined, deny: ['::/0'] });
    expect(v6.check('::1')).toBe('denied_address');
    expect(v6.check('1.2.3.4')).toBe('denied_address');
  });

  it('something that is not an address is never allowed and never matches deny', () => {
    const list = new AddressList({ allow: ['0.0.0.0/0', '::/0'], deny: ['0.0.0.0/0'] });
    expect(list.check('')).toBe('not_allowed_address');
    expect(list.check('not-an-ip')).toBe('not_allowed_address');
  });
});
