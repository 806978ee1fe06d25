// A fleet behind a real L4 balancer: three wsgate instances in their own network namespace (each on its own
// address, all from the same YAML), HAProxy in front in `mode tcp` with `send-proxy-v2` (and in `mode http` adding
// X-Forwarded-For for the L7 case), backends shared by all three on this side, clients from several source
// addresses. What an operator relies on there: the client's address, not the balancer's, drives hashing, per-IP
// caps and what backends see; a key reaches the same backend whichever instance took it; a drained instance's
// clients come back to the same backends; a TLS session made on one instance resumes on another.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { makeCert } from '../helpers/certs.js';
import { type CliProcess, ensureBuilt, runCli } from '../helpers/child-gateway.js';
import { metricValue } from '../helpers/gateway.js';
import { createNamespace, type NetworkNamespace, netnsUnavailable } from '../helpers/netns.js';
import { IN_CI } from '../helpers/paths.js';
import { type PoolBackend, startPoolBackend } from '../helpers/pool-backend.js';
import { type ProxyProtocolBackend, startProxyProtocolBackend } from '../helpers/proxy-protocol-backend.js';
import { waitFor } from '../helpers/wait.js';

const haproxyMissing = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0 ? undefined : 'haproxy missing';
const unavailable = netnsUnavailable() ?? haproxyMissing;
// CI installs haproxy and runs as root: there the test must run (a missing prerequisite fails it).
const describeFleet = unavailable === undefined || IN_CI ? describe : describe.skip;

interface Fleet {
  readonly ns: NetworkNamespace;
  readonly balancer: string;
  readonly instances: { readonly address: string; readonly proc: CliProcess }[];
  readonly echo: PoolBackend[];
  readonly pp: ProxyProtocolBackend[];
  readonly haproxy: ReturnType<typeof spawn>;
}

let fleet: Fleet;

/** Every instance reads the same YAML; its address comes from the environment (config `${NAME}` substitution). */
const INSTANCE_ADDRESS = ['$', '{WSGATE_ADDRESS}'].join('');

function wsgateConfig(ns: NetworkNamespace, echo: PoolBackend[], pp: ProxyProtocolBackend[], dir: string) {
  const cert = makeCert('fleet.example');
  writeFileSync(join(dir, 'ticket-keys'), randomBytes(48).toString('base64'));
  const balancer = `${ns.innerAddresses[0]}/32`;
  const behindL4 = { proxyProtocol: 'v2', trustedProxies: [balancer] };
  return {
    listeners: [
      { name: 'l4', address: INSTANCE_ADDRESS, port: 8080, clientAddress: behindL4 },
      {
        name: 'l4-tls',
        address: INSTANCE_ADDRESS,
        port: 8443,
        tls: { cert: cert.cert, key: cert.key, sessionTicketKeys: './ticket-keys' },
        clientAddress: behindL4,
      },
      {
        name: 'l7',
        address: INSTANCE_ADDRESS,
        port: 8081,
        clientAddress: { forwardedFor: true, trustedProxies: [balancer] },
      },
    ],
    admin: { address: INSTANCE_ADDRESS, port: 8077 },
    routes: [
      { name: 'byuser', match: { path: '/user' }, pool: 'byuser' },
      { name: 'byip', match: { path: '/ip' }, pool: 'byip' },
      { name: 'pp', match: { path: '/pp' }, pool: 'pp' },
    ],
    pools: {
      byuser: { hashKey: 'query:user', backends: echo.map((b) => b.url) },
      byip: { hashKey: 'ip', backends: echo.map((b) => b.url) },
      pp: { hashKey: 'ip', proxyProtocol: 'v2', backends: pp.map((b) => b.url) },
    },
    limits: { maxConnections: 1000, maxConnectionsPerIp: 2 },
    timeouts: { handshake: '3s', idle: '60s', drain: '3s' },
    log: { level: 'info' },
  };
}

function haproxyConfig(ns: NetworkNamespace, instances: readonly string[]): string {
  const [balancer] = ns.innerAddresses;
  const servers = (port: number, extra: string) =>
    instances.map((a, i) => `    server w${i + 1} ${a}:${port} ${extra}`).join('\n');
  const l4 = 'send-proxy-v2 check check-send-proxy inter 300 fall 1 rise 1';
  return `global
    maxconn 4000
defaults
    timeout connect 2s
    timeout client 2m
    timeout server 2m
    timeout tunnel 2m
    retries 3
    option redispatch
frontend l4
    mode tcp
    bind ${balancer}:80
    default_backend l4
backend l4
    mode tcp
    balance roundrobin
${servers(8080, l4)}
frontend l4tls
    mode tcp
    bind ${balancer}:443
    default_backend l4tls
backend l4tls
    mode tcp
    balance roundrobin
${servers(8443, l4)}
frontend l7
    mode http
    bind ${balancer}:81
    option forwardfor
    default_backend l7
backend l7
    mode http
    balance roundrobin
${servers(8081, 'check inter 300 fall 1 rise 1')}
`;
}

