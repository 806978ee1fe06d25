// The PROXY protocol reader (HAProxy's proxy-protocol.txt v1 §2.1, v2 §2.2) against hand-built headers from the
// spec's examples, split at every byte, and against what wsgate's own encoder (src/upstream/proxy-header.ts) sends.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ProxyHeader,
  ProxyHeaderReader,
  type ProxyProtocolVersion,
  type ProxyReadStep,
  V1_MAX_BYTES,
  V2_MAX_BUFFERED_BYTES,
} from '../../src/listen/proxy-protocol.js';
import { localProxyHeader, proxyHeaderFor } from '../../src/upstream/proxy-header.js';

const SIG = '0d0a0d0a000d0a515549540a';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** Feeds `chunks` in order; the final step, with every 'more' before it. */
function feed(version: ProxyProtocolVersion, chunks: readonly Buffer[]): ProxyReadStep {
  const reader = new ProxyHeaderReader(version);
  let step: ProxyReadStep = { status: 'more' };
  for (const chunk of chunks) {
    step = reader.push(chunk);
    if (step.status !== 'more') return step;
  }
  return step;
}

/** Every way to cut `bytes` in two, plus one byte at a time: all must read the same. */
function everySplit(bytes: Buffer): Buffer[][] {
  const splits: Buffer[][] = [[bytes], [...bytes].map((b) => Buffer.from([b]))];
  for (let i = 1; i < bytes.length; i++) splits.push([bytes.subarray(0, i), bytes.subarray(i)]);
  return splits;
}

/** Reads `chunks` as a connection would: the header, and every byte after it (the rest, then later chunks). */
function readAll(version: ProxyProtocolVersion, chunks: readonly Buffer[]): { header?: ProxyHeader; after: string } {
  const reader = new ProxyHeaderReader(version);
  let header: ProxyHeader | undefined;
  let after = '';
  for (const chunk of chunks) {
    if (header) {
      after += chunk.toString('latin1');
      continue;
    }
    const step = reader.push(chunk);
    if (step.status === 'invalid') throw new Error(step.reason);
    if (step.status === 'done') {
      header = step.header;
      after += step.rest.toString('latin1');
    }
  }
  return header ? { header, after } : { after };
}

function expectDone(step: ProxyReadStep, header: ProxyHeader, rest = ''): void {
  expect(step.status).toBe('done');
  if (step.status !== 'done') return;
  expect(step.header).toEqual(header);
  expect(step.rest.toString('latin1')).toBe(rest);
}

const GET = 'GET / HTTP/1.1\r\n';

