// The layering of src/ (shared/design.md, docs/internals.md): imports between folders point one way, down this
// list. A folder may import itself and anything below it, never anything above: the control plane drives the data
// plane, the data plane's stages never reach back into the plane or stage that called them.

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/paths.js';

const SRC = join(ROOT, 'src');

/** Top to bottom. A top-level file is its own layer, named by its file name. */
const LAYERS: readonly (readonly string[])[] = [
  ['cli.ts', 'cli', 'demo'],
  ['control'],
  ['admin'],
  ['gateway'],
  ['proxy'],
  ['access'],
  ['http'],
  ['listen'],
  ['pool'],
  ['upstream'],
  ['tunnel'],
  ['config'],
  ['routing'],
  ['handshake'],
  ['platform'],
  ['net'],
  ['observe'],
  ['errors.ts'],
];

function rankOf(file: string): number {
  const top = relative(SRC, file).split('/')[0] as string;
  return LAYERS.findIndex((layer) => layer.includes(top));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** Relative module specifiers of static imports, re-exports and dynamic imports. */
function importsOf(text: string): string[] {
  const specifiers: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)'(\.{1,2}\/[^']+)'/g)) {
    specifiers.push(m[1] as string);
  }
  return specifiers;
}

describe('src/ layering', () => {
  const files = sourceFiles(SRC);

  it('every file of src/ belongs to a layer', () => {
    expect(files.filter((f) => rankOf(f) < 0).map((f) => relative(SRC, f))).toEqual([]);
  });

  it('no import runs back up the layers', () => {
    const upward: string[] = [];
    for (const file of files) {
      const from = rankOf(file);
      for (const specifier of importsOf(readFileSync(file, 'utf8'))) {
        const target = resolve(dirname(file), specifier.replace(/\.js$/, '.ts'));
        const to = rankOf(target);
        if (to < from) upward.push(`${relative(SRC, file)} → ${relative(SRC, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('the check sees imports: a file that imports nothing relative is rare, and the gateway imports the proxy', () => {
    const gateway = readFileSync(join(SRC, 'gateway', 'gateway.ts'), 'utf8');
    expect(importsOf(gateway)).toContain('../proxy/upgrade.js');
  });
});
