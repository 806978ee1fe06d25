// `npm start` and `npm run connect` build first only when dist/ is behind the sources: the script, run in a copy
// of the layout with a stand-in `npm` that records being asked to build.

import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NODE_BIN, ROOT } from '../helpers/paths.js';

function layout() {
  const root = mkdtempSync(join(tmpdir(), 'wsgate-stale-'));
  mkdirSync(join(root, 'scripts'));
  cpSync(join(ROOT, 'scripts', 'build-if-stale.ts'), join(root, 'scripts', 'build-if-stale.ts'));
  for (const dir of ['src/cli', 'bench', 'dist/src/cli', 'dist/bench', 'bin'])
    mkdirSync(join(root, dir), { recursive: true });
  const npm = join(root, 'bin', 'npm');
  writeFileSync(npm, `#!/bin/sh\necho "$@" > '${join(root, 'built')}'\n`);
  chmodSync(npm, 0o755);
  const put = (file: string, ageSeconds: number) => {
    writeFileSync(join(root, file), '');
    const t = Date.now() / 1000 - ageSeconds;
    utimesSync(join(root, file), t, t);
  };
  const run = () => {
    rmSync(join(root, 'built'), { force: true });
    const r = spawnSync(NODE_BIN, [join(root, 'scripts', 'build-if-stale.ts')], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, PATH: `${join(root, 'bin')}:${process.env.PATH}` },
    });
    const built = existsSync(join(root, 'built')) ? readFileSync(join(root, 'built'), 'utf8').trim() : undefined;
    return { status: r.status, stderr: r.stderr, built };
  };
  return { put, run };
}

describe('build-if-stale', () => {
  it('does nothing when every source is older than what it compiles to', () => {
    const { put, run } = layout();
    put('src/cli/a.ts', 60);
    put('dist/src/cli/a.js', 30);
    put('bench/b.ts', 60);
    put('dist/bench/b.js', 30);
    expect(run()).toEqual({ status: 0, stderr: '', built: undefined });
  });

  it('builds when a source is newer, or its output is missing, and says which', () => {
    const { put, run } = layout();
    put('src/cli/a.ts', 10);
    put('dist/src/cli/a.js', 30);
    expect(run()).toEqual({ status: 0, stderr: 'building dist/: src/cli/a.ts changed\n', built: 'run --silent build' });
    put('dist/src/cli/a.js', 5);
    put('bench/new.ts', 60);
    expect(run()).toEqual({ status: 0, stderr: 'building dist/: bench/new.ts changed\n', built: 'run --silent build' });
  });
});
