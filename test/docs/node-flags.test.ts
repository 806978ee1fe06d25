// Every way wsgate is started passes the same V8 flags (src/control/node-flags.ts): npm start, the bin's shebang,
// the Docker image. (The benchmark harness imports NODE_FLAGS itself.)

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../../src/control/node-flags.js';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

describe('node flags', () => {
  it('are passed by npm start, the wsgate bin and the Docker image', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; bin: Record<string, string> };
    const start = pkg.scripts.start ?? '';
    const shebang = read('src/cli.ts').split('\n')[0] ?? '';
    const entrypoint = /^ENTRYPOINT (.*)$/m.exec(read('Dockerfile'))?.[1] ?? '';
    expect(pkg.bin.wsgate).toBe('dist/src/cli.js');
    expect(NODE_FLAGS.length).toBeGreaterThan(0);
    for (const flag of NODE_FLAGS) {
      expect(start).toContain(`node ${flag}`);
      expect(shebang).toContain(flag);
      expect(entrypoint).toContain(`"${flag}"`);
    }
  });
});
