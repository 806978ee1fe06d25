// Config reload: one controller per config file, whatever triggers it (SIGHUP, a file change, POST /reload).
// The new file is read and validated completely first; an invalid file never replaces the running config: its
// problems (file:line:column, key path) are logged and returned, and the failure is counted. Reloads run one at a
// time, in the order they were asked for.

import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { ConfigError, type ConfigIssue, formatIssue, parseConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../observe/log.js';
import type { OpsMetrics } from './ops-metrics.js';
import type { LastReload } from './status.js';

export type ReloadTrigger = 'signal' | 'watch' | 'admin';

export type ReloadOutcome =
  | {
      readonly ok: true;
      readonly status: 200;
      readonly generation: number;
      /** True when a file-change reload found nothing different (nothing applied, nothing counted). */
      readonly unchanged: boolean;
      /** What the apply step reports (the gateway's ReloadSummary; the primary's per-worker results). */
      readonly changes: unknown;
      /** Changed keys that only take effect after a restart. */
      readonly restartRequired: readonly string[];
    }
  | {
      readonly ok: false;
      /** 400 invalid config, 500 valid but could not be applied, 501 no file, 503 shutting down. */
      readonly status: 400 | 500 | 501 | 503;
      readonly errors: readonly string[];
      readonly issues?: readonly ConfigIssue[];
    };

/** Where a validated config goes: the in-process gateway, or the cluster's workers (a Fleet). */
export interface ConfigTarget {
  /** Applies `config` (parsed from `text`) as `generation`; throws when it cannot, leaving the old one running. */
  apply(text: string, config: Config, generation: number): Promise<unknown>;
  /** True once shutdown began: reloads are refused. */
  readonly stopping: boolean;
}

export interface ReloadControllerOptions {
  readonly file: string;
  readonly config: Config;
  readonly target: ConfigTarget;
  readonly ops: OpsMetrics;
  readonly log: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /** Called after a successful apply with the new config (e.g. to re-point the file watcher). */
  readonly onApplied?: (config: Config) => void;
}

export class ReloadController {
  readonly file: string;
  generation = 1;
  current: Config;
  /** The last counted reload (applied or rejected), for the status page; null before the first. */
  lastReload: LastReload | null = null;
  private readonly target: ConfigTarget;
  private readonly ops: OpsMetrics;
  private readonly log: Logger;
  private readonly env: NodeJS.ProcessEnv;
  private readonly onApplied: ((config: Config) => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: ReloadControllerOptions) {
    this.file = options.file;
    this.current = options.config;
    this.target = options.target;
    this.ops = options.ops;
    this.log = options.log;
    this.env = options.env ?? process.env;
    this.onApplied = options.onApplied;
  }

  /** Queues a reload; resolves with its outcome (never rejects, so a failure cannot stall later reloads). */
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const run = this.queue.then(
      () => this.run(trigger),
      () => this.run(trigger),
    );
    const settled = run.catch((err: Error): ReloadOutcome => {
      this.log.error({ event: 'reload_failed', trigger, err }, 'reload failed unexpectedly');
      return { ok: false, status: 500, errors: [`reload failed: ${err.message}`] };
    });
    this.queue = settled;
    return settled;
  }

  /** The config file and every TLS and JWKS file the running config reads: what a watcher watches. */
  watchedFiles(): string[] {
    const files = new Set([this.file]);
    for (const l of this.current.listeners) {
      if (l.tls?.files) files.add(l.tls.files.certFile).add(l.tls.files.keyFile);
      if (l.tls?.sessionTicketKeys) files.add(l.tls.sessionTicketKeys.file);
      for (const s of l.tls?.sni ?? []) files.add(s.certFile).add(s.keyFile);
    }
    for (const r of this.current.routes) if (r.jwt?.keys.kind === 'file') files.add(r.jwt.keys.file);
    return [...files];
  }

  private async run(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    if (this.target.stopping) return { ok: false, status: 503, errors: ['shutting down: reload refused'] };
    let config: Config;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
      config = parseConfig(text, this.file, this.env);
    } catch (err) {
      const issues: readonly ConfigIssue[] =
        err instanceof ConfigError
          ? err.issues
          : [{ file: this.file, line: undefined, column: undefined, path: '', message: (err as Error).message }];
      const errors = issues.map(formatIssue);
      this.log.error(
        { event: 'reload_failed', trigger, file: this.file, issues },
        `configuration rejected, still running generation ${this.generation}:\n${errors.join('\n')}`,
      );
      this.failed(trigger, errors);
      return { ok: false, status: 400, errors, issues };
    }
    if (trigger === 'watch' && isDeepStrictEqual(config, this.current)) {
      this.log.debug({ event: 'reload_skipped', file: this.file }, 'file touched but configuration unchanged');
      // A broken file put back as it was: the status must stop reporting the failure, though nothing was applied.
      if (this.lastReload?.result === 'failure') {
        this.lastReload = { at: new Date().toISOString(), trigger, result: 'success', errors: [] };
        this.log.info({ event: 'reload_restored', file: this.file }, 'configuration file back to the running one');
      }
      return {
        ok: true,
        status: 200,
        generation: this.generation,
        unchanged: true,
        changes: null,
        restartRequired: [],
      };
    }
    const generation = this.generation + 1;
    let changes: unknown;
    try {
      changes = await this.target.apply(text, config, generation);
    } catch (err) {
      const errors = [`configuration is valid but could not be applied: ${(err as Error).message}`];
      this.log.error({ event: 'reload_failed', trigger, err }, errors[0]);
      this.failed(trigger, errors);
      return { ok: false, status: 500, errors };
    }
    const restartRequired = keysNeedingRestart(this.current, config);
    this.generation = generation;
    this.current = config;
    this.ops.applied(generation);
    this.lastReload = { at: new Date().toISOString(), trigger, result: 'success', errors: [] };
    this.log.info({ event: 'reloaded', trigger, generation }, 'configuration reloaded');
    if (restartRequired.length > 0) {
      this.log.warn({ keys: restartRequired }, 'some changed keys take effect only after a restart');
    }
    this.onApplied?.(config);
    return { ok: true, status: 200, generation, unchanged: false, changes, restartRequired };
  }

  private failed(trigger: ReloadTrigger, errors: readonly string[]): void {
    this.ops.failed();
    this.lastReload = { at: new Date().toISOString(), trigger, result: 'failure', errors };
  }
}

/** Keys read once at start (the admin listener, the worker processes): a reload records them, a restart applies them. */
function keysNeedingRestart(old: Config, next: Config): string[] {
  const keys: string[] = [];
  if (next.admin.address !== old.admin.address || next.admin.port !== old.admin.port) {
    keys.push('admin.address', 'admin.port');
  }
  if (next.workers !== old.workers) keys.push('workers');
  if (next.workersAccept !== old.workersAccept) keys.push('workersAccept');
  return keys;
}
