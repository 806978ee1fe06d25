// Who goes where, end to end and across changes: route host patterns (config validation and the Router agree),
// Host values that are not host[:port], paths a normalising backend reads differently, ring spread and movement,
// bounded loads under a hot key, hash keys, and retries across a membership change.

import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { isValidHost } from '../../src/handshake/validate.js';
import { Pool } from '../../src/pool/pool.js';
import { hashString } from '../../src/routing/hash.js';
import { type HashKeySpec, hashKeyOf, parseHashKeySpec } from '../../src/routing/hash-key.js';
import { Ring } from '../../src/routing/ring.js';
import { isSuspiciousPath, Router } from '../../src/routing/router.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { type ConfigObject, startGateway } from '../helpers/gateway.js';
import { startPoolBackend } from '../helpers/pool-backend.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { delay } from '../helpers/wait.js';
import { backend, type FakeTunnel, keyHashes, poolConfig } from '../pool/fixtures.js';

const cleanups = cleanupAfterEach();

const members = (n: number, weight = (_: number) => 1) =>
  Array.from({ length: n }, (_, i) => ({ id: `ws://10.0.${i >> 8}.${i & 255}:3000`, weight: weight(i) }));

function baseConfig(backends: readonly string[], route: ConfigObject = {}): ConfigObject {
  return {
    listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
    admin: { address: '127.0.0.1', port: 0 },
    routes: [{ name: 'main', match: { path: '/' }, pool: 'main', ...route }],
    pools: { main: { hashKey: 'header:x-user-id', backends } },
    timeouts: { handshake: '2s', idle: '60s', drain: '2s' },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Route host patterns: config validation vs the Router
// ---------------------------------------------------------------------------------------------------------------

describe('route host patterns the Router refuses or can never match', () => {
  it.each(['a.*.example.com', '*', '*.', 'chat/x'])(
    'config validation rejects match.host %s (the Router throws TypeError on it)',
    (host) => {
      expect(() => new Router([{ name: 'r', pathPrefix: '/', host }])).toThrow(TypeError);
      const text = stringify(baseConfig(['ws://127.0.0.1:1'], { match: { host, path: '/' } }));
      expect(() => parseConfig(text, '/virtual/review.yaml')).toThrow(ConfigError);
    },
  );

  it('a match.host with a port is refused by the config (any port matches; a port would make the route dead)', () => {
    const text = stringify(baseConfig(['ws://127.0.0.1:1'], { match: { host: 'chat.example.com:8443', path: '/' } }));
    expect(() => parseConfig(text, '/virtual/review.yaml')).toThrow(/must not have a port/);
    // IPv6 addresses are not ports.
    const v6 = stringify(baseConfig(['ws://127.0.0.1:1'], { match: { host: '[::1]', path: '/' } }));
    expect(parseConfig(v6, '/virtual/review.yaml').routes[0]?.host).toBe('[::1]');
  });

  it('a reload whose route host the Router refuses fails without changing the running pools (end to end)', async () => {
    const a = await startPoolBackend('a');
    const b = await startPoolBackend('b');
    cleanups.push(
      () => a.kill(),
      () => b.kill(),
    );
    const gw = await startGateway(baseConfig([a.url, b.url]));
    cleanups.push(() => gw.stop());

    // Connect users until at least one sits on backend b.
    const onB: WebSocket[] = [];
    for (let i = 0; i < 40 && onB.length < 2; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`, { headers: { 'x-user-id': `user-${i}` } });
      cleanups.push(async () => ws.terminate());
      const who = await new Promise<string>((resolve, reject) => {
        ws.once('message', (d) => resolve((JSON.parse(d.toString()) as { backend: string }).backend));
        ws.once('error', reject);
      });
      if (who === 'b') onB.push(ws);
    }
    expect(onB.length).toBeGreaterThan(0);
    const closes: number[] = [];
    for (const ws of onB) ws.once('close', (code) => closes.push(code));

    // The new config drops backend b and carries a route host the Router refuses (validation would refuse it too:
    // built by hand, as anything unforeseen that throws while the runtime is built).
    const good = parseConfig(stringify(baseConfig([a.url])), 'x');
    const bad = { ...good, routes: [{ ...(good.routes[0] as (typeof good.routes)[number]), host: 'a.*.example.com' }] };
    await expect(gw.gateway.reload(bad)).rejects.toThrow();
    await delay(1800); // past the drain pacing (0.8 × timeouts.drain)

    // "An invalid config never replaces a valid one" (design.md, Config): the running pool still has both members
    // and b's clients were not told to go away.
    expect(closes).toEqual([]);
    expect(gw.gateway.runtime.pools.get('main')?.members.map((m) => m.backend.id)).toEqual([
      `ws://127.0.0.1:${a.port}`,
      `ws://127.0.0.1:${b.port}`,
    ]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Host header values that are not a valid uri-host [ ":" port ] (RFC 9112 §3.2: MUST 400)
// ---------------------------------------------------------------------------------------------------------------

describe('invalid Host values', () => {
  it.each([
    ['[::1]evil', '[::1]'],
    ['chat.example.com:80:evil', 'chat.example.com'],
    ['chat.example.com:notaport', 'chat.example.com'],
  ])('Host %s is refused before routing (the router alone would take it for %s)', (hostHeader, routeHost) => {
    const router = new Router([{ name: 'r', pathPrefix: '/', host: routeHost }]);
    expect(router.match(hostHeader, '/')?.name).toBe('r');
    expect(isValidHost(hostHeader)).toBe(false);
    expect(isValidHost(routeHost)).toBe(true);
  });

  it('an upgrade whose Host is not host[:port] is answered 400, not tunnelled (end to end)', async () => {
    const a = await startPoolBackend('a');
    cleanups.push(() => a.kill());
    const gw = await startGateway({
      ...baseConfig([a.url]),
      routes: [{ name: 'chat', match: { host: 'chat.example.com', path: '/' }, pool: 'main' }],
    });
    cleanups.push(() => gw.stop());
    const statuses: Record<string, number> = {};
    for (const host of ['chat.example.com:80:evil', 'chat.example.com:notaport']) {
      const res = await rawUpgrade(gw.port, { host, headers: { 'x-user-id': 'u' } });
      res.socket.destroy();
      statuses[host] = res.status;
    }
    // Control: the valid spelling is tunnelled.
    const ok = await rawUpgrade(gw.port, { host: 'chat.example.com:80', headers: { 'x-user-id': 'u' } });
    ok.socket.destroy();
    expect(ok.status).toBe(101);
    expect(statuses).toEqual({ 'chat.example.com:80:evil': 400, 'chat.example.com:notaport': 400 });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Paths a normalising backend reads differently from the raw prefix match
// ---------------------------------------------------------------------------------------------------------------

describe('paths routed raw that a normalising backend reads as another route', () => {
  // router.ts: "Callers should reject such targets with 400 first (`isSuspiciousPath`), because a backend that
  // does normalise would see a different path than the one we routed." nginx matches locations on the decoded,
  // dot-resolved, slash-merged path.
  const router = new Router([
    { name: 'admin', pathPrefix: '/admin' },
    { name: 'chat', pathPrefix: '/chat' },
    { name: 'public', pathPrefix: '/' },
  ]);
  it.each([
    ['/%61dmin', 'admin'], // %61 = 'a', an unreserved character (RFC 3986 §2.3, §6.2.2.2: decode it)
    ['/%63hat/x', 'chat'],
    ['/chat/..;/admin', 'admin'], // Tomcat/Jetty drop ';' path parameters before resolving '..'
  ])('%s is either refused as suspicious or routed like its normal form (%s)', (target, normalRoute) => {
    const routed = router.match('h', target)?.name;
    expect(isSuspiciousPath(target) || routed === normalRoute).toBe(true);
  });

  it("'/%61dmin' skips the /admin route's Origin allowlist and is tunnelled (end to end)", async () => {
    const a = await startPoolBackend('a');
    cleanups.push(() => a.kill());
    const gw = await startGateway({
      ...baseConfig([a.url]),
      routes: [
        { name: 'admin', match: { path: '/admin' }, pool: 'main', origins: ['https://admin.example.com'] },
        { name: 'public', match: { path: '/' }, pool: 'main' },
      ],
    });
    cleanups.push(() => gw.stop());
    const headers = { 'x-user-id': 'u', Origin: 'https://evil.example' };
    const plain = await rawUpgrade(gw.port, { path: '/admin', headers });
    plain.socket.destroy();
    const encoded = await rawUpgrade(gw.port, { path: '/%61dmin', headers });
    encoded.socket.destroy();
    expect(plain.status).toBe(403);
    // Same resource by RFC 3986 §6.2.2.2; expected 403 (routed as /admin) or 400 (refused as suspicious).
    expect([400, 403], `'/%61dmin' answered ${encoded.status}`).toContain(encoded.status);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Hash keys
// ---------------------------------------------------------------------------------------------------------------

describe('hash keys: pinned behaviour', () => {
  const spec = (text: string) => parseHashKeySpec(text) as HashKeySpec;
  const key = (s: string, headers: Record<string, string | string[]>, url = '/') =>
    hashKeyOf({ headers, url, remoteAddress: '::ffff:10.0.0.1' }, spec(s));

  it('query: "+" and "%20" are the same key, "%2B" is a literal plus, repeats use the first', () => {
    expect(key('query:room', {}, '/?room=a+b').key).toBe('a b');
    expect(key('query:room', {}, '/?room=a%20b').key).toBe('a b');
    expect(key('query:room', {}, '/?room=a%2Bb').key).toBe('a+b');
    expect(key('query:room', {}, '/?room=1&room=2').key).toBe('1');
    expect(key('query:room', {}, '/?x&&room=%C3%A9').key).toBe('é');
    expect(key('query:room', {}, '/?room=&room=2')).toEqual({ key: '10.0.0.1', fellBack: true });
  });

  it('cookie: quoted values are unwrapped, sid="" falls back, the first of repeated sids wins', () => {
    expect(key('cookie:sid', { cookie: 'sid="a b"' }).key).toBe('a b');
    expect(key('cookie:sid', { cookie: 'sid=""; sid=2' })).toEqual({ key: '10.0.0.1', fellBack: true });
    expect(key('cookie:sid', { cookie: 'Sid=1; sid=2; sid=3' }).key).toBe('2');
    expect(key('cookie:sid', { cookie: ['a=1', 'sid=x=y'] }).key).toBe('x=y');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Ring: spread, movement, bounded loads under a hot key with weights
// ---------------------------------------------------------------------------------------------------------------

describe('ring statistics', () => {
  it('3/10/50 equal members: max/mean under 1.3 and add/remove moves within 25% of 1/n', () => {
    const K = 60_000;
    const hashes = Array.from({ length: K }, (_, k) => hashString(`user-${k}`));
    for (const n of [3, 10, 50]) {
      const ring = Ring.build(members(n));
      const grown = Ring.build(members(n + 1));
      const shrunk = Ring.build(members(n).slice(1));
      const counts = new Array<number>(n).fill(0);
      let added = 0;
      let removed = 0;
      for (const h of hashes) {
        const id = ring.members[ring.owner(h)]!.id;
        counts[ring.owner(h)]!++;
        if (grown.members[grown.owner(h)]!.id !== id) added++;
        if (shrunk.members[shrunk.owner(h)]!.id !== id) removed++;
      }
      expect(Math.max(...counts) / (K / n)).toBeLessThan(1.3);
      expect(Math.abs(added / K - 1 / (n + 1))).toBeLessThan(0.25 / (n + 1));
      expect(Math.abs(removed / K - 1 / n)).toBeLessThan(0.25 / n);
    }
  });

  it('one hot key with weights 1/2/5 and c = 1.25: nobody exceeds ceil(c × (T+1) × w / W) at any step', () => {
    const ring = Ring.build(members(3, (i) => [1, 2, 5][i]!));
    const loads = new Int32Array(3);
    const c = 1.25;
    const hot = hashString('room-1');
    for (let t = 0; t < 2000; t++) {
      const m = ring.pick(hot, loads, c);
      expect(m).toBeGreaterThanOrEqual(0);
      loads[m]!++;
      for (let i = 0; i < 3; i++) {
        expect(loads[i]!).toBeLessThanOrEqual(Math.ceil((c * (t + 1) * [1, 2, 5][i]!) / 8));
      }
    }
    // The hot key fills its owner to its bound, then spills: the weight-5 member holds at most 1.25 × 5/8.
    expect(loads[2]! / 2000).toBeLessThanOrEqual((1.25 * 5) / 8 + 0.001);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Pool: the retry "tried" list across a membership change, and paced 1012s that no longer apply
// ---------------------------------------------------------------------------------------------------------------

describe('pool retries and rebalancing across membership changes', () => {
  it('a retry after a member list change never re-picks the member that already failed', () => {
    // upgrade.ts keeps the members it tried and asks for their indexes at each pick: a reload or DNS discovery
    // answer in between re-indexes members, and a member keeps its identity.
    const pool = new Pool<FakeTunnel>(poolConfig([backend(1), backend(2), backend(3)]));
    const h = keyHashes(2000).find((x) => pool.pickHash(x)?.backend.id === backend(3).id)!;
    const first = pool.pickHash(h)!;
    const tried = [first]; // then the attempt fails (connect refused, timeout)...
    pool.update({ ...pool.config, backends: [backend(2), backend(3)] }); // ...while backend 1 leaves the pool
    const second = pool.pickHash(
      h,
      tried.map((m) => m.index),
    );
    expect(second?.backend.id).not.toBe(first.backend.id);
  });
});
