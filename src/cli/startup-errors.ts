// Why wsgate could not start, in one line that names what failed and the config key to change: a busy or
// privileged port, an address the host does not have. The stack trace is for `log.level: debug` only.

import type { Config } from '../config/types.js';

/** A socket wsgate binds, and the config key that says where. */
interface Bindable {
  readonly what: string;
  readonly key: string;
  readonly address: string;
  readonly port: number;
}

/** The errno, address and port of a failed bind or lookup. */
interface SocketFailure {
  readonly code: string;
  readonly address: string;
  readonly port: number;
}

/**
 * Reads a failed bind from its fields, or from its message alone when it crossed from a cluster worker
 * (`bind EADDRINUSE 127.0.0.1:8080`, `listen EADDRINUSE: address already in use 127.0.0.1:8080`).
 */
function socketFailureOf(err: unknown): SocketFailure | undefined {
  const e = err as Partial<NodeJS.ErrnoException> & { address?: unknown; port?: unknown };
  if (typeof e.code === 'string' && (e.syscall === 'listen' || e.syscall === 'bind') && typeof e.address === 'string') {
    // Node leaves `port` out when it is 0.
    return { code: e.code, address: e.address, port: typeof e.port === 'number' ? e.port : 0 };
  }
  const m = /^(?:listen|bind) (E[A-Z]+)\b.* (\S+?)(?::(\d+))?$/.exec(typeof e.message === 'string' ? e.message : '');
  return m ? { code: m[1] as string, address: m[2] as string, port: Number(m[3] ?? 0) } : undefined;
}

/** Lookups (getaddrinfo) name the host that did not resolve, not a port. */
function unresolvedHostOf(err: unknown): string | undefined {
  const e = err as Partial<NodeJS.ErrnoException> & { hostname?: unknown };
  if (e.code === 'ENOTFOUND' && typeof e.hostname === 'string') return e.hostname;
  const m = /getaddrinfo (?:ENOTFOUND|EAI_AGAIN) (\S+)/.exec(typeof e.message === 'string' ? e.message : '');
  return m?.[1];
}

function bindablesOf(config: Config, scope: 'listeners' | 'admin'): Bindable[] {
  if (scope === 'admin') {
    return [{ what: 'admin listener', key: 'admin', address: config.admin.address, port: config.admin.port }];
  }
  return config.listeners.map((l, i) => ({
    what: `listener "${l.name}"`,
    key: `listeners[${i}]`,
    address: l.address,
    port: l.port,
  }));
}

/** What a failed bind means and what to do, by errno; `key` is the config key of the socket. */
function bindProblem(failure: SocketFailure, key: string): string {
  const where = `${failure.address}:${failure.port}`;
  switch (failure.code) {
    case 'EADDRINUSE':
      return `(${key}.port): ${where} is in use; pick another port or stop what holds it`;
    case 'EACCES':
    case 'EPERM':
      return failure.port < 1024
        ? `(${key}.port): ${where} needs privileges (ports below 1024); pick a port from 1024 up or grant the process CAP_NET_BIND_SERVICE`
        : `(${key}.port): ${where}: permission denied`;
    case 'EADDRNOTAVAIL':
      return `(${key}.address): ${failure.address} is not an address of this host; use one it has, or 0.0.0.0 for all`;
    default:
      return `(${key}): cannot listen on ${where}: ${failure.code}`;
  }
}

/**
 * One line for an error thrown while binding the listeners (`scope: 'listeners'`) or the admin listener, naming
 * the socket and its config key; undefined when the error is not about binding.
 */
export function describeBindError(err: unknown, config: Config, scope: 'listeners' | 'admin'): string | undefined {
  const candidates = bindablesOf(config, scope);
  const host = unresolvedHostOf(err);
  if (host !== undefined) {
    const b = candidates.find((c) => c.address === host) ?? candidates[0];
    if (b)
      return `${b.what} (${b.key}.address): ${host} does not resolve to an address; use an IP address or a known name`;
  }
  const failure = socketFailureOf(err);
  if (!failure) return undefined;
  const samePort = candidates.filter((c) => c.port === failure.port);
  const b = samePort.find((c) => c.address === failure.address) ?? samePort[0];
  return b ? `${b.what} ${bindProblem(failure, b.key)}` : undefined;
}

/** The pools' backends a demo backend on `port` stands in for, as config keys (`pools.chat.backends[1]`). */
function demoBackendKeys(config: Config, port: number): string[] {
  const keys: string[] = [];
  for (const [name, pool] of config.pools) {
    pool.backends.forEach((b, i) => {
      if (b.port === port) keys.push(`pools.${name}.backends[${i}]`);
    });
  }
  return keys;
}

/** One line for a demo backend that could not start on `port`. */
export function describeDemoBackendError(
  failure: { readonly port: number; readonly code: string | undefined; readonly message: string },
  config: Config,
): string {
  const keys = demoBackendKeys(config, failure.port).join(', ');
  const what = `demo backend on 127.0.0.1:${failure.port} (${keys} in ${config.file})`;
  if (failure.code === 'EADDRINUSE') {
    return `${what}: the port is in use; stop what holds it, or run wsgate --config FILE with your own backends`;
  }
  return `${what}: ${failure.message}`;
}

/** Start-up stopped: `line` says what failed and the key to change; `cause` is the error behind it. */
export class StartFailure extends Error {
  readonly line: string;
  constructor(line: string, cause: unknown) {
    super(line, { cause });
    this.name = 'StartFailure';
    this.line = line;
  }
}

/** A promise rejection handler that turns an error into a StartFailure, described by `describe` if it can. */
export function failWith(describe: (err: unknown) => string | undefined): (err: unknown) => never {
  return (err: unknown) => {
    throw new StartFailure(describe(err) ?? `could not start: ${(err as Error).message}`, err);
  };
}

/** What is printed: the line, and with `log.level: debug` (or trace) the stack of its cause under it. */
export function startFailureText(failure: StartFailure, logLevel: string): string {
  const cause = failure.cause;
  const debug = logLevel === 'debug' || logLevel === 'trace';
  const stack = debug && cause instanceof Error ? `\n${cause.stack}` : '';
  return `wsgate: ${failure.line}${stack}\n`;
}