describe('v1', () => {
  const tcp4 = Buffer.from(`PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n${GET}`, 'latin1');
  const header4: ProxyHeader = {
    kind: 'proxied',
    version: 1,
    sourceAddress: '192.0.2.10',
    sourcePort: 56324,
    destinationAddress: '198.51.100.1',
    destinationPort: 443,
  };

  it('reads TCP4 split at every byte, and hands back what follows', () => {
    for (const chunks of everySplit(tcp4)) expect(readAll('v1', chunks)).toEqual({ header: header4, after: GET });
  });

  it('reads TCP6 and UNKNOWN (with and without the optional rest of the line)', () => {
    expectDone(feed('v1', [Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1000 80\r\n')]), {
      kind: 'proxied',
      version: 1,
      sourceAddress: '2001:db8::1',
      sourcePort: 1000,
      destinationAddress: '2001:db8::2',
      destinationPort: 80,
    });
    expectDone(feed('v1', [Buffer.from('PROXY UNKNOWN\r\n')]), { kind: 'unknown', version: 1 });
    expectDone(feed('v1', [Buffer.from('PROXY UNKNOWN ffff:f...f:ffff 1 2 3\r\n')]), { kind: 'unknown', version: 1 });
  });

  it.each([
    ['TCP4 with an IPv6 address', 'PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n'],
    ['a port above 65535', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n'],
    ['a port with a leading zero', 'PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n'],
    ['two spaces', 'PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n'],
    ['a missing field', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'],
    ['an unknown protocol', 'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['lower case', 'proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['a bare LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'],
    ['an address of letters', 'PROXY TCP4 a.b.c.d 5.6.7.8 1 2\r\n'],
  ])('refuses %s', (_what, line) => {
    expect(feed('v1', [Buffer.from(line, 'latin1')]).status).toBe('invalid');
  });

  it('refuses a line that reaches 107 bytes without its CRLF, having buffered no more than that', () => {
    const long = Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`, 'latin1');
    const reader = new ProxyHeaderReader('v1');
    let step: ProxyReadStep = { status: 'more' };
    let fed = 0;
    for (const byte of long) {
      step = reader.push(Buffer.from([byte]));
      fed++;
      if (step.status !== 'more') break;
    }
    expect(step.status).toBe('invalid');
    expect(fed).toBeLessThanOrEqual(V1_MAX_BYTES);
  });

  it('refuses at the first byte that cannot begin a v1 header (an HTTP request, a TLS hello, a v2 header)', () => {
    expect(feed('v1', [Buffer.from('G')]).status).toBe('invalid');
    expect(feed('v1', [hex('16 03 01')]).status).toBe('invalid');
    expect(feed('v1', [hex(SIG)]).status).toBe('invalid');
  });
});

describe('v2', () => {
  const inet = hex(`${SIG} 21 11 000c c000020a c6336401 dc04 01bb`);
  const inetHeader: ProxyHeader = {
    kind: 'proxied',
    version: 2,
    sourceAddress: '192.0.2.10',
    sourcePort: 56324,
    destinationAddress: '198.51.100.1',
    destinationPort: 443,
  };

  it('reads an IPv4 header split at every byte, and hands back what follows', () => {
    for (const chunks of everySplit(Buffer.concat([inet, Buffer.from(GET)]))) {
      expect(readAll('v2', chunks)).toEqual({ header: inetHeader, after: GET });
    }
  });

  it('reads IPv6 (RFC 5952 text), and an IPv4-mapped IPv6 address as ::ffff:a.b.c.d', () => {
    const v6 = hex(`${SIG} 21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 0050 1f90`);
    expectDone(feed('v2', [v6]), {
      kind: 'proxied',
      version: 2,
      sourceAddress: '2001:db8::1',
      sourcePort: 80,
      destinationAddress: '2001:db8::2',
      destinationPort: 8080,
    });
    const mapped = hex(`${SIG} 21 21 0024 00000000000000000000ffff0a000001 20010db8000000000000000000000002 0050 1f90`);
    const step = feed('v2', [mapped]);
    expect(step.status === 'done' && step.header.kind === 'proxied' && step.header.sourceAddress).toBe(
      '::ffff:10.0.0.1',
    );
  });

  it('LOCAL (a balancer health check) and UNSPEC/UNIX families leave the socket address standing', () => {
    expectDone(feed('v2', [hex(`${SIG} 20 00 0000`)]), { kind: 'local', version: 2 });
    // LOCAL may still carry addresses and TLVs: skipped.
    expectDone(feed('v2', [hex(`${SIG} 20 11 000c c000020a c6336401 dc04 01bb`), Buffer.from('GET')]), {
      kind: 'local',
      version: 2,
    });
    expectDone(feed('v2', [hex(`${SIG} 21 00 0000`)]), { kind: 'unknown', version: 2 });
    expectDone(feed('v2', [Buffer.concat([hex(`${SIG} 21 31 00d8`), Buffer.alloc(216)])]), {
      kind: 'unknown',
      version: 2,
    });
  });

  it('skips TLVs by count, across chunks, without buffering them (even the 65,535 bytes a length allows)', () => {
    const tlvs = Buffer.alloc(65_535 - 12, 0xaa);
    const header = Buffer.concat([hex(`${SIG} 21 11 ffff c000020a c6336401 dc04 01bb`), tlvs, Buffer.from('GET')]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < header.length; i += 1000) chunks.push(header.subarray(i, i + 1000));
    const reader = new ProxyHeaderReader('v2');
    let step: ProxyReadStep = { status: 'more' };
    for (const chunk of chunks) {
      step = reader.push(chunk);
      expect((reader as unknown as { buffered: Buffer }).buffered.length).toBeLessThanOrEqual(V2_MAX_BUFFERED_BYTES);
      if (step.status !== 'more') break;
    }
    expectDone(step, inetHeader, 'GET');
  });

  it.each([
    ['version 1 in the version nibble', `${SIG} 11 11 000c c000020a c6336401 dc04 01bb`],
    ['command 2', `${SIG} 22 11 000c c000020a c6336401 dc04 01bb`],
    ['a length shorter than the IPv4 address block', `${SIG} 21 11 000b c000020a c6336401 dc04 01`],
    ['a length shorter than the IPv6 address block', `${SIG} 21 21 000c c000020a c6336401 dc04 01bb`],
    ['family 4', `${SIG} 21 41 0000`],
    ['a datagram transport', `${SIG} 21 12 000c c000020a c6336401 dc04 01bb`],
    ['a wrong signature byte', `0d0a0d0a000d0a515549540b 21 11 000c c000020a c6336401 dc04 01bb`],
  ])('refuses %s', (_what, bytes) => {
    expect(feed('v2', [hex(bytes)]).status).toBe('invalid');
  });

  it('refuses a v1 header on a v2 listener at once', () => {
    expect(feed('v2', [Buffer.from('P')]).status).toBe('invalid');
  });

  it('a truncated header asks for more, never reads past what it was given', () => {
    for (let n = 0; n < inet.length; n++) expect(feed('v2', [inet.subarray(0, n)]).status).toBe('more');
  });
});

describe('any', () => {
  it('takes either version by its first bytes', () => {
    expect(feed('any', [Buffer.from('PROXY UNKNOWN\r\n')])).toMatchObject({ status: 'done', header: { version: 1 } });
    expect(feed('any', [hex(`${SIG} 20 00 0000`)])).toMatchObject({ status: 'done', header: { version: 2 } });
    expect(feed('any', [Buffer.from('GET / HTTP/1.1\r\n')]).status).toBe('invalid');
  });
});

describe('what wsgate sends to backends reads back the same', () => {
  const ipv4 = fc.ipV4();
  const ipv6 = fc.ipV6();
  const port = fc.integer({ min: 0, max: 65535 });

  it('v1 and v2, IPv4 and IPv6, split anywhere', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('v1' as const, 'v2' as const),
        fc.oneof(fc.tuple(ipv4, ipv4), fc.tuple(ipv6, ipv6)),
        port,
        port,
        fc.nat(),
        (version, [src, dst], sport, dport, cut) => {
          const bytes = proxyHeaderFor(version, { address: src, port: sport }, { address: dst, port: dport });
          const at = cut % (bytes.length + 1);
          const step = feed(version, [bytes.subarray(0, at), bytes.subarray(at)]);
          expect(step.status).toBe('done');
          if (step.status !== 'done' || step.header.kind !== 'proxied') throw new Error('not proxied');
          expect(step.header.sourcePort).toBe(sport);
          expect(step.header.destinationPort).toBe(dport);
          expect(canonical(step.header.sourceAddress)).toBe(canonical(src));
          expect(canonical(step.header.destinationAddress)).toBe(canonical(dst));
        },
      ),
      { numRuns: 500, seed: 13 },
    );
  });

  it('an IPv4 client beside an IPv6 listener address goes as IPv4-mapped IPv6', () => {
    const bytes = proxyHeaderFor('v2', { address: '10.1.2.3', port: 5 }, { address: '2001:db8::1', port: 443 });
    const step = feed('v2', [bytes]);
    expect(step.status === 'done' && step.header.kind === 'proxied' && step.header.sourceAddress).toBe(
      '::ffff:10.1.2.3',
    );
  });

  it('health checks send LOCAL (v2) or UNKNOWN (v1)', () => {
    expect(feed('v2', [localProxyHeader('v2')])).toMatchObject({ status: 'done', header: { kind: 'local' } });
    expect(feed('v1', [localProxyHeader('v1')])).toMatchObject({ status: 'done', header: { kind: 'unknown' } });
  });
});

/** An address in one canonical text form, to compare what went out with what came back. */
function canonical(address: string): string {
  return new URL(`http://[${address.includes(':') ? address : `::ffff:${address}`}]/`).hostname;
}
