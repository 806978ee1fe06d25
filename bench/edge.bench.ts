// What the edge controls cost per WebSocket handshake. End to end: wsgate's CPU per handshake on a route without
// access or auth, on one with access allow/deny lists (the client allowed), on one with auth.jwt verifying an
// ES256 token sent in Authorization (a new token every handshake, signed up front: each is verified), the same
// with a token the route saw before (a reconnect: remembered, access/jwt/verified-tokens.ts), and new HS256 tokens
// (cheap signature math: what is left is the rest of the token check); with --baseline DIR,
// also the plain route of the build in DIR (a worktree of the commit before the edge controls, built), to see that
// a route without access/auth pays nothing (method: bench/harness/handshake-cost.ts). Then the checks alone, in
// this process without sockets: AddressList.check, RouteAuth.check, and one ES256 signature verification with
// node:crypto (the floor under any JWT library). Results in BENCHMARKS.md.
// Run: npm run bench:edge [-- --rounds 12 --handshakes 2000 --log-level warn --baseline DIR]

import { createPublicKey, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { AddressList } from '../src/access/address-list.js';
import { RouteAuth } from '../src/access/jwt/route-auth.js';
import { parseConfig } from '../src/config/load.js';
import { Metrics } from '../src/observe/metrics.js';
import { cliOf, costSettings, type HandshakeTarget, measureInTurns, median } from './harness/handshake-cost.js';

const settings = costSettings({ rounds: 12, logLevel: 'warn' });
const ISSUER = 'https://auth.bench.example';
const AUDIENCE = 'chat';
const CHECK_ROUNDS = 5;
const CHECK_CALLS = 4000;
/** Distinct tokens: one per handshake of the run (two warm-up rounds included) and per call of the checks alone. */
const TOKENS = Math.max((settings.rounds + 2) * settings.handshakes, (CHECK_ROUNDS + 1) * CHECK_CALLS);
/** The tokens of the "seen before" target: a few clients reconnecting again and again. */
const RECONNECTING = 64;

const ACCESS = {
  allow: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8', '2001:db8::/32'],
  deny: ['10.9.0.0/16', '192.168.66.0/24', '127.0.0.2/32', '2001:db8:bad::/48'],
};
const SECRET = 'a-benchmark-secret-of-at-least-32-characters';
const jwtRoute = (keys: { keys: string } | { secret: string }) => ({
  auth: {
    jwt: { ...keys, issuer: ISSUER, audience: AUDIENCE, algorithms: 'secret' in keys ? ['HS256'] : ['ES256'] },
  },
});

interface Keys {
  readonly jwks: string;
  readonly publicJwk: JWK;
  /** ES256 tokens, then HS256 tokens. */
  readonly tokens: readonly string[];
  readonly hsTokens: readonly string[];
}

const claims = (i: number) => new SignJWT({ sub: `user-${i}`, iss: ISSUER, aud: AUDIENCE });

/** A JWKS of two keys (the signing ES256 key and another, as during a rotation), tokens valid for a day. */
async function keysAndTokens(dir: string): Promise<Keys> {
  const signing = await generateKeyPair('ES256', { extractable: true });
  const other = await generateKeyPair('ES256', { extractable: true });
  const jwk = async (key: Parameters<typeof exportJWK>[0], kid: string) => ({
    ...(await exportJWK(key)),
    kid,
    alg: 'ES256',
    use: 'sig',
  });
  const publicJwk = await jwk(signing.publicKey, 'k1');
  const jwks = join(dir, 'jwks.json');
  writeFileSync(jwks, JSON.stringify({ keys: [await jwk(other.publicKey, 'k0'), publicJwk] }));
  const secret = new TextEncoder().encode(SECRET);
  const sign = (i: number, hs: boolean) =>
    (hs ? claims(i).setProtectedHeader({ alg: 'HS256' }) : claims(i).setProtectedHeader({ alg: 'ES256', kid: 'k1' }))
      .setIssuedAt()
      .setExpirationTime('1d')
      .sign(hs ? secret : signing.privateKey);
  const tokens = await Promise.all(Array.from({ length: TOKENS }, (_, i) => sign(i, false)));
  const hsTokens = await Promise.all(Array.from({ length: TOKENS }, (_, i) => sign(i, true)));
  return { jwks, publicJwk, tokens, hsTokens };
}

/** CPU µs (this process, all threads) per call of `run(n)`, `calls` calls in a row; the median of CHECK_ROUNDS. */
async function perCall(calls: number, run: (n: number) => unknown): Promise<{ median: number; range: string }> {
  const samples: number[] = [];
  for (let r = 0; r <= CHECK_ROUNDS; r++) {
    const before = process.cpuUsage();
    for (let n = 0; n < calls; n++) await run(n);
    const used = process.cpuUsage(before);
    if (r > 0) samples.push((used.user + used.system) / calls); // round 0 warms up
  }
  const digits = samples[0]! < 10 ? 2 : 1;
  return {
    median: median(samples),
    range: `${Math.min(...samples).toFixed(digits)}–${Math.max(...samples).toFixed(digits)}`,
  };
}

/** The checks alone, as the proxy calls them, on the config the end-to-end targets run. */
async function checkCosts(keys: Keys): Promise<void> {
  const config = parseConfig(
    stringify({
      listeners: [{ name: 'public', port: 0 }],
      routes: [
        { name: 'access', match: { path: '/a' }, pool: 'main', access: ACCESS },
        { name: 'es256', match: { path: '/e' }, pool: 'main', ...jwtRoute({ keys: keys.jwks }) },
        { name: 'hs256', match: { path: '/h' }, pool: 'main', ...jwtRoute({ secret: SECRET }) },
      ],
      pools: { main: { backends: ['ws://127.0.0.1:9'] } },
    }),
    join(tmpdir(), 'edge-bench.yaml'),
  );
  const [accessRoute, es256, hs256] = config.routes;
  const list = new AddressList(accessRoute!.access!);
  const metrics = new Metrics({ defaultMetrics: false });
  const authOf = (route: typeof es256) => new RouteAuth(route!.name, route!.jwt!, metrics, pino({ level: 'silent' }));
  // The tokens in turn across rounds (each round's `n` starts at 0): "new" tokens are never repeated.
  const checks = (auth: RouteAuth, tokens: readonly string[]) => {
    let next = 0;
    return async () => {
      const header = `Bearer ${tokens[next++ % tokens.length]}`;
      const verdict = await auth.check({
        url: '/',
        headers: { host: 'bench', authorization: header },
        rawHeaders: ['Host', 'bench', 'Authorization', header],
      });
      if (!verdict.ok) throw new Error('a bench token was refused');
    };
  };
  const addresses = ['127.0.0.1', '172.20.1.9', '::ffff:127.0.0.1'];
  const publicKey = createPublicKey({ key: keys.publicJwk, format: 'jwk' });
  const reconnecting = keys.tokens.slice(0, RECONNECTING);
  const signed = keys.tokens.slice(0, CHECK_CALLS).map((t) => {
    const [header, payload, signature] = t.split('.') as [string, string, string];
    return { data: Buffer.from(`${header}.${payload}`), signature: Buffer.from(signature, 'base64url') };
  });
  const results = [
    ['AddressList.check (9 CIDRs)', await perCall(200_000, (n) => list.check(addresses[n % 3]!))],
    ['RouteAuth.check (ES256, new)', await perCall(CHECK_CALLS, checks(authOf(es256), keys.tokens))],
    ['RouteAuth.check (ES256, seen)', await perCall(CHECK_CALLS, checks(authOf(es256), reconnecting))],
    ['RouteAuth.check (HS256, new)', await perCall(CHECK_CALLS, checks(authOf(hs256), keys.hsTokens))],
    [
      'node:crypto verify (ES256)',
      await perCall(4000, (n) => {
        const { data, signature } = signed[n % CHECK_CALLS]!;
        if (!verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)) throw new Error('bad');
      }),
    ],
  ] as const;
  process.stdout.write(
    `\nThe checks alone, in one process, CPU µs per call (median of ${CHECK_ROUNDS} rounds, range):\n`,
  );
  for (const [name, cost] of results) {
    process.stdout.write(`  ${name.padEnd(30)} ${cost.median.toFixed(cost.median < 10 ? 2 : 1)} (${cost.range})\n`);
  }
}

