// Hostile tokens against routes[].auth.jwt (docs/security.md, "JWT and edge controls: hostile cases"), through a
// running gateway on real sockets, each on ws://, wss:// and plain HTTP: `alg: none`, HS256 signed with the RSA
// public key (key confusion), another audience or issuer, exp/nbf just inside and just outside clockSkew, a 1 MiB
// token, a token in two places, kids with path characters, a JWKS of 10,000 keys, client-sent copies of the
// forwarded-claim headers. A refusal says nothing that tells one failure from another, reaches no backend (its
// accepted connections are counted) and leaves nothing behind.

import { createPublicKey } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { base64url, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { stringify } from 'yaml';
import { MAX_JWKS_KEYS } from '../../src/config/jwks-file.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { expectNoLeaks, metricValue, simpleConfig, startGateway, type TestGateway } from '../helpers/gateway.js';
import { AUDIENCE, ISSUER, jwtAuth, makeKey, sign, startJwksServer, type TestKey, writeJwks } from '../helpers/jwt.js';
import { openSocket, readUntilClose, upgradeRequest } from '../helpers/raw-client.js';

/** How a request reaches the gateway: an upgrade on ws:// or wss://, or a plain GET (a long poll) on http://. */
type Channel = 'ws' | 'wss' | 'http';
const CHANNELS: readonly Channel[] = ['ws', 'wss', 'http'];

interface Answer {
  readonly status: number;
  /** Lower-cased names; Date and X-Request-Id (which differ per request) left out. */
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly ms: number;
}

/** A backend that counts the TCP connections it accepts and records what each request carried. */
interface CountingBackend {
  readonly url: string;
  accepts: number;
  readonly seen: IncomingHttpHeaders[];
  /** The request target of each request, in the same order. */
  readonly targets: string[];
  close(): Promise<void>;
}

async function countingBackend(): Promise<CountingBackend> {
  const server = createServer((req, res) => {
    backend.seen.push(req.headers);
    backend.targets.push(req.url ?? '');
    res.end('plain');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    backend.seen.push(req.headers);
    backend.targets.push(req.url ?? '');
    ws.on('error', () => {});
    ws.send('hello');
  });
  server.on('connection', () => backend.accepts++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const backend: CountingBackend = {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    accepts: 0,
    seen: [],
    targets: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return backend;
}

const cleanups = cleanupAfterEach();

let backend: CountingBackend;
let gw: TestGateway;
let rsa: TestKey;
let es: TestKey;
let jwksDir: string;
/** The 10,000-key set: `es`'s public key under kid `big-7777`, the rest another key's under other kids. */
let bigKey: TestKey;
let bigJwksFile: string;
let attackerKey: TestKey;

const SKEW_S = 30;
const FROM = ['header:Authorization', 'query:access_token', 'cookie:session'];
const BIG_KEYS = 10_000;

beforeAll(async () => {
  rsa = await makeKey('RS256', 'rs');
  es = await makeKey('ES256', 'es');
  attackerKey = await makeKey('ES256', 'attacker');
  const rsFile = writeJwks([rsa, es]);
  jwksDir = dirname(rsFile);
  // An attacker-made JWKS at the place a kid of "../attacker/jwks.json" would name, if a kid were ever a path.
  mkdirSync(join(jwksDir, '..', 'attacker'), { recursive: true });
  writeJwks([attackerKey], join(jwksDir, '..', 'attacker'));

  const real = await makeKey('ES256', 'big-7777');
  const decoy = await makeKey('ES256', 'decoy');
  bigKey = real;
  const keys: JWK[] = [];
  for (let i = 0; i < BIG_KEYS; i++) keys.push(i === 7777 ? real.publicJwk : { ...decoy.publicJwk, kid: `big-${i}` });
  bigJwksFile = join(jwksDir, 'big.json');
  writeFileSync(bigJwksFile, JSON.stringify({ keys }));

  backend = await countingBackend();
  gw = await startGateway(
    simpleConfig([backend.url], {
      listeners: [
        { name: 'public', address: '127.0.0.1', port: 0 },
        { name: 'tls', address: '127.0.0.1', port: 0, tls: {} },
      ],
      routes: [
        {
          name: 'rs',
          match: { path: '/rs' },
          pool: 'main',
          auth: jwtAuth(
            { keys: rsFile },
            {
              algorithms: ['RS256'],
              from: FROM,
              clockSkew: `${SKEW_S}s`,
              forwardClaims: { sub: 'X-User-Id', tenant: 'X-Tenant' },
            },
          ),
        },
        {
          name: 'big',
          match: { path: '/big' },
          pool: 'main',
          auth: jwtAuth({ keys: bigJwksFile }, { algorithms: ['ES256'] }),
        },
      ],
      limits: { maxConnections: 10_000, maxConnectionsPerIp: 10_000 },
    }),
  );
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await backend?.close();
});

/** One request on `channel` to `path` with `headers`; the whole answer, read until the gateway closes. */
async function ask(channel: Channel, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const started = performance.now();
  const tls = channel === 'wss';
  const socket = await openSocket(tls ? gw.tlsPort : gw.port, tls);
  const request =
    channel === 'http'
      ? `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${Object.entries(headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('')}\r\n`
      : upgradeRequest({ path, headers });
  socket.write(request);
  const first = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
  socket.pause();
  const text = first.toString('latin1');
  const status = Number(text.split(' ')[1]);
  let all = first;
  if (status === 101) socket.destroy();
  else all = await readUntilClose(socket, first);
  const raw = all.toString('latin1');
  const end = raw.indexOf('\r\n\r\n');
  const out: Record<string, string> = {};
  for (const line of raw.slice(0, end).split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).trim().toLowerCase();
    if (name !== 'date' && name !== 'x-request-id') out[name] = line.slice(i + 1).trim();
  }
  return { status, headers: out, body: status === 101 ? '' : raw.slice(end + 4), ms: performance.now() - started };
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

/** `token` on every channel: each answer must be a 401 invalid_token, identical to the others of its channel. */
async function expectInvalidToken(path: string, token: string): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (const channel of CHANNELS) {
    const a = await ask(channel, path, bearer(token));
    expect(a.status, channel).toBe(401);
    expect(a.headers['www-authenticate'], channel).toBe('Bearer error="invalid_token"');
    expect(a.headers['x-wsgate-error'], channel).toBe('WSG_AUTH_INVALID');
    answers.push(a);
  }
  return answers;
}

/** The refusals of a test reached no backend and left nothing open. */
async function expectUntouched(accepts: number): Promise<void> {
  expect(backend.accepts).toBe(accepts);
  await expectNoLeaks(gw);
}

function unsigned(header: object, payload: object): string {
  const part = (o: object) => base64url.encode(JSON.stringify(o));
  return `${part(header)}.${part(payload)}.`;
}

const now = () => Math.floor(Date.now() / 1000);

describe('algorithm attacks', () => {
  it('alg "none" (with and without a kid, and "NONE"): 401 on every channel', async () => {
    const accepts = backend.accepts;
    const payload = { sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: now() + 3600 };
    for (const header of [{ alg: 'none' }, { alg: 'none', kid: 'rs' }, { alg: 'NONE', kid: 'rs' }]) {
      await expectInvalidToken('/rs', unsigned({ ...header, typ: 'JWT' }, payload));
    }
    await expectUntouched(accepts);
  });

  it('key confusion: HS256 signed with the RSA public key (PEM, DER, JWK JSON) on an RS256 route: 401', async () => {
    const accepts = backend.accepts;
    const publicKey = createPublicKey({ key: rsa.publicJwk as JWK & { kty: 'RSA' }, format: 'jwk' });
    const secrets = [
      Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }) as string),
      publicKey.export({ type: 'spki', format: 'der' }),
      Buffer.from(JSON.stringify(rsa.publicJwk)),
    ];
    for (const secret of secrets) {
      const token = await new SignJWT({ sub: 'admin', iss: ISSUER, aud: AUDIENCE })
        .setProtectedHeader({ alg: 'HS256', kid: 'rs' })
        .setExpirationTime('1h')
        .sign(secret);
      await expectInvalidToken('/rs', token);
    }
    // A properly signed token of an algorithm the route does not list (ES256 key in the same JWKS): also 401.
    await expectInvalidToken('/rs', await sign(es));
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'rs', result: 'invalid' })).toBeGreaterThan(0);
    await expectUntouched(accepts);
  });
  it('a key named or embedded in the token (jwk, jku, x5u headers) is never used: 401', async () => {
    const accepts = backend.accepts;
    const jwks = await startJwksServer([attackerKey], cleanups);
    const headers = [
      { jwk: attackerKey.publicJwk },
      { jku: jwks.url },
      { x5u: jwks.url },
      { jwk: attackerKey.publicJwk, jku: jwks.url, kid: 'es' },
    ];
    for (const extra of headers) {
      const token = await new SignJWT({ sub: 'admin', iss: ISSUER, aud: AUDIENCE })
        .setProtectedHeader({ alg: 'ES256', kid: 'attacker', ...extra })
        .setExpirationTime('1h')
        .sign(attackerKey.privateKey);
      await expectInvalidToken('/big', token);
    }
    expect(jwks.requests).toBe(0);
    await expectUntouched(accepts);
  });
});

