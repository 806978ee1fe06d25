// Watches the config file and the TLS files it names, and calls back (debounced) when one changes. Polling stat
// rather than inotify: it follows the symlink swaps Kubernetes uses for ConfigMap and Secret volumes and the
// rename-over editors do, where a watch on the old inode would go silent. The baseline is taken synchronously
// when a file is added, so a change made right after watch() returns is never mistaken for the starting state.

import { type Stats, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';

export const WATCH_INTERVAL_MS = 1000;
export const WATCH_DEBOUNCE_MS = 300;

/** What identifies one version of a file; undefined when it does not exist. */
type Fingerprint = string | undefined;

function fingerprintOf(s: Stats): Fingerprint {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
}

/** A file that cannot be stat'ed is a version too: the reload it triggers reports why it cannot be read. */
function unreadable(err: unknown): Fingerprint {
  const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
  return code === 'ENOENT' ? undefined : `error:${code}`;
}

export class FileWatcher {
  private readonly onChange: () => void;
  private readonly intervalMs: number;
  private readonly debounceMs: number;
  private readonly files = new Map<string, Fingerprint>();
  private poller: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(onChange: () => void, options: { intervalMs?: number; debounceMs?: number } = {}) {
    this.onChange = onChange;
    this.intervalMs = options.intervalMs ?? WATCH_INTERVAL_MS;
    this.debounceMs = options.debounceMs ?? WATCH_DEBOUNCE_MS;
  }

  /** Watches exactly `paths` from now on (files already watched keep their baseline). */
  watch(paths: readonly string[]): void {
    const wanted = new Set(paths);
    for (const path of this.files.keys()) if (!wanted.has(path)) this.files.delete(path);
    for (const path of wanted) {
      if (this.files.has(path)) continue;
      let current: Fingerprint;
      try {
        current = fingerprintOf(statSync(path));
      } catch (err) {
        current = unreadable(err);
      }
      this.files.set(path, current);
    }
    if (this.poller === undefined) {
      this.poller = setInterval(() => void this.poll(), this.intervalMs);
      this.poller.unref();
    }
  }

  close(): void {
    clearInterval(this.poller);
    clearTimeout(this.debounce);
    this.poller = undefined;
    this.files.clear();
  }

  private async poll(): Promise<void> {
    if (this.polling) return; // a slow filesystem: never stack polls
    this.polling = true;
    try {
      for (const [path, before] of this.files) {
        const now = await stat(path).then(fingerprintOf, unreadable);
        if (now === before || !this.files.has(path)) continue;
        this.files.set(path, now);
        this.schedule();
      }
    } finally {
      this.polling = false;
    }
  }

  /** Several files of one change (cert and key, an editor's temp-and-rename) become one callback. */
  private schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(this.onChange, this.debounceMs);
    this.debounce.unref();
  }
}