beforeAll(async () => {
  if (unavailable !== undefined) throw new Error(`cannot run the fleet test: ${unavailable}`);
  await ensureBuilt();
  const ns = createNamespace({ inner: 4, clients: 8 });
  const [balancer, ...instanceAddresses] = ns.innerAddresses as [string, ...string[]];
  const echo = await Promise.all(['e1', 'e2', 'e3'].map((id) => startPoolBackend(id, { host: ns.hostAddress })));
  const pp = await Promise.all(['p1', 'p2', 'p3'].map((id) => startProxyProtocolBackend(id, { host: ns.hostAddress })));
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-fleet-'));
  const file = join(dir, 'wsgate.yaml');
  writeFileSync(file, stringify(wsgateConfig(ns, echo, pp, dir)));
  const instances = instanceAddresses.map((address) => {
    const proc = runCli(file, ['--no-watch'], { wrap: [...ns.exec, 'env', `WSGATE_ADDRESS=${address}`] });
    return { address, proc };
  });
  await Promise.all(instances.map((i) => i.proc.ready()));
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, haproxyConfig(ns, instanceAddresses));
  const haproxy = spawn(ns.exec[0] as string, [...ns.exec.slice(1), 'haproxy', '-f', cfg, '-db'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  fleet = { ns, balancer, instances, echo, pp, haproxy };
  // HAProxy up and every instance passing its checks: a connection through it works.
  await waitFor(
    async () => (await openThrough(80, '/user?user=probe', 0).catch(() => undefined)) !== undefined,
    15_000,
    'haproxy ready',
  );
}, 60_000);

afterAll(async () => {
  if (!fleet) return;
  fleet.haproxy.kill('SIGKILL');
  for (const i of fleet.instances) i.proc.kill('SIGKILL');
  await Promise.all([...fleet.echo.map((b) => b.kill()), ...fleet.pp.map((b) => b.close())]);
  fleet.ns.remove();
});

interface Client {
  readonly ws: WebSocket;
  readonly backend: string;
  readonly closed: Promise<number>;
  echo(text: string): Promise<string>;
}

/** A WebSocket client through the balancer's `port` from client address number `from`; resolves once welcomed. */
function openThrough(port: number, path: string, from: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${fleet.balancer}:${port}${path}`, {
      localAddress: fleet.ns.clientAddresses[from],
      handshakeTimeout: 5000,
    });
    const waiting: ((text: string) => void)[] = [];
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('{"backend"')) {
        resolve({
          ws,
          backend: (JSON.parse(text) as { backend: string }).backend,
          closed,
          echo: (t) =>
            new Promise((r) => {
              waiting.push(r);
              ws.send(t);
            }),
        });
      } else waiting.shift()?.(text);
    });
  });
}

async function closeAll(clients: Client[]): Promise<void> {
  for (const c of clients) c.ws.close();
  await Promise.all(clients.map((c) => c.closed));
}

/** Each instance's wsgate_connections_total. */
async function connectionsPerInstance(): Promise<number[]> {
  return Promise.all(
    fleet.instances.map(async (i) => {
      const text = await (await fetch(`http://${i.address}:8077/metrics`)).text();
      return metricValue(text, 'wsgate_connections_total') ?? 0;
    }),
  );
}

