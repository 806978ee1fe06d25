// The chaos soak's events, each acting on the running system and leaving a footprint in the ledger (what endings
// it may explain, and until when): reloads that change a pool's backends or swap a route, an invalid reload, a
// SIGHUP storm, a backend SIGKILLed and restarted, a backend that stops reading, a worker SIGKILLed, a DNS answer
// change, a burst of hostile handshakes, clients that vanish mid-frame. Config changes are serialised (one file).

import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import type { DnsStub } from '../../helpers/dns-stub.js';
import type { BackendProcess } from './backends.js';
import { hostileHandshake, type Target, vanishMidFrame } from './clients.js';
import type { EventKind, Ledger } from './ledger.js';
import type { EventLog, Random } from './scheduler.js';

/** The parts of the config the events change; everything else stays as configFor() builds it. */
export interface ConfigModel {
  /** Pool b has its third backend. */
  b3: boolean;
  /** The swapped route: /x1 or /x2. */
  extra: '/x1' | '/x2';
}

export const DNS_NAME = 'd.chaos.test';
export const DNS_SETS: readonly (readonly string[])[] = [['127.0.0.2'], ['127.0.0.2', '127.0.0.3'], ['127.0.0.3']];
export const DRAIN_MS = 3000;
const DISCOVERY_MS = 1000;
/** A worker slot restarted within a minute backs off longer each time: no slot is killed more often. */
const WORKER_KILL_GAP_MS = 35_000;

export interface World {
  readonly target: Target;
  readonly adminPort: number;
  readonly primaryPid: number;
  readonly configFile: string;
  readonly backends: ReadonlyMap<string, BackendProcess>;
  readonly dns: DnsStub;
  readonly ledger: Ledger;
  readonly log: EventLog;
  readonly model: ConfigModel;
  dnsSet: number;
  lastWorkerKill: number;
  /** [scrape started, worker killed]: counters a killed worker changed in these spans never reached /metrics. */
  readonly lostSpans: [number, number][];
  /** Serialises whatever writes the config file and reloads. */
  configLock: Promise<unknown>;
  /** Problems found by events themselves (a reload answered wrongly, a hostile handshake answered wrongly). */
  readonly problems: string[];
  /** Statuses the hostile handshakes got (each the one it must get), for the /metrics comparison. */
  readonly hostileStatuses: Map<number, number>;
  /** Clients that vanished mid-frame after their 101 (the gateway counts each as a 1006 close). */
  vanished: number;
}

export function configFor(model: ConfigModel, backends: ReadonlyMap<string, BackendProcess>, dns: DnsStub): object {
  const url = (id: string) => (backends.get(id) as BackendProcess).url;
  const dPort = (backends.get('d2') as BackendProcess).port;
  // A killed backend refuses its checks at once; the timeout and threshold only keep a starved machine (a long run
  // shares it) from taking a live backend out, a 1014 no event of the run would explain.
  const health = { path: '/health', interval: '1s', timeout: '2s', healthyThreshold: 1, unhealthyThreshold: 3 };
  const outlier = { consecutiveFailures: 3, ejectFor: '2s', maxEjectFor: '4s' };
  return {
    workers: 2,
    listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
    admin: { address: '127.0.0.1', port: 0 },
    routes: [
      {
        name: 'limited',
        match: { path: '/limited' },
        pool: 'a',
        limits: {
          perConnection: { messagesPerSecond: 20, burstMessages: 20, maxMessageBytes: 256 * 1024, onExceed: 'close' },
        },
      },
      { name: 'a', match: { path: '/a' }, pool: 'a' },
      { name: 'b', match: { path: '/b' }, pool: 'b' },
      { name: 'd', match: { path: '/d' }, pool: 'd' },
      { name: model.extra.slice(1), match: { path: model.extra }, pool: 'b' },
    ],
    pools: {
      a: { backends: [url('a1'), url('a2')], balanceFactor: 2, healthCheck: health, outlier },
      b: { backends: [url('b1'), url('b2'), ...(model.b3 ? [url('b3')] : [])], healthCheck: health, outlier },
      d: {
        discovery: { dns: DNS_NAME, port: dPort, interval: `${DISCOVERY_MS}ms`, nameservers: [dns.server] },
        healthCheck: health,
        outlier,
      },
    },
    limits: { maxConnections: 8000, maxConnectionsPerIp: 8000 },
    timeouts: { handshake: '5s', idle: '60s', drain: `${DRAIN_MS}ms` },
    log: { level: 'info' },
  };
}

