// Runs before `npm start` and `npm run connect`: builds dist/ only when a source under src/ or bench/ is newer
// than what it compiles to (or that is missing), so a current build starts in milliseconds. The wsgate bin itself
// never builds. Run by Node 24 with type stripping (npm scripts put it on PATH).

import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');

function mtimeOf(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** The first TypeScript source under `dir` whose compiled .js is missing or older than it. */
function staleSource(dir: string): string | undefined {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const stale = staleSource(path);
      if (stale !== undefined) return stale;
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      const built = mtimeOf(join(root, 'dist', relative(root, path)).replace(/\.ts$/, '.js'));
      if (built === undefined || built < (mtimeOf(path) ?? 0)) return path;
    }
  }
  return undefined;
}

const stale = staleSource(join(root, 'src')) ?? staleSource(join(root, 'bench'));
if (stale !== undefined) {
  process.stderr.write(`building dist/: ${relative(root, stale)} changed\n`);
  const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  process.exit(build.status ?? 1);
}