describe('claims', () => {
  it('a token valid for another audience or another issuer: 401', async () => {
    const accepts = backend.accepts;
    await expectInvalidToken('/rs', await sign(rsa, { aud: 'billing' }));
    await expectInvalidToken('/rs', await sign(rsa, { aud: ['billing', 'admin'] }));
    await expectInvalidToken('/rs', await sign(rsa, { iss: 'https://evil.test' }));
    await expectInvalidToken('/rs', await sign(rsa, { iss: `${ISSUER}/` }));
    await expectUntouched(accepts);
  });

  it(`exp and nbf against clockSkew ${SKEW_S}s: 10 s inside opens, 10 s outside is refused`, async () => {
    const inside = SKEW_S - 10;
    const outside = SKEW_S + 10;
    const open = [await sign(rsa, {}, now() - inside), await sign(rsa, { nbf: now() + inside })];
    const refused = [await sign(rsa, {}, now() - outside), await sign(rsa, { nbf: now() + outside })];
    for (const token of open) {
      for (const channel of CHANNELS) {
        expect((await ask(channel, '/rs', bearer(token))).status, channel).toBe(channel === 'http' ? 200 : 101);
      }
    }
    const accepts = backend.accepts;
    for (const token of refused) await expectInvalidToken('/rs', token);
    const text = await gw.metrics();
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'rs', result: 'expired' })).toBeGreaterThan(0);
    expect(metricValue(text, 'wsgate_auth_results_total', { route: 'rs', result: 'not_yet_valid' })).toBeGreaterThan(0);
    await expectUntouched(accepts);
  });
});

