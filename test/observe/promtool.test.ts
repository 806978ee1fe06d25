// `promtool check metrics` on a live scrape of the built CLI's /metrics, as Prometheus would get it: with
// prom-client's process and Node.js metrics on, in one process and with `workers: 2`; no name exempted.

import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PROMTOOL, promtoolMetricProblems } from '../control/support.js';
import { startEchoBackend } from '../helpers/backends.js';
import { runCli, writeConfig } from '../helpers/child-gateway.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import { IN_CI } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const cleanups = cleanupAfterEach();
// CI installs prometheus (see .ci/run); a developer machine without it cannot run these checks.
const describePromtool = existsSync(PROMTOOL) || IN_CI ? describe : describe.skip;

describePromtool('promtool check metrics on a live scrape', () => {
  for (const workers of [1, 2]) {
    it(`workers: ${workers}`, async () => {
      const backend = await startEchoBackend('b');
      cleanups.push(() => backend.close());
      const cli = runCli(
        writeConfig({
          listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
          admin: { address: '127.0.0.1', port: 0 },
          routes: [{ name: 'main', pool: 'main' }],
          pools: { main: { backends: [backend.url] } },
          workers,
        }),
      );
      cleanups.push(async () => {
        cli.kill('SIGKILL');
        await cli.exited;
      });
      const { port, adminPort } = await cli.ready();
      // Traffic, so that the per-route and per-backend series exist too.
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      await new Promise((resolve) => ws.once('message', resolve));
      ws.send('x');
      await new Promise((resolve) => ws.once('message', resolve));
      let text = '';
      await waitFor(async () => {
        text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
        return text.includes('wsgate_messages_total{');
      });
      ws.close();
      expect(text).toContain('process_cpu_seconds_total');
      expect(text).toContain('nodejs_active_handles{');
      expect(text).not.toContain('nodejs_active_handles_total');
      if (workers > 1) expect(text).toContain(`wsgate_workers ${workers}`);
      expect(promtoolMetricProblems(text)).toEqual([]);
    });
  }
});
