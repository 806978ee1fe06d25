// Wires reload into a single-process gateway: a ReloadController for its config file (POST /reload, SIGHUP) and a
// FileWatcher on that file and its TLS files. Cluster mode does the same with the primary as the target.

import type { Config } from '../config/types.js';
import type { Gateway } from '../gateway.js';
import { type ConfigTarget, ReloadController } from './reload.js';
import { FileWatcher } from './watch.js';

export interface ControlOptions {
  /** Watch the config and TLS files (default true). */
  readonly watch?: boolean;
  readonly watchIntervalMs?: number;
  readonly watchDebounceMs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

export interface GatewayControl {
  readonly controller: ReloadController;
  readonly watcher: FileWatcher | undefined;
  close(): void;
}

/** The gateway as a reload target: applies in process, records the outcome for the status page. */
export function gatewayTarget(gateway: Gateway): ConfigTarget {
  return {
    apply: (_text: string, config: Config, generation: number) => gateway.reload(config, generation),
    get stopping() {
      return gateway.shuttingDown;
    },
    recordReload: (last) => {
      gateway.lastReload = last;
    },
  };
}

export function controlGateway(gateway: Gateway, file: string, options: ControlOptions = {}): GatewayControl {
  if (!gateway.ops) throw new Error('reload control needs the gateway that owns the admin listener');
  let watcher: FileWatcher | undefined;
  const controller = new ReloadController({
    file,
    config: gateway.config,
    target: gatewayTarget(gateway),
    ops: gateway.ops,
    log: gateway.log,
    ...(options.env ? { env: options.env } : {}),
    onApplied: () => watcher?.watch(controller.watchedFiles()),
  });
  gateway.reloadHandler = (trigger) => controller.reload(trigger);
  if (options.watch !== false) {
    watcher = new FileWatcher(() => void controller.reload('watch'), {
      ...(options.watchIntervalMs === undefined ? {} : { intervalMs: options.watchIntervalMs }),
      ...(options.watchDebounceMs === undefined ? {} : { debounceMs: options.watchDebounceMs }),
    });
    watcher.watch(controller.watchedFiles());
  }
  return {
    controller,
    watcher,
    close: () => {
      watcher?.close();
      gateway.reloadHandler = undefined;
    },
  };
}
