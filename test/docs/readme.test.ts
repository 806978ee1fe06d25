// What a newcomer copies from the docs works: the README's config (and the one configuration.md starts with) is
// valid, and every relative link in README.md, BENCHMARKS.md and docs/ leads to a file or heading that exists.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DOCS = [
  'README.md',
  'BENCHMARKS.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

/** Fenced blocks of one language, in order. */
function fenced(markdown: string, language: string): string[] {
  return [...markdown.matchAll(new RegExp(`^\`\`\`${language}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].map(
    (m) => m[1] as string,
  );
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchorOf(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchorsIn(markdown: string): Set<string> {
  const outsideCode = markdown.replace(/^```[\s\S]*?^```$/gm, '');
  return new Set([...outsideCode.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1] as string)));
}

describe('config examples', () => {
  it("README's config and the one configuration.md starts with are valid", () => {
    const examples = [fenced(read('README.md'), 'yaml')[0], fenced(read('docs/configuration.md'), 'yaml')[0]];
    for (const text of examples) {
      expect(text).toContain('listeners:');
      expect(() => parseConfig(text as string, join(ROOT, 'example.yaml'))).not.toThrow();
    }
  });
});

describe('links', () => {
  it('every relative link in the docs leads to an existing file and heading', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of DOCS) {
      const text = read(file).replace(/^```[\s\S]*?^```$/gm, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (!target || /^[a-z]+:/.test(target)) continue;
        checked++;
        const [path, anchor] = target.split('#') as [string, string | undefined];
        const resolved = path === '' ? join(ROOT, file) : join(ROOT, dirname(file), path);
        if (!existsSync(resolved)) broken.push(`${file}: ${target} (no ${relative(ROOT, resolved)})`);
        else if (anchor !== undefined && !anchorsIn(readFileSync(resolved, 'utf8')).has(anchor))
          broken.push(`${file}: ${target} (no heading)`);
      }
    }
    expect(checked).toBeGreaterThan(20);
    expect(broken).toEqual([]);
  });
});
