// A tiny authoritative DNS server on 127.0.0.1 UDP port 0 (RFC 1035 §4): answers A and AAAA queries from a
// mutable table with TTL 0 (so no resolver caches), NODATA for names without records of the asked type, and
// SERVFAIL for everything while `failing` is set. Enough for node:dns `Resolver.setServers(['127.0.0.1:port'])`.

import { createSocket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';

const TYPE_A = 1;
const TYPE_AAAA = 28;
const RCODE_SERVFAIL = 2;

export interface DnsStub {
  readonly port: number;
  /** "127.0.0.1:port", for setServers or `discovery.nameservers`. */
  readonly server: string;
  /** name → addresses (IPv4 and IPv6 mixed); edit freely between lookups. */
  readonly records: Map<string, string[]>;
  /** While true, every query gets SERVFAIL. */
  failing: boolean;
  /** Queries received, by "name type". */
  readonly queries: string[];
  close(): Promise<void>;
}

export async function startDnsStub(): Promise<DnsStub> {
  const socket = createSocket('udp4');
  const stub = {
    port: 0,
    server: '',
    records: new Map<string, string[]>(),
    failing: false,
    queries: [] as string[],
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
  socket.on('message', (query, peer) => {
    const answer = answerFor(query, stub);
    if (answer) socket.send(answer, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  stub.port = socket.address().port;
  stub.server = `127.0.0.1:${stub.port}`;
  return stub;
}

function answerFor(query: Buffer, stub: DnsStub): Buffer | undefined {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return undefined;
  // Question: labels, then QTYPE and QCLASS.
  const labels: string[] = [];
  let offset = 12;
  while (offset < query.length && query[offset] !== 0) {
    const length = query[offset] as number;
    labels.push(query.toString('latin1', offset + 1, offset + 1 + length));
    offset += 1 + length;
  }
  const questionEnd = offset + 5;
  if (questionEnd > query.length) return undefined;
  const type = query.readUInt16BE(offset + 1);
  const name = labels.join('.').toLowerCase();
  stub.queries.push(`${name} ${type}`);

  const rdatas: Buffer[] = [];
  if (!stub.failing) {
    for (const address of stub.records.get(name) ?? []) {
      if (type === TYPE_A && isIPv4(address)) rdatas.push(Buffer.from(address.split('.').map(Number)));
      if (type === TYPE_AAAA && isIPv6(address)) rdatas.push(ipv6Bytes(address));
    }
  }
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // id
  // QR, opcode 0, AA, RD copied, RA; rcode.
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | (stub.failing ? RCODE_SERVFAIL : 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdatas.length, 6);
  const answers = rdatas.map((rdata) => {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    rr.writeUInt16BE(type, 2);
    rr.writeUInt16BE(1, 4); // class IN
    rr.writeUInt32BE(0, 6); // TTL 0: never cached
    rr.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([rr, rdata]);
  });
  return Buffer.concat([header, query.subarray(12, questionEnd), ...answers]);
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::')
    ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups]
    : headGroups;
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return out;
}
