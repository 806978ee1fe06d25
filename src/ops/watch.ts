// Watches the config file and the TLS files it names, and calls back (debounced) when one changes. Polling stat
// (fs.watchFile) rather than inotify: it follows the symlink swaps Kubernetes uses for ConfigMap and Secret
// volumes and the rename-over editors do, where a watch on the old inode would go silent.

import { type Stats, unwatchFile, watchFile } from 'node:fs';

export const WATCH_INTERVAL_MS = 1000;
export const WATCH_DEBOUNCE_MS = 300;

export class FileWatcher {
  private readonly onChange: () => void;
  private readonly intervalMs: number;
  private readonly debounceMs: number;
  private readonly files = new Map<string, (curr: Stats, prev: Stats) => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(onChange: () => void, options: { intervalMs?: number; debounceMs?: number } = {}) {
    this.onChange = onChange;
    this.intervalMs = options.intervalMs ?? WATCH_INTERVAL_MS;
    this.debounceMs = options.debounceMs ?? WATCH_DEBOUNCE_MS;
  }

  /** Watches exactly `paths` from now on. */
  watch(paths: readonly string[]): void {
    const wanted = new Set(paths);
    for (const [path, listener] of this.files) {
      if (wanted.has(path)) continue;
      unwatchFile(path, listener);
      this.files.delete(path);
    }
    for (const path of wanted) {
      if (this.files.has(path)) continue;
      const listener = (curr: Stats, prev: Stats) => {
        if (curr.mtimeMs === prev.mtimeMs && curr.ino === prev.ino && curr.size === prev.size) return;
        this.schedule();
      };
      watchFile(path, { interval: this.intervalMs, persistent: false }, listener);
      this.files.set(path, listener);
    }
  }

  close(): void {
    clearTimeout(this.timer);
    for (const [path, listener] of this.files) unwatchFile(path, listener);
    this.files.clear();
  }

  /** Several files of one change (cert and key, an editor's temp-and-rename) become one callback. */
  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(this.onChange, this.debounceMs);
    this.timer.unref();
  }
}
