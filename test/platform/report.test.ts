// Which path each use of a Node internal takes (src/platform/). On the Node this package pins, every probe passes,
// so a plain run takes every internal path; with WSGATE_NODE_INTERNALS=off (the node-internals-off project in
// vitest.config.ts runs the core cases so) every use takes its public fallback, and a gateway says so at start.

import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type PlatformReport, platformReport } from '../../src/platform/report.js';
import { startEchoBackend } from '../helpers/backends.js';
import { spawnGateway } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { simpleConfig } from '../helpers/gateway.js';

const cleanups = cleanupAfterEach();

const INTERNAL: PlatformReport = {
  nodeInternals: 'on',
  socketIo: 'direct',
  upgradeParser: 'wsgate',
  parserRelease: 'internal',
};
const FALLBACK: PlatformReport = {
  nodeInternals: 'off',
  socketIo: 'stream',
  upgradeParser: 'node',
  parserRelease: 'fallback',
};

describe('platformReport', () => {
  if (process.env.WSGATE_NODE_INTERNALS === 'off') {
    it('WSGATE_NODE_INTERNALS=off: every use of a Node internal takes its public fallback', () => {
      expect(platformReport()).toEqual(FALLBACK);
    });
  } else {
    it('every probe passes on this Node: every internal path is taken', () => {
      expect(platformReport()).toEqual(INTERNAL);
    });
  }

  it('a gateway started with WSGATE_NODE_INTERNALS=off proxies, and its start-up line names every fallback', async () => {
    const backend = await startEchoBackend('b', { welcome: false });
    cleanups.push(() => backend.close());
    const child = await spawnGateway(simpleConfig([backend.url]), { env: { WSGATE_NODE_INTERNALS: 'off' } });
    cleanups.push(() => child.stop());
    const ws = new WebSocket(`ws://127.0.0.1:${child.port}/`);
    cleanups.push(() => ws.terminate());
    const echoed = new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('ping'));
      ws.once('message', (data) => resolve(String(data)));
      ws.once('error', reject);
    });
    expect(await echoed).toBe('ping');
    const lines = child.stdout.filter((l) => l.includes('"nodeInternals"'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject(FALLBACK);
  });
});
