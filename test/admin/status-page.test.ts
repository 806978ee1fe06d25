// The admin status page in a real headless Chromium (Debian's `chromium`), at phone size: what an operator sees
// (listeners, routes, pools with backend health, live connections, traffic rates, config generation), that it
// refreshes by itself, fits the screen, runs under its own CSP, asks for the admin token when one is set, and then
// offers drain and enable buttons per backend.
// Screenshots go to test-artifacts/ (gitignored).
// biome-ignore-all lint/performance/useDomNodeTextContent: Playwright's innerText is the rendered text a person sees, which is the point here

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Client, connectClient, type FileGateway, startFileGateway } from '../control/support.js';
import { echoBackendFor, refusedPort, type TestBackend } from '../helpers/backends.js';
import { CHROMIUM, describeBrowser, launchChromium } from '../helpers/chromium.js';
import { cleanupAfterEach } from '../helpers/cleanups.js';
import type { ConfigObject } from '../helpers/gateway.js';
import { ROOT } from '../helpers/paths.js';

const ARTIFACTS = join(ROOT, 'test-artifacts');
const PHONE = { width: 390, height: 844 };

const cleanups = cleanupAfterEach();

let browser: Browser | undefined;
beforeAll(async () => {
  browser = await launchChromium();
  mkdirSync(ARTIFACTS, { recursive: true });
}, 60_000);
afterAll(async () => {
  await browser?.close();
});

const echo = (id: string): Promise<TestBackend> => echoBackendFor(cleanups, id);

async function gatewayWith(config: ConfigObject): Promise<FileGateway> {
  const gw = await startFileGateway(config);
  cleanups.push(() => gw.stop());
  return gw;
}

async function phonePage(): Promise<{ page: Page; errors: string[] }> {
  if (!browser) throw new Error('no browser');
  const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  return { page, errors };
}

function config(a: string, b: string, dead: number, extra: ConfigObject = {}): ConfigObject {
  return {
    listeners: [{ name: 'public', address: '127.0.0.1', port: 0 }],
    admin: { address: '127.0.0.1', port: 0 },
    routes: [
      { name: 'chat', match: { path: '/chat' }, pool: 'chat' },
      { name: 'echo', match: { path: '/' }, pool: 'echo' },
    ],
    pools: {
      chat: {
        hashKey: 'header:x-user-id',
        balanceFactor: 1.25,
        // One live backend and one that refuses: the health checks mark it unhealthy.
        backends: [a, `ws://127.0.0.1:${dead}`],
        healthCheck: { path: '/', interval: '100ms', timeout: '200ms', unhealthyThreshold: 1, healthyThreshold: 1 },
      },
      echo: { backends: [b] },
    },
    timeouts: { handshake: '2s', idle: '5m', drain: '1s' },
    ...extra,
  };
}

