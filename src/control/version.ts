// wsgate's version, read once from package.json (two levels up from src/ or dist/src/).

import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'wsgate' && typeof pkg.version === 'string') return pkg.version;
    } catch (err) {
      // Not at this depth (source vs. compiled layout): try the next one.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return 'unknown';
}

export const VERSION = readVersion();