/** An Authorization header per handshake, the tokens in turn across rounds (the round's `n` starts at 0 each time). */
function inTurn(tokens: readonly string[]): () => string {
  let next = 0;
  return () => `Authorization: Bearer ${tokens[next++ % tokens.length]}\r\n`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-edge-bench-'));
  try {
    const keys = await keysAndTokens(dir);
    const targets: HandshakeTarget[] = [
      { name: 'plain', cli: cliOf() },
      { name: 'access allow/deny', cli: cliOf(), route: { access: ACCESS } },
      { name: 'auth.jwt ES256, new', cli: cliOf(), route: jwtRoute({ keys: keys.jwks }), headers: inTurn(keys.tokens) },
      {
        name: 'auth.jwt ES256, seen',
        cli: cliOf(),
        route: jwtRoute({ keys: keys.jwks }),
        headers: inTurn(keys.tokens.slice(0, RECONNECTING)),
      },
      {
        name: 'auth.jwt HS256, new',
        cli: cliOf(),
        route: jwtRoute({ secret: SECRET }),
        headers: inTurn(keys.hsTokens),
      },
    ];
    if (settings.baseline) targets.push({ name: 'plain (pre-edge build)', cli: cliOf(settings.baseline) });
    await measureInTurns(targets, settings);
    await checkCosts(keys);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