describeBrowser('admin status page in Chromium', () => {
  it('shows listeners, routes, backend health, live connections, rates and generation, refreshing by itself', async () => {
    if (!browser) throw new Error(`${CHROMIUM} is missing; CI must install Debian's chromium package`);
    const a = await echo('a');
    const b = await echo('b');
    const dead = await refusedPort();
    const gw = await gatewayWith(config(a.url, b.url, dead));
    const clients: Client[] = [];
    for (let i = 0; i < 3; i++) {
      clients.push(await connectClient(`ws://127.0.0.1:${gw.port()}/chat`, { 'x-user-id': `user-${i}` }));
    }
    cleanups.push(() => {
      for (const c of clients) c.ws.terminate();
    });
    // Steady traffic so messages/s and bytes/s have something to show.
    const traffic = setInterval(() => {
      for (const c of clients) c.ws.send('x'.repeat(100));
    }, 20);
    cleanups.push(() => clearInterval(traffic));

    const { page, errors } = await phonePage();
    await page.goto(`http://127.0.0.1:${gw.adminPort}/`);
    await expect.poll(() => page.locator('#ready').textContent()).toBe('ready');

    // Listeners: name and the real bound port.
    const listeners = page.locator('#listeners');
    await expect.poll(() => listeners.innerText()).toContain('public');
    expect(await listeners.innerText()).toContain(String(gw.port()));
    // Routes with their match and pool.
    const routes = await page.locator('#routes').innerText();
    expect(routes).toMatch(/chat\s+\/chat\s+chat\s+3/);
    expect(routes).toMatch(/echo\s+\/\s+echo\s+0/);
    // Pools and backend health, as a person reads the badges.
    await expect
      .poll(() => page.locator('#pools .badge.bad').allInnerTexts(), { timeout: 5000 })
      .toEqual(['unhealthy']);
    const pools = await page.locator('#pools').innerText();
    expect(pools).toContain(a.url);
    expect(pools).toContain(`ws://127.0.0.1:${dead}`);
    expect(pools).toContain('hash key header:x-user-id · balance factor 1.25 · 1/2 healthy · 3 live');
    expect(await page.locator('#pools .badge.ok').allInnerTexts()).toEqual(['healthy', 'healthy']);
    // Tiles.
    expect(await page.locator('#t-connections').innerText()).toBe('3');
    expect(await page.locator('#t-generation').innerText()).toBe('1');
    expect(await page.locator('#t-workers').innerText()).toBe('1 / 1');
    await expect
      .poll(async () => Number((await page.locator('#t-messages').innerText()).replace(/,/g, '')), { timeout: 8000 })
      .toBeGreaterThan(10);
    expect(await page.locator('#t-bytes').innerText()).toMatch(/\d+(\.\d)? (B|KiB|MiB)/);

    // A reload and a new connection show up without touching the page.
    clients.push(await connectClient(`ws://127.0.0.1:${gw.port()}/`, { 'x-user-id': 'late' }));
    await gw.control.reload('admin');
    await expect.poll(() => page.locator('#t-generation').innerText(), { timeout: 5000 }).toBe('2');
    await expect.poll(() => page.locator('#t-connections').innerText()).toBe('4');
    expect(await page.locator('#t-reload').innerText()).toBe('last reload success (admin)');

    // Readable on a phone: nothing wider than the screen.
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(ARTIFACTS, 'status-page-phone.png'), fullPage: true });
    expect(errors).toEqual([]);
  }, 60_000);

  it('asks for the admin token when one is set, then shows the status', async () => {
    if (!browser) throw new Error(`${CHROMIUM} is missing`);
    const a = await echo('a');
    const b = await echo('b');
    const dead = await refusedPort();
    const token = 'status-page-token-1234';
    const gw = await gatewayWith(config(a.url, b.url, dead, { admin: { address: '127.0.0.1', port: 0, token } }));
    const { page } = await phonePage();
    await page.goto(`http://127.0.0.1:${gw.adminPort}/`);
    await expect.poll(() => page.locator('#banner').innerText()).toBe('This wsgate requires the admin token.');
    expect(await page.locator('#token-form').isVisible()).toBe(true);
    await page.locator('#token').fill('not-the-token-at-all');
    await page.locator('#token-form button').click();
    await expect.poll(() => page.locator('#banner').innerText()).toBe('The admin token was not accepted.');
    await page.locator('#token').fill(token);
    await page.locator('#token-form button').click();
    await expect.poll(() => page.locator('#ready').innerText()).toBe('ready');
    expect(await page.locator('#token-form').isVisible()).toBe(false);
    expect(await page.locator('#routes').innerText()).toContain('chat');

    // With the token, each backend has its admin state and a button: drain `a`, then enable it again.
    const rowOfA = page.locator('#pools tr', { hasText: a.url });
    expect(await rowOfA.locator('.badge.admin-state').innerText()).toBe('active');
    await rowOfA.getByRole('button', { name: 'Drain' }).click();
    await expect.poll(() => rowOfA.locator('.badge.warn').innerText(), { timeout: 5000 }).toBe('drain');
    const drained = gw.gateway.runtime.pools.get('chat')?.members.find((m) => m.backend.id === a.url);
    expect(drained?.adminState).toBe('drain');
    await page.screenshot({ path: join(ARTIFACTS, 'status-page-token.png') });
    await rowOfA.getByRole('button', { name: 'Enable' }).click();
    await expect.poll(() => rowOfA.locator('.badge.admin-state').innerText(), { timeout: 5000 }).toBe('active');
    expect(drained?.adminState).toBe('active');
  }, 60_000);
});
