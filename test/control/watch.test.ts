// FileWatcher: a change right after watch() is seen, several changes become one callback, and a file that
// appears, disappears or is swapped by rename (Kubernetes' symlink dance, editors) counts as a change.

import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileWatcher } from '../../src/control/watch.js';
import { delay, waitFor } from '../helpers/wait.js';

const watchers: FileWatcher[] = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
});

function watcher(paths: string[]): { calls: () => number } {
  let calls = 0;
  const w = new FileWatcher(() => calls++, { intervalMs: 20, debounceMs: 60 });
  w.watch(paths);
  watchers.push(w);
  return { calls: () => calls };
}

describe('FileWatcher', () => {
  it('sees a write made right after watch() returns', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'wsgate-watch-')), 'a.yaml');
    writeFileSync(file, 'one');
    const w = watcher([file]);
    writeFileSync(file, 'two, longer');
    await waitFor(() => w.calls() === 1, 2000, 'a callback');
  });

  it('debounces a burst (key, then certificate) into one callback', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsgate-watch-'));
    const files = ['tls.key', 'tls.crt'].map((f) => join(dir, f));
    for (const f of files) writeFileSync(f, 'old');
    const w = watcher(files);
    await delay(50);
    writeFileSync(files[0] as string, 'new key');
    await delay(25);
    writeFileSync(files[1] as string, 'new certificate');
    await waitFor(() => w.calls() === 1, 2000, 'a callback');
    await delay(200);
    expect(w.calls()).toBe(1);
  });

  it('counts rename-over, removal and re-creation as changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsgate-watch-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'same');
    const w = watcher([file]);
    writeFileSync(join(dir, 'tmp'), 'same');
    renameSync(join(dir, 'tmp'), file); // same size and content, new inode
    await waitFor(() => w.calls() === 1, 2000, 'rename noticed');
    rmSync(file);
    await waitFor(() => w.calls() === 2, 2000, 'removal noticed');
    writeFileSync(file, 'back');
    await waitFor(() => w.calls() === 3, 2000, 're-creation noticed');
  });
});
