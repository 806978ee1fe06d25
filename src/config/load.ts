// YAML file → validated, normalised, deeply frozen Config. Every problem is reported with file:line:column and
// the key path, all at once, so an operator fixes a file in one pass. An invalid file never yields a Config.

import { readFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { createSecureContext } from 'node:tls';
import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { z } from 'zod';
import { configSchema, type RawConfig } from './schema.js';
import type {
  Config,
  ConnectionLimits,
  DirectionLimits,
  ListenerConfig,
  PoolConfig,
  RouteConfig,
  TlsFiles,
  UpstreamTls,
} from './types.js';

export interface ConfigIssue {
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  /** Dotted key path, e.g. `routes[0].pool`. Empty for file-level problems. */
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends Error {
  readonly code = 'WSG_CONFIG_INVALID';
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(`invalid configuration:\n${issues.map(formatIssue).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssue(i: ConfigIssue): string {
  const where = i.line === undefined ? i.file : `${i.file}:${i.line}:${i.column}`;
  return i.path ? `${where}: ${i.path}: ${i.message}` : `${where}: ${i.message}`;
}

type PathSegment = string | number;

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/** Reads and validates a config file; throws ConfigError listing every problem. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const absolute = resolvePath(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    throw new ConfigError([issueAt(absolute, undefined, '', `cannot read config file: ${(err as Error).message}`)]);
  }
  return parseConfig(text, absolute, env);
}

/** Validates config text as if it were read from `file` (relative TLS paths resolve against its folder). */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const pos = (offset: number | undefined) => (offset === undefined ? undefined : lines.linePos(offset));
  const at = (offset: number | undefined, path: string, message: string): ConfigIssue => {
    // No node to point at only when the document is empty: its first line is where the content should be.
    const p = pos(offset ?? 0);
    return issueAt(file, p, path, message);
  };

  const issues: ConfigIssue[] = [];
  // The first syntax error is the real one; the ones after it are mostly the parser losing its footing.
  const syntax = doc.errors[0];
  if (syntax) {
    const message = (syntax.message.split('\n')[0] ?? syntax.message).replace(/ at line \d+, column \d+:?$/, '');
    issues.push(issueAt(file, syntax.linePos?.[0], '', message));
  }
  if (issues.length > 0) throw new ConfigError(issues);

  substituteEnv(doc, env, (offset, path, message) => issues.push(at(offset, path, message)));
  if (issues.length > 0) throw new ConfigError(issues);

  const parsed = configSchema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) {
    for (const zi of parsed.error.issues) issues.push(...zodIssueToConfigIssues(doc, zi, at));
    throw new ConfigError(issues);
  }

  const config = normalise(parsed.data, file, (path, message) => {
    issues.push(at(offsetOf(doc, path), formatPath(path), message));
  });
  if (issues.length > 0) throw new ConfigError(issues);
  return deepFreeze(config);
}

function issueAt(
  file: string,
  p: { line: number; col: number } | undefined,
  path: string,
  message: string,
): ConfigIssue {
  return { file, line: p?.line, column: p?.col, path, message };
}

/** `${NAME}` in string values is replaced by the environment variable; an unset variable is an error. */
function substituteEnv(
  doc: Document,
  env: NodeJS.ProcessEnv,
  report: (offset: number | undefined, path: string, message: string) => void,
): void {
  visit(doc, {
    Scalar(_key, node, ancestors) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      node.value = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, varName: string) => {
        const value = env[varName];
        if (value !== undefined) return value;
        report(node.range?.[0], pathOfAncestors([...ancestors, node]), `environment variable ${varName} is not set`);
        return whole;
      });
    },
  });
}

function pathOfAncestors(ancestors: readonly unknown[]): string {
  const segs: PathSegment[] = [];
  for (let i = 0; i < ancestors.length; i++) {
    const a = ancestors[i];
    if (isPair(a) && isScalar(a.key)) segs.push(String(a.key.value));
    else if (isSeq(a)) {
      const child = ancestors[i + 1];
      const idx = a.items.indexOf(child as never);
      if (idx >= 0) segs.push(idx);
    }
  }
  return formatPath(segs);
}

/** Offset of the YAML node at `path`, or of its nearest existing ancestor (so a missing key points at its parent). */
function offsetOf(doc: Document, path: readonly PropertyKey[], atKey = false): number | undefined {
  let node: unknown = doc.contents;
  let offset = (doc.contents as { range?: number[] } | null)?.range?.[0];
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      offset = (pair.key as { range?: number[] }).range?.[0] ?? offset;
      if (atKey && i === path.length - 1) break;
      node = pair.value;
      if (isScalar(node) || isMap(node) || isSeq(node)) offset = node.range?.[0] ?? offset;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      node = item;
      offset = (item as { range?: number[] }).range?.[0] ?? offset;
    } else break;
  }
  return offset;
}

function zodIssueToConfigIssues(
  doc: Document,
  zi: z.core.$ZodIssue,
  at: (offset: number | undefined, path: string, message: string) => ConfigIssue,
): ConfigIssue[] {
  const path = zi.path as PropertyKey[];
  if (zi.code === 'unrecognized_keys') {
    return zi.keys.map((k) => at(offsetOf(doc, [...path, k], true), formatPath([...path, k]), 'unknown key'));
  }
  if (zi.code === 'invalid_union') {
    // Report the most specific branch's first problem rather than "invalid input".
    const best = zi.errors.map((branch) => branch[0]).find((b) => b && b.code !== 'invalid_type') ?? zi.errors[0]?.[0];
    if (best) return zodIssueToConfigIssues(doc, { ...best, path: [...path, ...best.path] } as z.core.$ZodIssue, at);
  }
  const value = valueAt(doc, path);
  const message = value === undefined && zi.code === 'invalid_type' ? 'is required' : zi.message;
  return [at(offsetOf(doc, path), formatPath(path), message)];
}

function valueAt(doc: Document, path: readonly PropertyKey[]): unknown {
  return doc.getIn(path as PathSegment[]);
}

function normalise(raw: RawConfig, file: string, report: (path: PropertyKey[], message: string) => void): Config {
  const baseDir = dirname(file);
  const readTls = (certFile: string, keyFile: string, path: PropertyKey[]): TlsFiles | undefined => {
    const certPath = resolvePath(baseDir, certFile);
    const keyPath = resolvePath(baseDir, keyFile);
    let files: TlsFiles;
    try {
      files = {
        certFile: certPath,
        keyFile: keyPath,
        cert: readFileSync(certPath, 'utf8'),
        key: readFileSync(keyPath, 'utf8'),
      };
    } catch (err) {
      report(path, `cannot read TLS file: ${(err as Error).message}`);
      return undefined;
    }
    try {
      // What the listener will do with them: OpenSSL checks the PEM and that the key belongs to the certificate,
      // so --check and a reload catch a mismatched pair, not only a start.
      createSecureContext({ cert: files.cert, key: files.key });
    } catch (err) {
      report(path, `TLS certificate ${certPath} and key ${keyPath} are not usable together: ${(err as Error).message}`);
      return undefined;
    }
    return files;
  };

  const seenListeners = new Set<string>();
  const seenEndpoints = new Map<string, string>();
  const listeners: ListenerConfig[] = raw.listeners.map((l, i) => {
    if (seenListeners.has(l.name)) report(['listeners', i, 'name'], `duplicate listener name "${l.name}"`);
    seenListeners.add(l.name);
    const endpoint = `${l.address}:${l.port}`;
    if (l.port !== 0 && seenEndpoints.has(endpoint)) {
      report(['listeners', i, 'port'], `${endpoint} is also used by listener "${seenEndpoints.get(endpoint)}"`);
    }
    seenEndpoints.set(endpoint, l.name);
    const tls = l.tls;
    if (tls?.ciphers !== undefined) {
      // What the listener will do with it: an unusable list must fail --check and a reload, not the bind.
      try {
        createSecureContext({ ciphers: tls.ciphers });
      } catch (err) {
        report(['listeners', i, 'tls', 'ciphers'], `not a usable cipher list: ${(err as Error).message}`);
      }
    }
    return {
      name: l.name,
      address: l.address,
      port: l.port,
      tls: tls && {
        files: tls.cert && tls.key ? readTls(tls.cert, tls.key, ['listeners', i, 'tls', 'cert']) : undefined,
        minVersion: tls.minVersion,
        ciphers: tls.ciphers,
        unknownSni: tls.unknownSni,
        sni: Object.entries(tls.sni).flatMap(([serverName, pair]) => {
          const files = readTls(pair.cert, pair.key, ['listeners', i, 'tls', 'sni', serverName, 'cert']);
          return files ? [{ ...files, serverName: serverName.toLowerCase() }] : [];
        }),
      },
    };
  });

  const readCa = (file: string, path: PropertyKey[]): string | undefined => {
    try {
      return readFileSync(resolvePath(baseDir, file), 'utf8');
    } catch (err) {
      report(path, `cannot read TLS file: ${(err as Error).message}`);
      return undefined;
    }
  };

  const pools = new Map<string, PoolConfig>();
  const stickyCookies = new Map<string, string>();
  for (const [poolName, p] of Object.entries(raw.pools)) {
    const ids = new Set<string>();
    const upstreamTls: UpstreamTls | undefined = p.tls && {
      ca: p.tls.ca === undefined ? undefined : readCa(p.tls.ca, ['pools', poolName, 'tls', 'ca']),
      serverName: p.tls.serverName,
      rejectUnauthorized: !p.tls.insecureSkipVerify,
    };
    const backends = (p.backends ?? []).map((b) => (b.tls && upstreamTls ? { ...b, tlsOptions: upstreamTls } : b));
    backends.forEach((b, i) => {
      if (ids.has(b.id)) report(['pools', poolName, 'backends', i], `duplicate backend ${b.id}`);
      ids.add(b.id);
    });
    if (p.backends && p.discovery) {
      report(['pools', poolName, 'discovery'], 'give either backends or discovery, not both');
    } else if (!p.backends && !p.discovery) {
      report(['pools', poolName], 'a pool needs backends or discovery');
    }
    const sticky = p.sticky;
    if (sticky) {
      const where = ['pools', poolName, 'sticky', 'cookie'];
      const other = stickyCookies.get(sticky.cookie);
      // The same name on one site would flip between two pools' values, each refused by the other pool.
      if (other !== undefined) report(where, `cookie "${sticky.cookie}" is also the sticky cookie of pool "${other}"`);
      stickyCookies.set(sticky.cookie, poolName);
      if (p.hashKey.kind === 'cookie' && p.hashKey.name === sticky.cookie) {
        report(where, `the hash key reads this cookie; hash on something the client sends on its first request`);
      }
      if (sticky.sameSite === 'None' && sticky.secure === false) {
        report(['pools', poolName, 'sticky', 'secure'], 'sameSite "None" needs a Secure cookie (browsers drop it)');
      }
    }
    const hc = p.healthCheck;
    pools.set(poolName, {
      name: poolName,
      hashKey: p.hashKey,
      balanceFactor: p.balanceFactor,
      backends,
      discovery: p.discovery && {
        dns: p.discovery.dns,
        port: p.discovery.port,
        scheme: p.discovery.scheme,
        tlsOptions:
          p.discovery.scheme === 'wss'
            ? {
                ca: upstreamTls?.ca,
                serverName: upstreamTls?.serverName ?? p.discovery.dns,
                rejectUnauthorized: upstreamTls?.rejectUnauthorized ?? true,
              }
            : undefined,
        intervalMs: p.discovery.interval,
        nameservers: p.discovery.nameservers,
      },
      healthCheck: hc && {
        path: hc.path,
        intervalMs: hc.interval,
        timeoutMs: hc.timeout,
        healthyThreshold: hc.healthyThreshold,
        unhealthyThreshold: hc.unhealthyThreshold,
        websocket: hc.websocket,
      },
      outlier: {
        consecutiveFailures: p.outlier.consecutiveFailures,
        ejectForMs: p.outlier.ejectFor,
        maxEjectForMs: Math.max(p.outlier.maxEjectFor, p.outlier.ejectFor),
      },
      rebalance: p.rebalance,
      panicThreshold: p.panicThreshold,
      sticky: sticky && {
        cookie: sticky.cookie,
        maxAgeMs: sticky.maxAge,
        sameSite: sticky.sameSite,
        secure: sticky.secure,
        secret: sticky.secret,
      },
    });
  }

  const globalLimits = raw.limits.perConnection;
  const seenRoutes = new Set<string>();
  const routes: RouteConfig[] = raw.routes.map((r, i) => {
    if (seenRoutes.has(r.name)) report(['routes', i, 'name'], `duplicate route name "${r.name}"`);
    seenRoutes.add(r.name);
    if (!pools.has(r.pool)) {
      const known = [...pools.keys()].join(', ') || 'none';
      report(['routes', i, 'pool'], `pool "${r.pool}" is not defined (pools: ${known})`);
    }
    // Without frame scanning there are no messages to count or limit and no boundaries to ping at.
    if (r.protocol === 'off' && (r.limits !== undefined || globalLimits !== undefined || r.keepalive !== undefined)) {
      report(
        ['routes', i, 'protocol'],
        'protocol "off" cannot enforce limits.perConnection or keepalive; use strict or lenient',
      );
    }
    return {
      name: r.name,
      host: r.match.host?.toLowerCase(),
      pathPrefix: r.match.path,
      pool: r.pool,
      origins: r.origins?.map((o) => o.toLowerCase()),
      protocol: r.protocol,
      limits: connectionLimits(globalLimits, r.limits?.perConnection),
      keepalive: r.keepalive && {
        intervalMs: r.keepalive.interval,
        timeoutMs: r.keepalive.timeout,
        client: r.keepalive.peers !== 'backend',
        backend: r.keepalive.peers !== 'client',
      },
      http: r.http,
    };
  });

  return {
    file,
    listeners,
    admin: { address: raw.admin.address, port: raw.admin.port, token: raw.admin.token },
    routes,
    pools,
    limits: { maxConnections: raw.limits.maxConnections, maxConnectionsPerIp: raw.limits.maxConnectionsPerIp },
    timeouts: {
      handshakeMs: raw.timeouts.handshake,
      idleMs: raw.timeouts.idle,
      drainMs: raw.timeouts.drain,
      bodyMs: raw.timeouts.body,
    },
    log: { level: raw.log.level },
    workers: raw.workers,
    workersAccept: raw.workersAccept,
    shutdown: { acceptDelayMs: raw.shutdown.acceptDelay },
  };
}

type RawPerConnection = NonNullable<RawConfig['limits']['perConnection']>;
type RawDirection = Partial<Omit<RawPerConnection, 'onExceed' | 'backendToClient'>>;

/** Route limits override global ones key by key; backendToClient overrides the shared size keys for that direction. */
function connectionLimits(global: RawPerConnection | undefined, route: RawPerConnection | undefined): ConnectionLimits {
  const merged: RawPerConnection = { ...global, ...route };
  const b2c = { ...global?.backendToClient, ...route?.backendToClient };
  const shared = { maxMessageBytes: merged.maxMessageBytes, maxFramesPerMessage: merged.maxFramesPerMessage };
  return {
    clientToBackend: directionLimits(merged),
    backendToClient: directionLimits({ ...shared, ...b2c }),
    onExceed: merged.onExceed ?? 'close',
  };
}

function directionLimits(d: RawDirection): DirectionLimits {
  const rate = d.messagesPerSecond ?? Number.POSITIVE_INFINITY;
  return {
    messagesPerSecond: rate,
    burstMessages: d.burstMessages ?? (Number.isFinite(rate) ? Math.ceil(rate * 2) : Number.POSITIVE_INFINITY),
    bytesPerSecond: d.bytesPerSecond ?? Number.POSITIVE_INFINITY,
    maxMessageBytes: d.maxMessageBytes ?? Number.POSITIVE_INFINITY,
    maxFramesPerMessage: d.maxFramesPerMessage ?? Number.POSITIVE_INFINITY,
    controlFramesPerSecond: d.controlFramesPerSecond ?? Number.POSITIVE_INFINITY,
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    const children = value instanceof Map ? value.values() : Object.values(value);
    for (const child of children) deepFreeze(child);
  }
  return value;
}
