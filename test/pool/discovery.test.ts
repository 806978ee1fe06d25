// DNS discovery: A/AAAA answers through an injected resolver and through a real UDP DNS stub, adding and removing
// members, and keeping the last good set when a lookup fails.

import { Resolver } from 'node:dns/promises';
import { describe, expect, it } from 'vitest';
import { type AddressResolver, backendAt, lookupAddresses } from '../../src/pool/discovery.js';
import { Pool } from '../../src/pool/pool.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type DnsStub, startDnsStub } from '../helpers/dns-stub.js';
import { waitFor } from '../helpers/wait.js';
import { type FakeTunnel, poolConfig } from './fixtures.js';

const cleanups = cleanupAfterEach();

function dnsError(code: string): Error {
  return Object.assign(new Error(`query failed: ${code}`), { code });
}

/** A resolver answering from a table; `fail` makes every query fail with that code. */
function tableResolver(table: Map<string, string[]>): AddressResolver & { fail: string | undefined } {
  const answer = (name: string, v6: boolean) => {
    if (resolver.fail) return Promise.reject(dnsError(resolver.fail));
    const found = (table.get(name) ?? []).filter((a) => a.includes(':') === v6);
    return found.length > 0 ? Promise.resolve(found) : Promise.reject(dnsError('ENODATA'));
  };
  const resolver = {
    fail: undefined as string | undefined,
    resolve4: (name: string) => answer(name, false),
    resolve6: (name: string) => answer(name, true),
  };
  return resolver;
}

async function dnsStub(): Promise<DnsStub> {
  const stub = await startDnsStub();
  cleanups.push(() => stub.close());
  return stub;
}

describe('lookupAddresses', () => {
  it('merges both families, sorted; NODATA for one family is an answer', async () => {
    const r = tableResolver(new Map([['chat.svc', ['10.0.0.2', '10.0.0.1', 'fd00::1']]]));
    expect(await lookupAddresses(r, 'chat.svc')).toEqual({ ok: true, addresses: ['10.0.0.1', '10.0.0.2', 'fd00::1'] });
    expect(backendAt('fd00::1', { port: 3000, scheme: 'ws', tlsOptions: undefined, proxyProtocol: undefined })).toEqual(
      {
        id: 'ws://[fd00::1]:3000',
        host: 'fd00::1',
        port: 3000,
        tls: false,
        weight: 1,
      },
    );
  });

  it('wss discovery dials TLS and verifies the name it was told to (not the address)', () => {
    const tlsOptions = { ca: 'PEM', serverName: 'chat.svc', rejectUnauthorized: true };
    expect(backendAt('10.0.0.7', { port: 8443, scheme: 'wss', tlsOptions, proxyProtocol: undefined })).toEqual({
      id: 'wss://10.0.0.7:8443',
      host: '10.0.0.7',
      port: 8443,
      tls: true,
      weight: 1,
      tlsOptions,
    });
  });

  it('fails on errors and on an empty answer', async () => {
    const r = tableResolver(new Map());
    expect(await lookupAddresses(r, 'chat.svc')).toEqual({ ok: false, error: 'no addresses' });
    r.fail = 'ETIMEOUT';
    expect(await lookupAddresses(r, 'chat.svc')).toEqual({ ok: false, error: 'ETIMEOUT' });
  });

  it('reads A and AAAA records from a real UDP DNS server', async () => {
    const stub = await dnsStub();
    stub.records.set('chat.test', ['127.0.0.5', '::1']);
    const resolver = new Resolver({ timeout: 500, tries: 1 });
    resolver.setServers([stub.server]);
    expect(await lookupAddresses(resolver, 'chat.test')).toEqual({ ok: true, addresses: ['127.0.0.5', '::1'] });
    stub.failing = true;
    const failed = await lookupAddresses(resolver, 'chat.test');
    expect(failed.ok).toBe(false);
  });
});

describe('a discovery pool', () => {
  const discovery = {
    dns: 'chat.test',
    port: 3000,
    scheme: 'ws' as const,
    tlsOptions: undefined,
    intervalMs: 50,
    nameservers: undefined,
    proxyProtocol: undefined,
  };

  it('adds and removes members as the records change, keeping members by id', async () => {
    const table = new Map([['chat.test', ['10.0.0.1', '10.0.0.2']]]);
    const pool = new Pool<FakeTunnel>(poolConfig([], { discovery }), { resolver: tableResolver(table) });
    cleanups.push(() => pool.stop());
    await pool.start();
    expect(pool.members.map((m) => m.backend.id)).toEqual(['ws://10.0.0.1:3000', 'ws://10.0.0.2:3000']);
    const kept = pool.members[1];
    table.set('chat.test', ['10.0.0.2', '10.0.0.3']);
    await waitFor(() => pool.members.some((m) => m.backend.host === '10.0.0.3'), 2000, 'member added');
    expect(pool.members.map((m) => m.backend.id)).toEqual(['ws://10.0.0.2:3000', 'ws://10.0.0.3:3000']);
    expect(pool.members[0]).toBe(kept);
    expect(pool.ring.size).toBe(2);
  });

  it('keeps the last good set through failed and empty lookups (real UDP DNS)', async () => {
    const stub = await dnsStub();
    stub.records.set('chat.test', ['127.0.0.1', '127.0.0.2']);
    const pool = new Pool<FakeTunnel>(poolConfig([], { discovery: { ...discovery, nameservers: [stub.server] } }));
    cleanups.push(() => pool.stop());
    await pool.start();
    expect(pool.members.map((m) => m.backend.host)).toEqual(['127.0.0.1', '127.0.0.2']);

    stub.failing = true;
    const queried = stub.queries.length;
    await waitFor(() => stub.queries.length >= queried + 6, 5000, 'failed lookups');
    expect(pool.members.map((m) => m.backend.host)).toEqual(['127.0.0.1', '127.0.0.2']);

    stub.failing = false;
    stub.records.set('chat.test', []);
    const again = stub.queries.length;
    await waitFor(() => stub.queries.length >= again + 6, 5000, 'empty lookups');
    expect(pool.members).toHaveLength(2);

    stub.records.set('chat.test', ['127.0.0.2']);
    await waitFor(() => pool.members.length === 1, 5000, 'member removed');
    expect(pool.members[0]!.backend.id).toBe('ws://127.0.0.2:3000');
  });

  it('starts empty when the first lookup fails, and picks find nothing until one succeeds', async () => {
    const table = new Map<string, string[]>();
    const resolver = tableResolver(table);
    resolver.fail = 'ESERVFAIL';
    const pool = new Pool<FakeTunnel>(poolConfig([], { discovery }), { resolver });
    cleanups.push(() => pool.stop());
    await pool.start();
    expect(pool.pickHash(1)).toBeUndefined();
    resolver.fail = undefined;
    table.set('chat.test', ['10.0.0.9']);
    await waitFor(() => pool.pickHash(1) !== undefined, 2000, 'first member');
  });
});