describeFleet(`a fleet of three behind HAProxy${unavailable ? ` (${unavailable})` : ''}`, () => {
  it('(a) the same hash key reaches the same backend whichever instance the balancer picked', async () => {
    const before = await connectionsPerInstance();
    const seen = new Map<string, Set<string>>();
    for (let round = 0; round < 3; round++) {
      for (let u = 0; u < 6; u++) {
        const c = await openThrough(80, `/user?user=u${u}`, u % 8);
        (seen.get(`u${u}`) ?? seen.set(`u${u}`, new Set()).get(`u${u}`))?.add(c.backend);
        await closeAll([c]);
      }
    }
    for (const [user, backends] of seen) expect([...backends], user).toHaveLength(1);
    const after = await connectionsPerInstance();
    // Round robin spread the 18 connections over all three instances.
    expect(after.map((n, i) => n - (before[i] ?? 0)).filter((n) => n > 0)).toHaveLength(3);
  });

  it('(b) hashKey ip and maxConnectionsPerIp act on the client’s address, not HAProxy’s', async () => {
    // hashKey ip: each of eight client addresses keeps its backend, and together they use more than one.
    const byClient = new Map<number, Set<string>>();
    for (let round = 0; round < 3; round++) {
      for (let from = 0; from < 8; from++) {
        const c = await openThrough(80, '/ip', from);
        (byClient.get(from) ?? byClient.set(from, new Set()).get(from))?.add(c.backend);
        await closeAll([c]);
      }
    }
    for (const [from, backends] of byClient) expect([...backends], `client ${from}`).toHaveLength(1);
    expect(new Set([...byClient.values()].map((s) => [...s][0])).size).toBeGreaterThan(1);
    // maxConnectionsPerIp 2 per instance: seven connections from one address over three instances cannot all be
    // admitted, while another address (through the same balancer) still gets in.
    const held: Client[] = [];
    let refused = 0;
    for (let n = 0; n < 7; n++) {
      try {
        held.push(await openThrough(80, '/ip', 0));
      } catch (err) {
        expect(String(err)).toContain('429');
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    expect(held.length).toBeLessThanOrEqual(6);
    const other = await openThrough(80, '/ip', 1);
    await closeAll([...held, other]);
  });

  it('(c) backends see the client in X-Forwarded-For and, with proxyProtocol: v2, in the PROXY header', async () => {
    const c = await openThrough(80, '/pp', 3);
    const client = fleet.ns.clientAddresses[3];
    const backend = fleet.pp.find((b) => b.id === c.backend) as ProxyProtocolBackend;
    const last = backend.connections.at(-1);
    expect(last?.header).toMatchObject({ kind: 'proxied', sourceAddress: client });
    expect(last?.forwardedFor).toEqual([client]);
    await closeAll([c]);
  });

  it('(d) SIGTERM to one instance: its clients get 1001, come back through HAProxy to the same backends, lose nothing', async () => {
    const clients: { user: string; from: number; client: Client; sent: number; got: string[] }[] = [];
    for (let u = 0; u < 9; u++) {
      const user = `d${u}`;
      const from = u % 8;
      clients.push({ user, from, client: await openThrough(80, `/user?user=${user}`, from), sent: 0, got: [] });
    }
    for (const c of clients) c.got.push(await c.client.echo(`${c.user}-${c.sent++}`));
    const victim = fleet.instances[0] as Fleet['instances'][number];
    victim.proc.kill('SIGTERM');
    // 0: still open 6 s later.
    const codes = await Promise.all(
      clients.map((c) => Promise.race([c.client.closed, new Promise<number>((r) => setTimeout(r, 6000, 0))])),
    );
    // Round robin put three of the nine on the victim: those heard 1001; the others stayed open.
    expect(codes.filter((c) => c === 1001)).toHaveLength(3);
    expect(codes.filter((c) => c === 0)).toHaveLength(6);
    for (const c of clients) {
      if (c.client.ws.readyState === WebSocket.OPEN) continue;
      const again = await openThrough(80, `/user?user=${c.user}`, c.from);
      expect(again.backend, c.user).toBe(c.client.backend);
      c.client = again;
    }
    // Every client carries on: the message after the drain is answered, in order.
    for (const c of clients) c.got.push(await c.client.echo(`${c.user}-${c.sent++}`));
    for (const c of clients) expect(c.got).toEqual([`${c.user}-0`, `${c.user}-1`]);
    expect((await victim.proc.exited).code).toBe(0);
    await closeAll(clients.map((c) => c.client));
  });

  it('(e) a TLS session made on one instance resumes on another, with the shared ticket key file', async () => {
    let session: Buffer | undefined;
    const resumed: boolean[] = [];
    for (let n = 0; n < 4; n++) {
      const result = await new Promise<{ resumed: boolean; session?: Buffer }>((resolve, reject) => {
        let latest: Buffer | undefined;
        const tcp = netConnect({ host: fleet.balancer, port: 443, localAddress: fleet.ns.clientAddresses[2] });
        const s = tlsConnect({
          socket: tcp,
          servername: 'fleet.example',
          rejectUnauthorized: false,
          ...(session ? { session } : {}),
        });
        s.on('session', (x: Buffer) => {
          latest = x;
        });
        s.once('error', reject);
        s.once('secureConnect', () => {
          const r = s.isSessionReused();
          setTimeout(() => {
            s.end();
            resolve({ resumed: r, ...(latest ? { session: latest } : {}) });
          }, 50);
        });
      });
      resumed.push(result.resumed);
      session = result.session ?? session;
    }
    // Two instances left after (d); round robin alternates between them: every reconnect changed instance.
    expect(resumed).toEqual([false, true, true, true]);
  });

  it('L7: behind HAProxy in mode http, trusted X-Forwarded-For names the client (forwardedFor: true)', async () => {
    const seen = new Map<number, Set<string>>();
    for (let round = 0; round < 2; round++) {
      for (const from of [4, 5, 6]) {
        const c = await openThrough(81, '/pp', from);
        (seen.get(from) ?? seen.set(from, new Set()).get(from))?.add(c.backend);
        const backend = fleet.pp.find((b) => b.id === c.backend) as ProxyProtocolBackend;
        const client = fleet.ns.clientAddresses[from] as string;
        expect(backend.connections.at(-1)?.header).toMatchObject({ kind: 'proxied', sourceAddress: client });
        // HAProxy's entry, then the one wsgate appends: both the client.
        expect(backend.connections.at(-1)?.forwardedFor).toEqual([`${client}, ${client}`]);
        await closeAll([c]);
      }
    }
    for (const [from, backends] of seen) expect([...backends], `client ${from}`).toHaveLength(1);
  });
});
