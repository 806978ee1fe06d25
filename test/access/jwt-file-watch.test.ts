// A JWKS file (routes[].auth.jwt.keys) is part of the config generation: it is re-read on a reload, and a change of
// the file alone triggers one (control/watch.ts watches it as it watches TLS files). The new keys apply to new
// connections; open tunnels stay; a broken file is refused and the running keys stay in force.

import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type FileGateway, startFileGateway } from '../control/support.js';
import { echoBackendFor } from '../helpers/backends.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { expectNoLeaks, metricValue, simpleConfig } from '../helpers/gateway.js';
import { jwtAuth, makeKey, sign, type TestKey } from '../helpers/jwt.js';
import { rawUpgrade } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();

function jwksText(keys: readonly TestKey[]): string {
  return JSON.stringify({ keys: keys.map((k) => k.publicJwk) });
}

async function statusWith(fg: FileGateway, key: TestKey): Promise<number> {
  const res = await rawUpgrade(fg.port(), { headers: { Authorization: `Bearer ${await sign(key)}` } });
  res.socket.destroy();
  return res.status;
}

async function setup(watch: boolean, first: TestKey): Promise<FileGateway> {
  const backend = await echoBackendFor(cleanups, 'b1');
  const fg = await startFileGateway(
    simpleConfig([backend.url], {
      routes: [{ name: 'chat', match: { path: '/' }, pool: 'main', auth: jwtAuth({ keys: './jwks.json' }) }],
    }),
    { watch, files: { 'jwks.json': jwksText([first]) } },
  );
  cleanups.push(() => fg.stop());
  return fg;
}

describe('a JWKS file', () => {
  it('is watched: a rotation in the file alone applies to new connections, open tunnels stay', async () => {
    const [a, b] = [await makeKey('ES256', 'a'), await makeKey('EdDSA', 'b')];
    const fg = await setup(true, a as TestKey);
    const ws = new WebSocket(`ws://127.0.0.1:${fg.port()}/`, {
      headers: { Authorization: `Bearer ${await sign(a as TestKey)}` },
    });
    await new Promise((resolve, reject) => {
      ws.once('message', resolve);
      ws.once('error', reject);
    });
    expect(await statusWith(fg, b as TestKey)).toBe(401);

    // The way a Secret volume or an editor swaps a file: write beside it, rename over it.
    writeFileSync(join(fg.dir, 'jwks.next'), jwksText([b as TestKey]));
    renameSync(join(fg.dir, 'jwks.next'), join(fg.dir, 'jwks.json'));
    await waitFor(async () => (await statusWith(fg, b as TestKey)) === 101, 5000, 'the new key in force');
    expect(await statusWith(fg, a as TestKey)).toBe(401);
    expect((await fg.control.status()).lastReload).toMatchObject({ trigger: 'watch', result: 'success' });
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.close();
    await expectNoLeaks({ ...fg, port: fg.port(), tlsPort: 0 });
  });

  it('that turns invalid is refused; the keys in force stay until a valid file comes', async () => {
    const [a, b] = [await makeKey('ES256', 'a'), await makeKey('RS256', 'b')];
    const fg = await setup(true, a as TestKey);
    const failures = async () =>
      metricValue(await fg.metrics(), 'wsgate_config_reload_total', { result: 'failure' }) ?? 0;
    for (const [i, broken] of ['{"keys": [', JSON.stringify({ keys: 'none' }), ''].entries()) {
      writeFileSync(join(fg.dir, 'jwks.json'), broken);
      await waitFor(async () => (await failures()) === i + 1, 5000, 'the reload to be refused');
      expect((await fg.control.status()).lastReload?.errors.join('\n')).toContain('jwks.json');
      expect(await statusWith(fg, a as TestKey)).toBe(101);
      expect(await statusWith(fg, b as TestKey)).toBe(401);
    }
    writeFileSync(join(fg.dir, 'jwks.json'), jwksText([a as TestKey, b as TestKey]));
    await waitFor(async () => (await statusWith(fg, b as TestKey)) === 101, 5000, 'the added key in force');
    expect(await statusWith(fg, a as TestKey)).toBe(101);
  });

  it('is re-read by a reload (SIGHUP, POST /reload) even when the config file did not change', async () => {
    const [a, b] = [await makeKey('ES256', 'a'), await makeKey('ES256', 'b')];
    const fg = await setup(false, a as TestKey);
    writeFileSync(join(fg.dir, 'jwks.json'), jwksText([b as TestKey]));
    expect(await statusWith(fg, b as TestKey)).toBe(401);
    const outcome = await fg.control.reload('signal');
    expect(outcome).toMatchObject({ ok: true, status: 200 });
    expect(await statusWith(fg, b as TestKey)).toBe(101);
    expect(await statusWith(fg, a as TestKey)).toBe(401);
  });
});
