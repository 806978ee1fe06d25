// docs/configuration.md's reference names every key the schema accepts, and no key it does not.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';

type Node = { _zod: { def: Record<string, unknown> & { type: string } } };

/** Every leaf key path of a zod schema: arrays as `[]`, records as `NAME`. */
function keyPaths(schema: Node, path: string, out: Set<string>): void {
  const def = schema._zod.def;
  switch (def.type) {
    case 'object':
      for (const [k, v] of Object.entries(def.shape as Record<string, Node>))
        keyPaths(v, path ? `${path}.${k}` : k, out);
      return;
    case 'array':
      keyPaths(def.element as Node, `${path}[]`, out);
      return;
    case 'record':
      keyPaths(def.valueType as Node, `${path}.NAME`, out);
      return;
    case 'optional':
    case 'default':
    case 'nullable':
    case 'readonly':
    case 'prefault':
      keyPaths(def.innerType as Node, path, out);
      return;
    case 'pipe':
      keyPaths(def.in as Node, path, out);
      return;
    case 'union':
      for (const option of def.options as Node[]) keyPaths(option, path, out);
      return;
    default:
      out.add(path.replace(/\[\]$/, ''));
  }
}

/** Keys in the first cell of the reference tables: `a.b.c` and sibling shorthands like `/ .d` or `, .e`. */
function documentedKeys(doc: string): string[] {
  const section = doc.slice(doc.indexOf('\n## Reference\n'), doc.indexOf('\n## Examples\n'));
  const keys: string[] = [];
  for (const line of section.split('\n')) {
    const cell = /^\| ([^|]+) \|/.exec(line)?.[1];
    if (!cell) continue;
    let parent = '';
    for (const [, key] of cell.matchAll(/`([^`]+)`/g)) {
      if (!key) continue;
      if (key.startsWith('.')) keys.push(parent + key);
      else {
        keys.push(key.replace(/\[\]$/, ''));
        // `list[]`, `.a` names the list items' keys; `x.y`, `.z` names a sibling.
        parent = key.endsWith('[]') ? key : key.slice(0, key.lastIndexOf('.'));
      }
    }
  }
  return keys;
}

describe('docs/configuration.md reference', () => {
  const reference = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'configuration.md'), 'utf8');
  const schemaKeys = new Set<string>();
  keyPaths(configSchema as unknown as Node, '', schemaKeys);
  const documented = documentedKeys(reference);
  const covers = (doc: string, key: string) => doc === key || (doc.endsWith('.*') && key.startsWith(doc.slice(0, -1)));

  it('documents every key the schema accepts', () => {
    expect(schemaKeys.size).toBeGreaterThan(50);
    const missing = [...schemaKeys].filter((key) => !documented.some((doc) => covers(doc, key)));
    expect(missing).toEqual([]);
  });

  it('documents no key the schema would refuse', () => {
    // Object rows (like `listeners[].tls`) are fine as long as some key lives under them.
    const known = (doc: string) => [...schemaKeys].some((key) => covers(doc, key) || key.startsWith(`${doc}.`));
    const stale = documented.filter((doc) => doc.includes('.') && !known(doc));
    expect(stale).toEqual([]);
  });
});