describe('where the token is', () => {
  it('a 1 MiB token: 431 from the header-size limit in the header, the cookie and the query, at once', async () => {
    const accepts = backend.accepts;
    const huge = `${(await sign(rsa)).split('.').slice(0, 2).join('.')}.${'A'.repeat(1024 * 1024)}`;
    for (const channel of CHANNELS) {
      for (const [path, headers] of [
        ['/rs', bearer(huge)],
        ['/rs', { Cookie: `session=${huge}` }],
        [`/rs?access_token=${huge}`, {}],
      ] as const) {
        const a = await ask(channel, path, headers);
        expect(a.status, `${channel} ${path.slice(0, 20)}`).toBe(431);
        expect(a.ms).toBeLessThan(2000);
      }
    }
    await expectUntouched(accepts);
  });

  it('a token over 8192 characters that fits the head: 401 invalid_token before any parsing', async () => {
    const accepts = backend.accepts;
    const long = `${await sign(rsa)}${'A'.repeat(9000)}`;
    await expectInvalidToken('/rs', long);
    await expectUntouched(accepts);
  });

  it('a token in two places, or twice in one: 401 invalid_request', async () => {
    const accepts = backend.accepts;
    const token = await sign(rsa);
    const cases: [string, Record<string, string>][] = [
      [`/rs?access_token=${token}`, bearer(token)],
      ['/rs', { ...bearer(token), Cookie: `session=${token}` }],
      ['/rs', { Cookie: `session=${token}; session=${token}` }],
      [`/rs?access_token=${token}&access_token=${token}`, {}],
    ];
    for (const channel of CHANNELS) {
      for (const [path, headers] of cases) {
        const a = await ask(channel, path, headers);
        expect(a.status).toBe(401);
        expect(a.headers['www-authenticate']).toBe('Bearer error="invalid_request"');
        expect(a.headers['x-wsgate-error']).toBe('WSG_AUTH_AMBIGUOUS');
      }
    }
    await expectUntouched(accepts);
  });
});

