// Debian's chromium driven by playwright-core (never a browser playwright downloads), with the flags that keep it
// from reaching for the network this machine does not have.

import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';
import { describe, it } from 'vitest';
import { IN_CI } from './paths.js';

export const CHROMIUM = '/usr/bin/chromium';

/** Outside CI, a machine without chromium skips the browser cases; in CI (.ci/run installs it) they fail instead. */
const browserPresent = existsSync(CHROMIUM) || IN_CI;
export const describeBrowser = browserPresent ? describe : describe.skip;
export const itBrowser = browserPresent ? it : it.skip;

/**
 * Headless Chromium, or undefined where it is not installed (the cases then fail or skip as above). playwright's
 * launch() gives it a fresh temporary --user-data-dir of its own.
 */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) return undefined;
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
}
