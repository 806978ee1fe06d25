// TLS session resumption: tickets resume across workers (both accept modes) and across instances given the same
// sessionTicketKeys file; a session-id cache serves clients without tickets; resumed handshakes are counted.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { describe, expect, it, onTestFailed } from 'vitest';
import { SESSION_CACHE_ENTRIES, SESSION_CACHE_TTL_MS, SessionCache } from '../../src/listen/tls-sessions.js';
import { startFileGateway } from '../control/support.js';
import { startEchoBackend } from '../helpers/backends.js';
import { ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { type Cleanup, cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, metricValue, simpleConfig, startGatewayFor } from '../helpers/gateway.js';
import { chain, handshake } from '../helpers/tls-client.js';

const cleanups: Cleanup[] = cleanupAfterEach();

function tlsConfig(backend: string, tls: ConfigObject = {}, extra: ConfigObject = {}): ConfigObject {
  const c = simpleConfig([backend], extra);
  c.listeners = [{ name: 'secure', address: '127.0.0.1', port: 0, tls }];
  return c;
}

async function backendUrl(): Promise<string> {
  const b = await startEchoBackend('b');
  cleanups.push(() => b.close());
  return b.url;
}

describe('SessionCache', () => {
  it('keeps at most SESSION_CACHE_ENTRIES sessions, the newest, and forgets them after SESSION_CACHE_TTL_MS', () => {
    const cache = new SessionCache();
    for (let i = 0; i < SESSION_CACHE_ENTRIES + 10; i++) cache.store(`id${i}`, Buffer.from([i & 255]), 1000);
    expect(cache.size).toBe(SESSION_CACHE_ENTRIES);
    expect(cache.find('id0', 1000)).toBeUndefined();
    expect(cache.find(`id${SESSION_CACHE_ENTRIES + 9}`, 1000)).toBeDefined();
    expect(cache.find(`id${SESSION_CACHE_ENTRIES + 9}`, 1000 + SESSION_CACHE_TTL_MS)).toBeUndefined();
  });
});

describe('one process', () => {
  it('resumes TLS 1.3 and 1.2 tickets, and TLS 1.2 session ids (clients without tickets), and counts them', async () => {
    const gw = await startGatewayFor(cleanups, tlsConfig(await backendUrl()));
    expect(await chain(gw.tlsPort, 3)).toEqual([false, true, true]);
    expect(await chain(gw.tlsPort, 3, { maxVersion: 'TLSv1.2' })).toEqual([false, true, true]);
    expect(await chain(gw.tlsPort, 3, { maxVersion: 'TLSv1.2', noTickets: true })).toEqual([false, true, true]);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_tls_handshakes_total', { listener: 'secure', resumed: 'true' })).toBe(6);
    expect(metricValue(text, 'wsgate_tls_handshakes_total', { listener: 'secure', resumed: 'false' })).toBe(3);
  });

  it('after a rotation of the process key, old tickets get a full handshake and new ones resume', async () => {
    const gw = await startGatewayFor(cleanups, tlsConfig(await backendUrl()));
    const first = await handshake(gw.tlsPort);
    gw.gateway.setTicketKey(randomBytes(48));
    const after = await handshake(gw.tlsPort, first.session);
    expect(after.resumed).toBe(false);
    expect((await handshake(gw.tlsPort, after.session)).resumed).toBe(true);
  });
});

describe('instances sharing a sessionTicketKeys file', () => {
  it('a session made by one instance resumes on another; without the shared file it does not', async () => {
    const url = await backendUrl();
    const key = `${randomBytes(48).toString('base64')}\n`;
    const a = await startFileGateway(tlsConfig(url, { sessionTicketKeys: './ticket-keys' }), {
      files: { 'ticket-keys': key },
    });
    const b = await startFileGateway(tlsConfig(url, { sessionTicketKeys: './ticket-keys' }), {
      files: { 'ticket-keys': key },
    });
    const c = await startFileGateway(tlsConfig(url));
    cleanups.push(
      () => a.stop(),
      () => b.stop(),
      () => c.stop(),
    );
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const onA = await handshake(a.port(), undefined, { maxVersion });
      expect((await handshake(b.port(), onA.session, { maxVersion })).resumed, maxVersion).toBe(true);
      expect((await handshake(c.port(), onA.session, { maxVersion })).resumed, maxVersion).toBe(false);
    }
  });

  it('a replaced key file is read on reload: tickets of the old key no longer resume, new ones do', async () => {
    const url = await backendUrl();
    const gw = await startFileGateway(tlsConfig(url, { sessionTicketKeys: './ticket-keys' }), {
      files: { 'ticket-keys': randomBytes(48).toString('base64') },
    });
    cleanups.push(() => gw.stop());
    const before = await handshake(gw.port());
    writeFileSync(`${gw.dir}/ticket-keys`, randomBytes(48).toString('base64'));
    expect((await gw.control.reload('watch')).ok).toBe(true);
    const after = await handshake(gw.port(), before.session);
    expect(after.resumed).toBe(false);
    expect((await handshake(gw.port(), after.session)).resumed).toBe(true);
  });
});

describe('workers: 2', () => {
  it.each(['kernel', 'primary'])(
    'workersAccept: %s: a reconnecting client resumes whichever worker it reaches (the key is the tree’s)',
    async (accept) => {
      await ensureBuilt();
      const url = await backendUrl();
      const proc = runCli(
        writeConfig(tlsConfig(url, {}, { workers: 2, workersAccept: accept, log: { level: 'info' } })),
        ['--no-watch'],
      );
      cleanups.push(() => proc.kill('SIGKILL'));
      onTestFailed(() => {
        process.stderr.write(`wsgate output:\n${proc.lines.slice(0, 40).join('\n')}\n`);
      });
      const { port } = await proc.ready();
      const resumed = await chain(port, 8);
      expect(resumed).toEqual([false, true, true, true, true, true, true, true]);
    },
    60_000,
  );
});