describe('kids and key sets', () => {
  it('a kid with path characters is only ever a name: 401, even when it names a file holding the signing key', async () => {
    const accepts = backend.accepts;
    const unknownBefore = metricValue(await gw.metrics(), 'wsgate_auth_results_total', {
      route: 'rs',
      result: 'unknown_key',
    });
    const kids = ['../../etc/passwd', '%2e%2e/%2e%2e/etc/passwd', '../attacker/jwks.json', '/dev/zero', 'rs/../rs'];
    for (const kid of kids) {
      // Signed by the attacker's key, whose JWKS sits at ../attacker/jwks.json next to the route's JWKS.
      const token = await new SignJWT({ sub: 'admin', iss: ISSUER, aud: AUDIENCE })
        .setProtectedHeader({ alg: 'RS256', kid })
        .setExpirationTime('1h')
        .sign((await generateKeyPair('RS256')).privateKey);
      await expectInvalidToken('/rs', token);
      const es256 = await new SignJWT({ sub: 'admin', iss: ISSUER, aud: AUDIENCE })
        .setProtectedHeader({ alg: 'ES256', kid })
        .setExpirationTime('1h')
        .sign(attackerKey.privateKey);
      await expectInvalidToken('/big', es256);
    }
    const unknownAfter = metricValue(await gw.metrics(), 'wsgate_auth_results_total', {
      route: 'rs',
      result: 'unknown_key',
    });
    expect((unknownAfter ?? 0) - (unknownBefore ?? 0)).toBe(kids.length * CHANNELS.length);
    await expectUntouched(accepts);
  });

  it(`a JWKS file of ${BIG_KEYS} keys loads; the token's kid picks its key; the answers stay quick`, async () => {
    const good = await sign(bigKey);
    // The right key under a neighbour's kid, and a kid-less token that matches every key: both refused.
    const wrongKid = await new SignJWT({ sub: 'user-1', iss: ISSUER, aud: AUDIENCE })
      .setProtectedHeader({ alg: 'ES256', kid: 'big-7776' })
      .setExpirationTime('1h')
      .sign(bigKey.privateKey);
    const noKid = await new SignJWT({ sub: 'user-1', iss: ISSUER, aud: AUDIENCE })
      .setProtectedHeader({ alg: 'ES256' })
      .setExpirationTime('1h')
      .sign(bigKey.privateKey);
    const times: Record<string, number[]> = { good: [], wrongKid: [], noKid: [] };
    for (let i = 0; i < 5; i++) {
      for (const channel of CHANNELS) {
        const ok = await ask(channel, '/big', bearer(good));
        expect(ok.status).toBe(channel === 'http' ? 200 : 101);
        times.good?.push(ok.ms);
        times.wrongKid?.push((await expectInvalidToken('/big', wrongKid))[0]?.ms ?? 0);
        times.noKid?.push((await expectInvalidToken('/big', noKid))[0]?.ms ?? 0);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    const report = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, `${median(v).toFixed(2)} ms`]));
    console.log(`${BIG_KEYS}-key JWKS, median answer time per request (loopback, incl. connect):`, report);
    for (const xs of Object.values(times)) expect(median(xs)).toBeLessThan(250);
  });

  it(`a JWKS of more than ${MAX_JWKS_KEYS} keys is refused when the config is loaded`, () => {
    const file = join(jwksDir, 'too-big.json');
    const jwk = es.publicJwk;
    writeFileSync(
      file,
      JSON.stringify({ keys: Array.from({ length: MAX_JWKS_KEYS + 1 }, (_, i) => ({ ...jwk, kid: `k${i}` })) }),
    );
    const config = simpleConfig([backend.url], {
      routes: [{ name: 'r', match: { path: '/' }, pool: 'main', auth: jwtAuth({ keys: file }) }],
    });
    expect(() => parseConfig(stringify(config), join(jwksDir, 'config.yaml'))).toThrow(ConfigError);
    expect(() => parseConfig(stringify(config), join(jwksDir, 'config.yaml'))).toThrow(/at most 10000 keys/);
  });
});