async function admin(world: World, method: string, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${world.adminPort}${path}`, { method });
  return { status: res.status, text: await res.text() };
}

/** Writes the model's config and reloads over the admin API (under the config lock). */
async function reloadModel(world: World, why: string): Promise<void> {
  writeFileSync(world.configFile, stringify(configFor(world.model, world.backends, world.dns)));
  const r = await admin(world, 'POST', '/reload');
  world.log.add(`${why}: reload → ${r.status} ${r.text.trim().split('\n')[0]}`);
  if (r.status !== 200) world.problems.push(`${why}: reload answered ${r.status}: ${r.text}`);
}

function locked(world: World, work: () => Promise<void>): Promise<void> {
  const run = world.configLock.then(work);
  world.configLock = run.catch(() => {});
  return run;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The client-side ports of every connection `pid` holds on the gateway's listening `port` (from /proc). */
export function clientPortsOf(pid: number, port: number): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1] as string);
    } catch {
      // closed between the listing and the readlink
    }
  }
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const local = Number.parseInt((f[1] as string).split(':')[1] as string, 16);
      const remote = Number.parseInt((f[2] as string).split(':')[1] as string, 16);
      if (local === port && inodes.has(f[9] as string)) ports.add(remote);
    }
  }
  return ports;
}

export async function fire(world: World, kind: EventKind, random: Random): Promise<void> {
  const { ledger, log } = world;
  const now = () => performance.now();
  switch (kind) {
    case 'reload_backends':
      return locked(world, async () => {
        world.model.b3 = !world.model.b3;
        ledger.fire(kind);
        const event = ledger.record({ kind, at: now(), until: Number.POSITIVE_INFINITY, pool: 'b' });
        await reloadModel(world, `pool b ${world.model.b3 ? 'gains' : 'loses'} b3`);
        event.until = now() + DRAIN_MS + 5000;
      });
    case 'reload_routes':
      return locked(world, async () => {
        const old = world.model.extra;
        const next = old === '/x1' ? '/x2' : '/x1';
        world.model.extra = next;
        ledger.fire(kind);
        const at = now();
        ledger.routeRemoved(old, at);
        const event = ledger.record({ kind, at, until: Number.POSITIVE_INFINITY, route: old });
        await reloadModel(world, `route ${old} removed, ${next} added`);
        ledger.routeAdded(next, now(), 500);
        event.until = now() + DRAIN_MS + 3000;
      });
    case 'reload_invalid':
      return locked(world, async () => {
        ledger.fire(kind);
        const good = readFileSync(world.configFile, 'utf8');
        writeFileSync(world.configFile, `${good}\nroutes_typo: [\n`);
        const r = await admin(world, 'POST', '/reload');
        log.add(`invalid reload → ${r.status}`);
        if (r.status !== 400) world.problems.push(`invalid reload answered ${r.status}: ${r.text}`);
        writeFileSync(world.configFile, good);
      });
    case 'sighup_storm':
      return locked(world, async () => {
        ledger.fire(kind);
        log.add('SIGHUP storm: 10 in one second');
        for (let i = 0; i < 10; i++) {
          process.kill(world.primaryPid, 'SIGHUP');
          await delay(100);
        }
        // Let the last reloads finish before the lock lets another writer change the file.
        await delay(500);
      });
    case 'backend_kill': {
      const dead = [...world.backends.values()].filter((b) => !b.alive).map((b) => b.id[0]);
      const candidates = [...world.backends.values()].filter((b) => b.alive && !dead.includes(b.id[0]));
      if (candidates.length === 0) return;
      const b = random.pick(candidates);
      ledger.fire(kind);
      const event = ledger.record({ kind, at: now(), until: Number.POSITIVE_INFINITY, pool: b.id[0], backend: b.id });
      await b.kill();
      const downMs = 300 + random.int(2000);
      log.add(`backend ${b.id} SIGKILLed, back in ${downMs} ms`);
      await delay(downMs);
      await b.spawn();
      log.add(`backend ${b.id} restarted (pid ${b.pid})`);
      event.until = now() + 10_000;
      return;
    }
    case 'backend_stall': {
      const alive = [...world.backends.values()].filter((b) => b.alive);
      if (alive.length === 0) return;
      const b = random.pick(alive);
      const ms = 500 + random.int(2500);
      ledger.fire(kind);
      log.add(`backend ${b.id} stops reading for ${ms} ms`);
      b.stall(ms);
      return;
    }
    case 'worker_kill': {
      if (now() - world.lastWorkerKill < WORKER_KILL_GAP_MS) {
        log.add('worker kill skipped (a slot killed again within a minute restarts ever slower)');
        return;
      }
      const status = JSON.parse((await admin(world, 'GET', '/api/status')).text) as {
        workers: { list: { id: number; pid: number; state: string }[] };
      };
      const ready = status.workers.list.filter((w) => w.state === 'ready');
      if (ready.length < 2) return;
      const w = random.pick(ready);
      world.lastWorkerKill = now();
      ledger.fire(kind);
      // A fresh scrape first: the primary keeps a dead worker's counters at their last scraped values.
      const scrapeAt = now();
      await admin(world, 'GET', '/metrics');
      // Stopped, the worker accepts nothing more: the sockets read now are all it will ever hold.
      process.kill(w.pid, 'SIGSTOP');
      const ports = clientPortsOf(w.pid, world.target.port);
      process.kill(w.pid, 'SIGKILL');
      const killedAt = now();
      world.lostSpans.push([scrapeAt, killedAt]);
      ledger.record({ kind, at: scrapeAt, until: killedAt + 1000, clientPorts: ports });
      log.add(`worker ${w.id} (pid ${w.pid}) SIGKILLed holding ${ports.size} client connections`);
      return;
    }
    case 'dns_change': {
      let next = random.int(DNS_SETS.length - 1);
      if (next >= world.dnsSet) next++;
      world.dnsSet = next;
      ledger.fire(kind);
      const event = ledger.record({ kind, at: now(), until: Number.POSITIVE_INFINITY, pool: 'd' });
      world.dns.records.set(DNS_NAME, [...(DNS_SETS[next] as string[])]);
      log.add(`DNS ${DNS_NAME} → ${DNS_SETS[next]?.join(', ')}`);
      await delay(DISCOVERY_MS * 2);
      event.until = now() + DRAIN_MS + 5000;
      return;
    }
    case 'hostile_burst': {
      ledger.fire(kind);
      const results = await Promise.all(Array.from({ length: 30 }, () => hostileHandshake(world.target, random)));
      // A worker killed meanwhile takes its half-read handshakes with it.
      const workerDied = now() - world.lastWorkerKill < 3000;
      for (const r of results) {
        if (r.problem !== '' && !workerDied) world.problems.push(`hostile handshake: ${r.problem}`);
        else world.hostileStatuses.set(r.status, (world.hostileStatuses.get(r.status) ?? 0) + 1);
      }
      log.add(`30 hostile handshakes: ${results.filter((r) => r.problem === '').length} answered as they must be`);
      return;
    }
    case 'client_vanish': {
      ledger.fire(kind);
      const addresses = world.target.localAddresses;
      const results = await Promise.all(
        Array.from({ length: 5 }, () => vanishMidFrame(world.target, random.pick(addresses))),
      );
      world.vanished += results.filter(Boolean).length;
      log.add(`5 clients vanish mid-frame (${results.filter(Boolean).length} got that far)`);
      return;
    }
  }
}
