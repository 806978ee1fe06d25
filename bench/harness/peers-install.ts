// nginx and HAProxy come from Debian packages. The harness installs a missing one with apt-get when it runs as
// root (as CI does); otherwise it says what to install and the target is skipped.

import { execFileSync } from 'node:child_process';
import { commandExists } from './processes.js';

/** Returns undefined when `binary` is (now) available, else the reason it is not. */
export function ensureInstalled(
  binary: string,
  debianPackage: string,
  log: (line: string) => void,
): string | undefined {
  if (commandExists(binary)) return undefined;
  const root = process.getuid?.() === 0;
  if (!root || !commandExists('apt-get')) {
    return `${binary} not found: install it (Debian/Ubuntu: sudo apt-get install ${debianPackage}) or run the harness as root to let it install`;
  }
  log(`${binary} not found: installing the Debian package ${debianPackage} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', debianPackage], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env,
    });
  } catch (err) {
    return `apt-get install ${debianPackage} failed: ${(err as Error).message}`;
  }
  return commandExists(binary) ? undefined : `${debianPackage} installed but ${binary} is still not on PATH`;
}