describe('forwarded claims', () => {
  it("a client's own X-User-Id / X-Tenant never reach the backend, whether or not the token has those claims", async () => {
    const spoof = {
      'X-User-Id': 'admin',
      'x-tenant': 'evil',
      'X-TENANT': 'evil2',
    };
    const cases = [
      { token: await sign(rsa, { tenant: 'acme' }), userId: 'user-1', tenant: 'acme' },
      // No tenant claim: nothing forwarded for it, and the client's copies are still gone.
      { token: await sign(rsa), userId: 'user-1', tenant: undefined },
      // Neither claim: the route forwards nothing, and removes both.
      { token: await sign(rsa, { sub: undefined }), userId: undefined, tenant: undefined },
    ];
    for (const { token, userId, tenant } of cases) {
      for (const channel of CHANNELS) {
        const seen = backend.seen.length;
        const a = await ask(channel, '/rs', { ...spoof, ...bearer(token) });
        expect(a.status).toBe(channel === 'http' ? 200 : 101);
        const headers = backend.seen[seen] as IncomingHttpHeaders;
        expect(backend.seen.length).toBe(seen + 1);
        expect(headers['x-user-id'], channel).toBe(userId);
        expect(headers['x-tenant'], channel).toBe(tenant);
        expect(headers.authorization, channel).toBe(`Bearer ${token}`);
      }
    }
  });
});

describe('what the backend receives', () => {
  it('the token leaves the query string; in Authorization or a cookie it is forwarded as sent', async () => {
    const token = await sign(rsa);
    const cases: {
      path: string;
      headers: Record<string, string>;
      target: string;
      auth: string | undefined;
      cookie: string | undefined;
    }[] = [
      {
        path: `/rs?room=1&access_token=${token}`,
        headers: {},
        target: '/rs?room=1',
        auth: undefined,
        cookie: undefined,
      },
      { path: '/rs', headers: bearer(token), target: '/rs', auth: `Bearer ${token}`, cookie: undefined },
      {
        path: '/rs',
        headers: { Cookie: `theme=dark; session=${token}` },
        target: '/rs',
        auth: undefined,
        cookie: `theme=dark; session=${token}`,
      },
    ];
    for (const { path, headers, target, auth, cookie } of cases) {
      for (const channel of CHANNELS) {
        const seen = backend.seen.length;
        expect((await ask(channel, path, headers)).status).toBe(channel === 'http' ? 200 : 101);
        expect(backend.targets[seen], channel).toBe(target);
        expect(backend.seen[seen]?.authorization, channel).toBe(auth);
        expect(backend.seen[seen]?.cookie, channel).toBe(cookie);
      }
    }
  });
});

describe('what a refusal tells', () => {
  it('wrong signature, unknown kid, expired, not yet valid, other audience, alg none, garbage: the same answer', async () => {
    const stranger = await makeKey('RS256', 'rs');
    const unknownKid = await makeKey('RS256', 'nobody');
    const tokens = {
      wrongSignature: await sign(stranger),
      unknownKid: await sign(unknownKid),
      expired: await sign(rsa, {}, now() - 3600),
      notYetValid: await sign(rsa, { nbf: now() + 3600 }),
      otherAudience: await sign(rsa, { aud: 'billing' }),
      algNone: unsigned({ alg: 'none', kid: 'rs' }, { sub: 'admin', iss: ISSUER, aud: AUDIENCE }),
      garbage: 'not.a.token',
    };
    const accepts = backend.accepts;
    const byChannel: Record<Channel, Answer[]> = { ws: [], wss: [], http: [] };
    for (const token of Object.values(tokens)) {
      const answers = await expectInvalidToken('/rs', token);
      for (const [i, c] of CHANNELS.entries()) byChannel[c].push(answers[i] as Answer);
    }
    for (const channel of CHANNELS) {
      const [first, ...rest] = byChannel[channel];
      for (const a of rest) {
        expect({ headers: a.headers, body: a.body }).toEqual({ headers: first?.headers, body: first?.body });
      }
      expect(first?.body).toBe('the token is not valid\n');
    }
    // Upgrades and plain requests: the same status, challenge, code and body.
    const pick = (a: Answer) => ({
      status: a.status,
      challenge: a.headers['www-authenticate'],
      code: a.headers['x-wsgate-error'],
      body: a.body,
    });
    expect(pick(byChannel.http[0] as Answer)).toEqual(pick(byChannel.ws[0] as Answer));
    await expectUntouched(accepts);
  });
});
