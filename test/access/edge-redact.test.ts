// log.redact on the built CLI's real log output: requests carrying a secret in the query string
// (?access_token=secret&room=1), in a Cookie and in an Authorization header, refused at several stages (access
// list, malformed upgrade, bad request target, no backend reachable) and accepted (a tunnel, a plain request). No
// line says `secret`; every logged target keeps the parameter names with the values replaced by "…". With
// `redact: []` the query is logged as it came, and the header values still are not.

import { beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { refusedPort } from '../helpers/backends.js';
import { type CliProcess, ensureBuilt, runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { metricValue, simpleConfig } from '../helpers/gateway.js';
import { sendRequest } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';
import { type CountingBackend, countingBackend, type RequestOptions, statusOf } from './edge-support.js';

beforeAll(ensureBuilt, 120_000);

const cleanups = cleanupAfterEach();
const QUERY = '?access_token=secret&room=1';
const REDACTED_QUERY = '?access_token=…&room=…';
const SECRET_HEADERS = { Cookie: 'session=secret', Authorization: 'Bearer secret' };

async function start(backend: CountingBackend, redact: string[] | undefined): Promise<CliProcess & { port: number }> {
  const dead = `ws://127.0.0.1:${await refusedPort()}`;
  const config = simpleConfig([backend.url], {
    log: { level: 'info', ...(redact === undefined ? {} : { redact }) },
    limits: { maxConnections: 1000, maxConnectionsPerIp: 1000 },
  });
  config.routes = [
    { name: 'denied', match: { path: '/denied' }, pool: 'main', access: { deny: ['127.0.0.0/8'] } },
    { name: 'dead', match: { path: '/dead' }, pool: 'dead' },
    { name: 'main', match: { path: '/' }, pool: 'main' },
  ];
  config.pools = { ...(config.pools as Record<string, unknown>), dead: { backends: [dead] } };
  const cli = runCli(writeConfig(config), ['--no-watch']);
  cleanups.push(() => cli.kill('SIGKILL'));
  onTestFailed(() => {
    process.stderr.write(`wsgate output:\n${cli.lines.slice(-60).join('\n')}\n`);
  });
  const { port, adminPort } = await cli.ready();
  cleanups.push(async () => {
    // Whatever the requests did, nothing stays open or admitted.
    await waitFor(
      async () =>
        metricValue(
          await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text(),
          'wsgate_connections_active',
        ) === 0,
      8000,
      'connections back at 0',
    );
  });
  return Object.assign(cli, { port });
}

/** Requests with the secrets in every place a client puts them, refused at several stages and accepted. */
async function sendSecrets(port: number): Promise<void> {
  const send = (options: RequestOptions) => statusOf(port, { headers: SECRET_HEADERS, ...options });
  expect((await send({ path: `/denied${QUERY}` })).status).toBe(403);
  expect((await send({ path: `/denied${QUERY}`, kind: 'get' })).status).toBe(403);
  expect(
    (await send({ path: `/chat${QUERY}`, headers: { ...SECRET_HEADERS, 'Sec-WebSocket-Key': 'short' } })).status,
  ).toBe(400);
  expect((await send({ path: `/dead${QUERY}`, kind: 'get' })).status).toBe(502);
  expect((await send({ path: `/dead${QUERY}` })).status).toBe(502);
  expect((await send({ path: `/chat${QUERY}` })).status).toBe(101);
  expect((await send({ path: `/chat${QUERY}`, kind: 'get' })).status).toBe(200);
  // A target that is neither origin nor absolute form is refused by the listener, before any route.
  const bad = await sendRequest(port, `GET *${QUERY} HTTP/1.1\r\nHost: localhost\r\nCookie: session=secret\r\n\r\n`);
  expect(bad.status).toBe(400);
  bad.socket.destroy();
}

/** The log lines (parsed) that carry a request target with our query in it, once `count` of them are in. */
async function targetLines(cli: CliProcess, count: number): Promise<Record<string, unknown>[]> {
  const withTarget = () => cli.logs.filter((l) => typeof l.path === 'string' && l.path.includes('access_token'));
  await waitFor(() => withTarget().length >= count, 8000, `${count} log lines with a request target`);
  // The tunnel's close line comes after the client went: wait for it too, so it is checked as well.
  await waitFor(() => cli.logs.some((l) => l.event === 'close'), 8000, 'the tunnel close line');
  return withTarget();
}

describe('log.redact', () => {
  it('by default no log line has the secret; targets keep the names, values "…"', async () => {
    const backend = await countingBackend(cleanups);
    const cli = await start(backend, undefined);
    await sendSecrets(cli.port);
    // 403 ×2, the bad key's 400, the plain request's backend failure, the upgrade's 502, the tunnel's open line,
    // the listener's 400 for the bad target.
    const lines = await targetLines(cli, 7);
    for (const line of lines) expect(line.path).toMatch(/\?access_token=…&room=…$/);
    expect(lines.map((l) => l.path)).toContain(`*${REDACTED_QUERY}`);
    expect(lines.some((l) => l.event === 'open' && l.path === `/chat${REDACTED_QUERY}`)).toBe(true);
    expect(cli.lines.filter((l) => l.includes('secret'))).toEqual([]);
  }, 60_000);

  it('redact: [] logs the query as it came, and still no Cookie or Authorization value', async () => {
    const backend = await countingBackend(cleanups);
    const cli = await start(backend, []);
    await sendSecrets(cli.port);
    const lines = await targetLines(cli, 7);
    for (const line of lines) expect(line.path).toMatch(/\?access_token=secret&room=1$/);
    expect(cli.lines.filter((l) => l.includes('session=secret') || l.includes('Bearer secret'))).toEqual([]);
  }, 60_000);
});
